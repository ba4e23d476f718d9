"""The MQTT bridge: Frigate's messages mapped to events, and a real Mosquitto broker
carrying them into a real store, at least once and stored once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pandas as pd
import pytest

from conftest import ROOT
from servers import Mosquitto, wait_for_line
from safecity.data.store import Store
from safecity.ingest.client import HttpSink, StoreSink
from safecity.ingest.frigate import (FrigateConfig, MessageError, decode, frigate_rows,
                                     safecity_batches)
from safecity.ingest.mqtt import (BridgeError, IncidentChanges, IncidentPublisher, MqttBridge,
                                  StoreIncidents, frigate_mapper, parse_broker, safecity_mapper)
from safecity.ingest.rows import parse_rows

FIXTURES = json.loads((ROOT / "tests" / "fixtures" / "frigate_events.json").read_text())
PERSON = FIXTURES["person_in_forbidden_zone"]
PERSON_ID = PERSON[0]["after"]["id"]

CONFIG = FrigateConfig.from_dict({
    "forbidden_zones": ["voie"], "loitering_zones": ["atm"], "loitering_s": 60,
    "abandoned_s": 30, "detect_fps": 5,
    "cameras": {"quai_nord": {"sensor_id": "cam-quai-nord", "lon": 5.3806, "lat": 43.3027},
                "distributeur": {"sensor_id": "cam-atm-1", "lon": 5.3751, "lat": 43.2965},
                "hall_gare": {"lon": 5.3803, "lat": 43.3031}}})


def _rows(name: str, config: FrigateConfig = CONFIG) -> list[list[dict]]:
    return [frigate_rows(message, config) for message in FIXTURES[name]]


def _iso(epoch: float) -> pd.Timestamp:
    return pd.Timestamp(epoch, unit="s", tz="UTC").round("us")


# --------------------------------------------------------------------------- the mapping


def test_a_person_entering_a_forbidden_zone_is_one_event_repeated_identically():
    found = _rows("person_in_forbidden_zone")
    assert found[0] == []  # still on the platform: an ordinary detection
    assert all(len(rows) == 1 for rows in found[1:])
    assert found[1] == found[2] == found[3]  # updates and the end repeat the same finding
    row = found[1][0]
    start = PERSON[0]["after"]["start_time"]
    assert row["event_id"] == f"frigate-{PERSON_ID}-forbidden_zone"
    assert row["kind"] == "forbidden_zone" and row["source"] == "frigate"
    assert (row["sensor_id"], row["lon"], row["lat"]) == ("cam-quai-nord", 5.3806, 43.3027)
    assert pd.Timestamp(row["ts"]) == _iso(start)  # Frigate's start, not the message's arrival
    assert row["details"] == {"frigate_id": PERSON_ID, "camera": "quai_nord", "label": "person",
                              "zone": "voie"}
    stored = parse_rows("events", found[1])  # what the API checks
    assert stored.loc[0, "kind"] == "forbidden_zone"


def test_nothing_identifying_is_copied_from_frigate():
    text = json.dumps(_rows("person_in_forbidden_zone"))
    assert "Jane Doe" not in text  # sub_label: a name from Frigate's face recognition
    for field in ("sub_label", "thumbnail", "snapshot", "box", "attributes"):
        assert field not in text


def test_loitering_is_raised_once_the_limit_is_passed_with_the_time_it_was_passed():
    found = _rows("person_loitering")
    assert found[0] == [] and found[1] == []  # 1 s, then 35 s in the zone
    assert [r["kind"] for r in found[2]] == ["loitering"]
    row = found[2][0]
    start = FIXTURES["person_loitering"][0]["after"]["start_time"]
    assert pd.Timestamp(row["ts"]) == _iso(start + 60)
    assert row["details"]["zone"] == "atm" and row["sensor_id"] == "cam-atm-1"
    assert found[3] == []  # the end message: the person has left the zone
    shorter = FrigateConfig.from_dict({"loitering_zones": ["atm"],
                                       "cameras": {"distributeur": {"loitering_s": 30}}})
    early = _rows("person_loitering", shorter)
    assert [r["kind"] for r in early[1]] == ["loitering"]
    assert pd.Timestamp(early[1][0]["ts"]) == _iso(start + 30)


def test_a_bag_left_stationary_long_enough_is_an_abandoned_object():
    found = _rows("backpack_left")
    assert found[0] == [] and found[1] == []  # 55 frames at 5 fps: 11 s, under 30 s
    assert [r["kind"] for r in found[2]] == ["abandoned_object"]
    assert found[2][0]["sensor_id"] == "hall_gare"  # no sensor_id given: the camera's name
    assert (found[2][0]["lon"], found[2][0]["lat"]) == (5.3803, 43.3031)


def test_smoke_is_fire_and_a_parked_car_is_nothing():
    fire = _rows("smoke")
    assert [r["kind"] for r in fire[0]] == ["fire"] and fire[0] == fire[1]
    assert _rows("car_parked") == [[], []]


def test_unknown_cameras_are_accepted_without_a_position_or_skipped():
    message = PERSON[1]
    rows = frigate_rows(message, FrigateConfig(forbidden_zones=("voie",)))
    assert rows[0]["sensor_id"] == "quai_nord" and rows[0]["lon"] is None
    assert frigate_rows(message, FrigateConfig(forbidden_zones=("voie",),
                                               unknown_cameras="skip")) == []


@pytest.mark.parametrize("payload, reason", [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"type": "gone", "after": {}}', "type: expected one of new, update, end"),
    (b'{"type": "new"}', "after: expected an object"),
    (b'{"type": "new", "after": {"id": "x", "camera": "c", "label": "person"}}',
     "after.start_time: expected epoch seconds"),
    ((b'{"type": "new", "after": {"id": "x", "camera": "c", "label": "person", '
      b'"start_time": "yesterday"}}'), "after.start_time"),
    ((b'{"type": "new", "after": {"id": "x", "camera": "c", "label": "person", '
      b'"start_time": 1717236000, "entered_zones": "voie"}}'), "after.entered_zones"),
])
def test_a_malformed_frigate_message_names_its_fault(payload, reason):
    with pytest.raises(MessageError, match=reason.replace(".", r"\.")):
        frigate_rows(decode(payload), CONFIG)


def test_the_mapping_config_refuses_unknown_keys_and_wrong_types(tmp_path):
    path = tmp_path / "frigate.yml"
    path.write_text("forbidden_zone: [voie]\n")
    with pytest.raises(ValueError, match=r"frigate\.yml: .*forbidden_zone: unknown key"):
        FrigateConfig.from_yaml(path)
    path.write_text("cameras:\n  quai_nord:\n    lon: east\n")
    with pytest.raises(ValueError, match=r"cameras\.quai_nord\.lon: expected a number"):
        FrigateConfig.from_yaml(path)
    path.write_text("cameras:\n  quai_nord:\n    lon: 5.38\n")
    with pytest.raises(ValueError, match="give both lon and lat"):
        FrigateConfig.from_yaml(path)
    path.write_text("loitering_s: -1\n")
    with pytest.raises(ValueError, match="loitering_s"):
        FrigateConfig.from_yaml(path)
    path.write_text("forbidden_zones: voie\nloitering_s: 90\n")
    config = FrigateConfig.from_yaml(path)
    assert config.forbidden_zones == ("voie",) and config.loitering_s == 90.0


def test_safecity_messages_are_a_table_and_rows_or_an_array_of_events():
    assert safecity_batches({"table": "units", "rows": []}) == [("units", [])]
    assert safecity_batches([{"event_id": "e"}]) == [("events", [{"event_id": "e"}])]
    for bad, reason in (({"table": "sensors", "rows": []}, "table: expected one of"),
                        ({"table": "events", "rows": {}}, "rows: expected an array"),
                        ({"table": "events", "rows": [], "token": "x"}, "token: unknown key"),
                        ("events", "expected an object")):
        with pytest.raises(MessageError, match=reason):
            safecity_batches(bad)


def test_broker_addresses():
    assert parse_broker("localhost:1883") == ("localhost", 1883)
    assert parse_broker("mqtt.local") == ("mqtt.local", 1883)
    assert parse_broker("[::1]:8883") == ("::1", 8883)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_broker("host:http")


def test_incident_changes_are_the_new_and_the_changed_ones_only():
    changes = IncidentChanges()
    a = {"incident_id": "inc-a", "ts": "2026-06-01T10:00:00+00:00", "status": "open", "priority": 2}
    b = {"incident_id": "inc-b", "ts": "2026-06-01T10:05:00+00:00", "status": "open", "priority": 4}
    assert changes.update([a, b]) == [a, b]
    assert changes.update([a, b]) == []
    a2 = {**a, "status": "dispatched"}
    assert changes.update([a2, b]) == [a2]
    assert changes.update([b]) == []          # a left the window: forgotten
    assert changes.update([a2, b]) == [a2]    # and new again when it comes back
    assert changes.update([{"status": "open"}, b]) == []  # no id: ignored


# --------------------------------------------------------------------------- the broker


def wait_for(predicate, timeout: float = 60.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout} s")


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as server:
        yield server


def publish(broker: Mosquitto, topic: str, payloads, username=None, password=None) -> None:
    """Publish each payload with QoS 1 and wait for the broker's acknowledgement."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if username:
        client.username_pw_set(username, password)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for payload in payloads:
            data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
            client.publish(topic, data, qos=1).wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


class Running:
    """A bridge running in a thread until the test ends (its error, if any, re-raised)."""

    def __init__(self, bridge: MqttBridge):
        self.bridge, self.error = bridge, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: bridge.subscribed.is_set() or not self.thread.is_alive(), 30,
                 "the subscription")

    def _run(self):
        try:
            self.bridge.run()
        except Exception as err:  # noqa: BLE001  (handed to the test)
            self.error = err

    def stop(self):
        self.bridge.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def running():
    started = []

    def start(bridge):
        started.append(Running(bridge))
        return started[-1]

    yield start
    for r in started:
        r.stop()


def _events(data_dir) -> pd.DataFrame:
    return Store(data_dir).read("events")


def test_frigate_sequence_through_the_broker_is_stored_once_even_sent_twice(broker, running, tmp_path):
    data = tmp_path / "store"
    bridge = MqttBridge("127.0.0.1", broker.port, "frigate/events", frigate_mapper(CONFIG),
                        StoreSink(data), client_id="test-frigate")
    running(bridge)
    publish(broker, "frigate/events", PERSON)
    wait_for(lambda: bridge.stats.messages == 4, what="4 messages handled")
    events = _events(data)
    assert list(events["event_id"]) == [f"frigate-{PERSON_ID}-forbidden_zone"]
    assert events.loc[0, "sensor_id"] == "cam-quai-nord"
    assert bridge.stats.accepted == 1 and bridge.stats.duplicates == 2

    publish(broker, "frigate/events", PERSON)  # redelivered, or sent again by Frigate
    wait_for(lambda: bridge.stats.messages == 8, what="8 messages handled")
    assert len(_events(data)) == 1
    assert bridge.stats.accepted == 1 and bridge.stats.duplicates == 5
    assert bridge.stats.skipped == 0


def test_a_malformed_message_is_skipped_and_the_bridge_goes_on(broker, running, tmp_path, caplog):
    data = tmp_path / "store"
    bridge = MqttBridge("127.0.0.1", broker.port, "city/rows", safecity_mapper,
                        StoreSink(data), client_id="test-malformed")
    runner = running(bridge)
    good = {"table": "observations", "rows": [
        {"ts": "2026-06-01T10:00:00+02:00", "sensor_id": "cnt-1", "metric": "people_count",
         "value": 12}]}
    bad_row = {"table": "observations", "rows": [
        {"ts": "2026-06-01T10:00:00", "sensor_id": "cnt-1", "metric": "people_count", "value": 3}]}
    with caplog.at_level("WARNING", logger="safecity.ingest.mqtt"):
        publish(broker, "city/rows", [b"\xff not json", {"table": "sensors", "rows": []},
                                      bad_row, good])
        wait_for(lambda: bridge.stats.messages == 4, what="4 messages handled")
    assert runner.thread.is_alive() and runner.error is None
    assert bridge.stats.skipped == 3 and bridge.stats.accepted == 1
    stored = Store(data).read("observations")
    assert list(stored["value"]) == [12.0]
    assert stored.loc[0, "ts"] == pd.Timestamp("2026-06-01T08:00:00Z")
    skipped = [r.getMessage() for r in caplog.records if "skipped a message" in r.getMessage()]
    assert len(skipped) == 3 and all("on city/rows" in m for m in skipped)
    assert "not JSON" in skipped[0] and "table" in skipped[1]
    assert "field 'ts'" in skipped[2] and "no zone" in skipped[2]


def test_safecity_format_events_and_units_reach_the_store(broker, running, tmp_path):
    data = tmp_path / "store"
    bridge = MqttBridge("127.0.0.1", broker.port, "city/rows", safecity_mapper,
                        StoreSink(data), client_id="test-safecity")
    running(bridge)
    event = {"event_id": "gs-1", "ts": "2026-06-01T21:14:03Z", "kind": "gunshot",
             "sensor_id": "ac-7", "lon": 5.37, "lat": 43.29, "score": 0.93,
             "source": "acoustic", "details": {"rounds": 3}}
    unit = {"unit_id": "P-12", "ts": "2026-06-01T21:14:05Z", "lon": 5.371, "lat": 43.291,
            "kind": "police", "status": "available"}
    publish(broker, "city/rows", [[event], {"table": "units", "rows": [unit]}])
    wait_for(lambda: bridge.stats.messages == 2, what="2 messages handled")
    assert list(_events(data)["event_id"]) == ["gs-1"]
    assert list(Store(data).read("units")["unit_id"]) == ["P-12"]


def test_the_bridge_reconnects_after_the_broker_restarts(broker, running, tmp_path):
    data = tmp_path / "store"
    bridge = MqttBridge("127.0.0.1", broker.port, "frigate/events", frigate_mapper(CONFIG),
                        StoreSink(data), client_id="test-restart", reconnect_max_s=2)
    running(bridge)
    publish(broker, "frigate/events", PERSON[:2])
    wait_for(lambda: len(_events(data)) == 1, what="the first event stored")
    broker.stop()
    wait_for(lambda: not bridge.subscribed.is_set(), what="the bridge noticing the broker left")
    broker.start()
    wait_for(lambda: bridge.stats.subscriptions >= 2, what="a new subscription")
    publish(broker, "frigate/events", FIXTURES["backpack_left"])
    wait_for(lambda: len(_events(data)) == 2, what="the event sent after the restart")
    assert sorted(_events(data)["kind"]) == ["abandoned_object", "forbidden_zone"]
    assert bridge.stats.connections >= 2


def test_a_message_is_acknowledged_only_once_stored(broker, running, tmp_path):
    """A server that does not answer: the message stays unacknowledged, and a bridge
    started later with the same client id receives it again and stores it."""
    from conftest import free_port

    down = HttpSink(f"http://127.0.0.1:{free_port()}", "token", retries=0)
    first = MqttBridge("127.0.0.1", broker.port, "frigate/events", frigate_mapper(CONFIG), down,
                       client_id="test-ack", retry_max_s=0.5)
    runner = running(first)
    publish(broker, "frigate/events", PERSON[1:2])
    wait_for(lambda: first.stats.retries >= 2, what="the post retried")
    runner.stop()
    assert first.stats.messages == 0 and first.stats.accepted == 0

    data = tmp_path / "store"
    second = MqttBridge("127.0.0.1", broker.port, "frigate/events", frigate_mapper(CONFIG),
                        StoreSink(data), client_id="test-ack")
    running(second)
    wait_for(lambda: second.stats.messages == 1, what="the message delivered again")
    assert list(_events(data)["event_id"]) == [f"frigate-{PERSON_ID}-forbidden_zone"]


def test_broker_login_with_a_password_and_a_refused_one(tmp_path, running):
    with Mosquitto(tmp_path / "broker", users={"bridge": "s3cret-pass"}) as server:
        data = tmp_path / "store"
        wrong = MqttBridge("127.0.0.1", server.port, "frigate/events", frigate_mapper(CONFIG),
                           StoreSink(data), username="bridge", password="nope",
                           client_id="test-wrong")
        with pytest.raises(BridgeError, match="refused the connection"):
            wrong.run()
        bridge = MqttBridge("127.0.0.1", server.port, "frigate/events", frigate_mapper(CONFIG),
                            StoreSink(data), username="bridge", password="s3cret-pass",
                            client_id="test-login")
        runner = running(bridge)
        publish(server, "frigate/events", PERSON[1:2], "bridge", "s3cret-pass")
        wait_for(lambda: len(_events(data)) == 1, what="the event stored")
        runner.stop()


def _incident_listener(broker) -> tuple[mqtt.Client, list, threading.Event]:
    """A client subscribed to ``safecity/incidents`` (running): (client, messages, subscribed)."""
    received: list = []
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscribed = threading.Event()
    listener.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    listener.on_subscribe = lambda *a: subscribed.set()
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe("safecity/incidents", qos=1)
    listener.loop_start()
    return listener, received, subscribed


def test_incidents_are_published_when_new_or_changed(broker, running, tmp_path):
    data = tmp_path / "store"
    bridge = MqttBridge("127.0.0.1", broker.port, "frigate/events", frigate_mapper(CONFIG),
                        StoreSink(data), client_id="test-incidents")
    running(bridge)
    listener, received, subscribed = _incident_listener(broker)
    try:
        assert subscribed.wait(30)
        incident = pd.DataFrame([{
            "incident_id": "inc-1", "ts": pd.Timestamp.now(tz="UTC").floor("s"),
            "kind": "forbidden_zone", "priority": 4, "confidence": 0.6, "status": "open",
            "lon": 5.3806, "lat": 43.3027, "summary": "forbidden_zone at cam-quai-nord",
            "event_ids": json.dumps([f"frigate-{PERSON_ID}-forbidden_zone"])}])
        Store(data).append("incidents", incident)
        publisher = IncidentPublisher(StoreIncidents(str(data)), bridge.client,
                                      "safecity/incidents", poll_s=0.2, stats=bridge.stats)
        publisher.start()
        try:
            wait_for(lambda: len(received) == 1, what="the new incident published")
            assert received[0]["incident_id"] == "inc-1" and received[0]["status"] == "open"
            Store(data).append("incidents", incident.assign(status="dispatched"))
            wait_for(lambda: len(received) == 2, what="the changed incident published")
            assert received[1]["status"] == "dispatched"
        finally:
            publisher.stop()
        assert publisher.poll_once() == 0  # nothing changed since: nothing published
    finally:
        listener.disconnect()
        listener.loop_stop()


def test_cli_end_to_end(broker, tmp_path):
    data = tmp_path / "store"
    config = tmp_path / "frigate.yml"
    config.write_text("forbidden_zones: [voie]\n"
                      "cameras:\n  quai_nord: {sensor_id: cam-quai-nord, lon: 5.3806, lat: 43.3027}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "safecity.cli", "ingest", "mqtt", "--broker", broker.address,
         "--topic", "frigate/events", "--format", "frigate", "--config", str(config),
         "--data-dir", str(data), "--max-messages", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        wait_for_line(proc.stderr, "subscribed to frigate/events")  # before publishing
        publish(broker, "frigate/events", [*PERSON, b"garbage"])
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["messages"] == 5 and summary["accepted"] == 1
    assert summary["duplicates"] == 2 and summary["skipped"] == 1
    assert "skipped a message on frigate/events: not JSON" in err
    events = _events(data)
    assert list(events["event_id"]) == [f"frigate-{PERSON_ID}-forbidden_zone"]
    assert (events.loc[0, "lon"], events.loc[0, "lat"]) == (5.3806, 43.3027)


def test_cli_refuses_bad_options(tmp_path):
    from click.testing import CliRunner

    from safecity.cli import main

    base = ["ingest", "mqtt", "--broker", "127.0.0.1:1", "--topic", "t", "--format", "safecity"]
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 2 and "--server URL --token FILE, or --data-dir" in result.output
    result = CliRunner().invoke(main, [*base, "--server", "http://x"])
    assert result.exit_code == 2 and "--server needs --token" in result.output
    result = CliRunner().invoke(main, [*base[:-1], "frigate", "--data-dir", str(tmp_path),
                                       "--broker", "nowhere:port"])
    assert result.exit_code == 1 and "expected HOST:PORT" in result.output


def test_cli_publishes_incidents_and_stops_on_sigterm(broker, tmp_path):
    import signal

    data = tmp_path / "store"
    Store(data).append("incidents", pd.DataFrame([{
        "incident_id": "inc-7", "ts": pd.Timestamp.now(tz="UTC").floor("s"), "kind": "fire",
        "priority": 1, "confidence": 0.6, "status": "open", "lon": 5.38, "lat": 43.30,
        "summary": "fire at hall_gare", "event_ids": "[]"}]))
    listener, received, subscribed = _incident_listener(broker)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "safecity.cli", "ingest", "mqtt", "--broker", broker.address,
         "--topic", "frigate/events", "--format", "frigate", "--data-dir", str(data),
         "--publish-incidents", "safecity/incidents", "--poll", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert subscribed.wait(30)
        wait_for(lambda: received, what="the incident published")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        listener.disconnect()
        listener.loop_stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert received[0]["incident_id"] == "inc-7" and received[0]["priority"] == 1
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["published_incidents"] >= 1 and summary["messages"] == 0


def test_a_missing_broker_program_skips_or_fails_under_require_data(monkeypatch):
    import servers

    monkeypatch.delenv("SAFECITY_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-broker is not installed"):
        servers._require("no-such-broker", ())
    monkeypatch.setenv("SAFECITY_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="SAFECITY_REQUIRE_DATA=1"):
        servers._require("no-such-broker", ())
