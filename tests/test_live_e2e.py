"""The whole live path in a real browser: ``safecity serve --live``, a camera worker on a
looping real clip, HTTP posts of a gunshot, a panic press and AVL positions; then the same
through a real Mosquitto broker and the MQTT bridge with Frigate-format messages.

Everything is real: the server is a subprocess (``tests/live_server.py``), the camera
worker is ``safecity video run --loop --realtime`` on the first seconds of PETS 2009,
the broker is Debian's Mosquitto (``tests/servers.py``), the bridge is ``safecity ingest
mqtt``, the page is the operator's page in Debian's Chromium. The tests wait on the
page's state with deadlines, never on fixed delays, and print how long each step took
(from the POST or the MQTT publish to what the page shows); they never assert on time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, chromium_page, click_dispatch, shared_data, short_clip, stop
from live_server import live_server, make_city, make_tokens
from test_console import QUEUE_ROW

ARTIFACTS = ROOT / "test-artifacts"
CAMERA = "pets-1"
CLIP_FRAMES, FPS = 80, 10  # 8 s of PETS 2009: the worker loops it several times in a test

#: The first element matching a CSS selector, looking inside the shadow roots of Panel's panes.
_SHADOW_FIND = (
    "(css) => { const find = r => { for (const e of r.querySelectorAll('*')) {"
    " if (e.matches(css)) return e; if (e.shadowRoot) { const f = find(e.shadowRoot);"
    " if (f) return f; } } return null; }; return find(document); }")

#: The unit marker sources of the page's Bokeh document: for each ColumnDataSource with
#: unit ids and coordinates, its id and {unit: [lon, lat]}.
_UNIT_SOURCES = (
    "() => { const doc = window.Bokeh && window.Bokeh.documents[0]; if (!doc) return null;"
    " return Array.from(doc._all_models.values()).filter(m => m.type === 'ColumnDataSource'"
    "   && m.data.unit_id !== undefined && m.data.lon !== undefined).map(m => {"
    "   const at = {}; Array.from(m.data.unit_id).forEach((u, i) => {"
    "     at[u] = [m.data.lon[i], m.data.lat[i]]; }); return {id: m.id, at: at}; }); }")

#: True once every unit marker source of the page that holds ``unit`` puts it at ``lon, lat``.
_MARKER_AT = (
    f"([unit, lon, lat]) => {{ const sources = ({_UNIT_SOURCES})(); if (!sources) return false;"
    " const holding = sources.filter(s => s.at[unit] !== undefined);"
    " return holding.length > 0 && holding.every(s =>"
    "   Math.abs(s.at[unit][0] - lon) < 1e-7 && Math.abs(s.at[unit][1] - lat) < 1e-7); }")


class Timings:
    """Measured delays, printed at the end of a test (``-s``); never asserted on."""

    def __init__(self, title: str):
        self.title, self.rows = title, []

    def since(self, what: str, start: float) -> float:
        took = time.monotonic() - start
        self.rows.append((what, took))
        print(f"[{self.title}] {what}: {took:.2f} s", flush=True)
        return took

    def report(self) -> None:
        print(f"\n[{self.title}] timings (s):")
        for what, took in self.rows:
            print(f"  {took:8.2f}  {what}")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat()


def _offset(lon: float, lat: float, east_m: float, north_m: float) -> tuple[float, float]:
    import math

    return (lon + east_m / (111_320 * math.cos(math.radians(lat))), lat + north_m / 110_540)


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    return make_city(tmp_path_factory.mktemp("e2e") / "city")


@pytest.fixture(scope="module")
def roads(city):
    """The city's road network and stations, to put units and incidents on real roads."""
    from safecity.data.citydir import read_city
    from safecity.dispatch.network import RoadNetwork

    data = read_city(city, store=False)
    return RoadNetwork.from_tables(data.nodes, data.edges), data.stations.set_index("station_id")


@pytest.fixture()
def server(city, tmp_path, monkeypatch):
    """A fresh ``safecity serve --live`` on the city, with a state directory of its own."""
    from safecity.ingest.tokens import create_token

    tokens_file = tmp_path / "tokens.json"
    tokens = make_tokens(tokens_file)
    tokens["panic"] = create_token(tokens_file, "panic", "events")
    tokens["frigate"] = create_token(tokens_file, "frigate", "events")
    monkeypatch.delenv("SAFECITY_TILES_URL", raising=False)  # markers in lon/lat, nothing fetched
    with live_server(city, tmp_path / "state", tokens_file, tokens) as live:
        yield live


def _token_file(server, name: str, folder: Path) -> Path:
    path = folder / f"{name}.token"
    path.write_text(server.tokens[name] + "\n")
    path.chmod(0o600)
    return path


def _register(server, roads, units: dict[str, str]) -> dict[str, tuple[float, float]]:
    """AVL: each unit's first position at its station (``units``: unit id -> station id)."""
    _, stations = roads
    rows, at = [], {}
    for unit, station in units.items():
        st = stations.loc[station]
        at[unit] = (float(st["lon"]), float(st["lat"]))
        rows.append({"unit_id": unit, "ts": _iso(_now()), "lon": at[unit][0], "lat": at[unit][1],
                     "kind": st["kind"], "station": station})
    status, answer = server.post("units", rows, token="avl")
    assert status == 202 and answer == {"accepted": len(rows), "duplicates": 0}, answer
    return at


def _page(page, server) -> None:
    page.goto(f"{server.url}/operations")
    page.locator("span.live-counter").first.wait_for(state="attached", timeout=180_000)


# --------------------------------------------------------------------------- the camera worker


@pytest.fixture(scope="module")
def pets_clip(tmp_path_factory) -> Path:
    """The first ``CLIP_FRAMES`` frames of PETS 2009 S2L1, re-encoded by OpenCV (a short loop)."""
    source = shared_data("video/pets2009_s2l1/vtest.avi")
    return short_clip(source, tmp_path_factory.mktemp("pets") / "clip.avi", CLIP_FRAMES, FPS)


def _camera_worker(server, clip: Path, position: tuple[float, float], folder: Path):
    """``safecity video run --loop --realtime`` posting to the server, as a subprocess."""
    config = folder / "cameras.yml"
    config.write_text(f"""name: e2e
cameras:
  - id: {CAMERA}
    source: {clip}
    fps: {FPS}
    position: {{lon: {position[0]}, lat: {position[1]}}}
    zones:
      plaza: [[0, 100], [480, 100], [480, 360], [0, 360]]
    loitering_limit_s: 2
    pixels_per_metre: 20
    detectors: [loitering]
""")
    token = _token_file(server, "cameras", folder)
    log = folder / "camera-worker.log"
    with open(log, "w") as out:  # the worker writes to its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "safecity.cli", "video", "run", "--config", str(config),
             "--server", server.url, "--token", str(token), "--loop", "--realtime", "--bin", "5"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, log


# --------------------------------------------------------------------------- 1. over HTTP


@pytest.mark.browser
def test_http_sources_incident_dispatch_and_moving_marker(server, roads, pets_clip, tmp_path):
    network, stations = roads
    times = Timings("http")
    # the incident: a street corner some blocks from the first police station
    start_node = int(stations.loc["st-01", "node_id"])
    nodes = network.nodes.assign(t=network.travel_times_from(start_node),
                                 t4=network.travel_times_from(int(stations.loc["st-04", "node_id"])))
    target = nodes[(nodes["t"] > 120) & (nodes["t"] < 240)
                   & (nodes["t4"] > nodes["t"] + 120)].sort_values("t").iloc[0]
    route = network.route(start_node, int(target["node_id"]))
    assert len(route) >= 4, f"no route of 4 nodes from st-01 to node {target['node_id']}"
    lon0, lat0 = float(target["lon"]), float(target["lat"])

    units = _register(server, roads, {"police-01": "st-01", "police-02": "st-04",
                                      "ambulance-01": "st-09"})
    # the camera watches a square by the other police station: its loitering incidents
    # recommend police-02 first, the gunshot police-01
    camera_at = _offset(float(stations.loc["st-04", "lon"]), float(stations.loc["st-04", "lat"]),
                        30, 30)
    worker, worker_log = _camera_worker(server, pets_clip, camera_at, tmp_path)
    started = time.monotonic()
    try:
        with chromium_page((1400, 1600)) as (page, _, failures):
            opened = time.monotonic()
            _page(page, server)
            times.since("page opened (first live counter)", opened)

            # the camera worker's blurred tile and its health, on the page's camera panel
            tile = page.locator(f'figure.camera-tile[data-camera="{CAMERA}"]').first
            tile.locator("img.camera-frame").wait_for(timeout=180_000)
            times.since("camera worker start -> its tile on the page", started)
            # its health is ok (a live worker): the strip's caption says so
            page.locator(f'figure.camera-tile.status-ok[data-camera="{CAMERA}"]').first.wait_for(
                timeout=120_000)
            times.since("camera worker start -> its health ok on the page", started)
            # the clip is looped: the tile's frame count goes past the clip's length
            page.wait_for_function(
                f"""() => {{ const t = ({_SHADOW_FIND})('figure.camera-tile[data-camera="{CAMERA}"]');
                     return t !== null && parseInt(t.dataset.frames) > {CLIP_FRAMES}; }}""",
                timeout=300_000, polling=500)
            times.since("camera worker start -> tile past one loop of the clip", started)
            # what the worker's pipeline finds on the clip reaches the engine and the queue
            page.locator(QUEUE_ROW, has_text="loitering").first.wait_for(timeout=120_000)
            times.since("camera worker start -> its loitering incident in the queue", started)

            # a gunshot heard by two detectors and a panic press beside it, all stamped now
            now = _now()
            shots = [{"event_id": f"e2e-shot-{i}", "ts": _iso(now + pd.Timedelta(seconds=i)),
                      "kind": "gunshot", "sensor_id": f"acoustic-{i}",
                      "lon": _offset(lon0, lat0, 40 * i, -30)[0],
                      "lat": _offset(lon0, lat0, 40 * i, -30)[1], "score": 0.9,
                      "source": "acoustic", "details": {"rounds": 3}} for i in (1, 2)]
            panic = {"event_id": "e2e-panic-1", "ts": _iso(now + pd.Timedelta(seconds=20)),
                     "kind": "panic", "sensor_id": "panic-17", "lon": _offset(lon0, lat0, 10, 15)[0],
                     "lat": _offset(lon0, lat0, 10, 15)[1], "score": None,
                     "source": "panic_button", "details": None}
            posted = time.monotonic()
            assert server.post("events", shots, token="acoustic") == \
                (202, {"accepted": 2, "duplicates": 0})
            assert server.post("events", [panic], token="panic") == \
                (202, {"accepted": 1, "duplicates": 0})
            times.since("POST gunshot + panic -> both acknowledged", posted)

            # the queue shows the incident: wait for the gunshot's row
            page.locator(QUEUE_ROW, has_text="gunshot").first.wait_for(timeout=120_000)
            times.since("POST -> incident visible in the queue", posted)
            ours = [i for i in server.get("/api/v1/incidents")[1] if "e2e-panic-1" in i["event_ids"]]
            assert len(ours) == 1, ours  # one incident of the three events
            incident = ours[0]
            assert all(e in incident["event_ids"] for e in ("e2e-shot-1", "e2e-shot-2"))
            assert incident["kind"] == "gunshot" and incident["status"] == "open", incident
            # the operator picks it; its evidence lists the three events, its units the police
            page.locator(QUEUE_ROW, has_text=incident["incident_id"]).first.click()
            shown = page.locator(
                f'article.selected-incident[data-incident="{incident["incident_id"]}"]')
            shown.wait_for(timeout=60_000)
            assert incident["summary"] in shown.text_content(), incident["summary"]
            for ev in ("e2e-shot-1", "e2e-shot-2", "e2e-panic-1"):
                page.locator(f'li.evidence-event[data-event="{ev}"]').wait_for(timeout=60_000)
            from playwright.sync_api import expect

            rows = page.locator("table.recommended tbody tr")
            expect(rows.first).to_contain_text("police-01", timeout=60_000)  # the gunshot's
            recommended = [r.split()[0] for r in rows.all_text_contents()]
            assert recommended[0] == "police-01", recommended  # the nearest station
            assert set(recommended) == {"police-01", "police-02"}, recommended  # police only

            clicked = time.monotonic()
            message = click_dispatch(page)
            assert message.get_attribute("class") == "dispatch-done", message.text_content()
            unit = message.get_attribute("data-unit")
            assert unit == "police-01" and incident["incident_id"] in message.text_content()
            expect(shown).to_have_attribute("data-status", "dispatched", timeout=60_000)
            times.since("click Dispatch -> incident dispatched on the page", clicked)
            api_units = {u["unit_id"]: u for u in server.get("/api/v1/units")[1]}
            assert api_units[unit]["status"] == "dispatched"
            assert api_units["police-02"]["status"] == "available"
            after = {i["incident_id"]: i for i in server.get("/api/v1/incidents")[1]}
            assert after[incident["incident_id"]]["status"] == "dispatched"

            # the unit drives towards the incident: each AVL point moves its marker there
            page.wait_for_function(_MARKER_AT, arg=[unit, *units[unit]], timeout=60_000,
                                   polling=250)
            path = network.polyline(route)
            stops = [path[len(path) * k // 4] for k in (1, 2, 3)]
            assert len({tuple(s) for s in stops}) == 3, stops
            for k, (lon, lat) in enumerate(stops, 1):
                sent = time.monotonic()
                status, answer = server.post("units", [{"unit_id": unit, "ts": _iso(_now()),
                                                        "lon": lon, "lat": lat}], token="avl")
                assert status == 202 and answer["accepted"] == 1, answer
                times.since(f"AVL point {k} POST -> acknowledged", sent)
                page.wait_for_function(_MARKER_AT, arg=[unit, lon, lat], timeout=60_000,
                                       polling=100)
                times.since(f"AVL point {k} POST -> marker there", sent)
                other = page.evaluate(_UNIT_SOURCES)
                for source in other:  # the other units stayed at their stations
                    if "police-02" in source["at"]:
                        assert source["at"]["police-02"] == pytest.approx(list(units["police-02"]))
            api_units = {u["unit_id"]: u for u in server.get("/api/v1/units")[1]}
            assert (api_units[unit]["lon"], api_units[unit]["lat"]) == pytest.approx(stops[-1])
            assert api_units[unit]["status"] == "dispatched"  # AVL keeps the dispatch

            # live, the page's clocks are the server's, not a replay's
            clock = page.evaluate(f"() => ({_SHADOW_FIND})('span.live-counter').parentElement"
                                  ".textContent")
            assert "server time" in clock, clock
            assert "lag: events" in page.locator("span.data-lag-bar").first.text_content()
            health_api = server.get("/api/v1/health", token=None)[1]
            assert {"cameras", "acoustic", "panic", "avl"} <= set(health_api["sources"]), health_api
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "live_e2e_http.png"), full_page=True)
            assert not failures, failures
        assert worker.poll() is None, f"the camera worker stopped: {worker_log.read_text()}"
    finally:
        stop(worker)
        times.report()


# --------------------------------------------------------------------------- 2. over MQTT


def _frigate_messages(camera: str, shift_to: pd.Timestamp) -> list[bytes]:
    """The fixture's person entering the zone 'voie' (new, update, update, end) on ``camera``,
    its times moved to ``shift_to`` (Frigate's times are epoch seconds)."""
    fixture = json.loads((ROOT / "tests" / "fixtures" / "frigate_events.json").read_text())
    messages = fixture["person_in_forbidden_zone"]
    delta = shift_to.timestamp() - messages[0]["after"]["start_time"]

    def moved(obj):
        if isinstance(obj, dict):
            return {k: (v + delta if k in ("start_time", "end_time", "frame_time")
                        and isinstance(v, (int, float)) else moved(v)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [moved(v) for v in obj]
        return obj

    out = []
    for message in messages:
        message = moved(message)
        for side in ("before", "after"):
            if side in message:
                message[side]["camera"] = camera
        out.append(json.dumps(message).encode())
    return out


@pytest.mark.browser
def test_mqtt_frigate_messages_become_an_incident_on_the_page(server, roads, tmp_path):
    import paho.mqtt.client as mqtt
    from servers import Mosquitto, wait_for_line

    _, stations = roads
    times = Timings("mqtt")
    _register(server, roads, {"police-01": "st-01", "police-03": "st-03"})
    home = stations.loc["st-01"]
    # the camera stands half a kilometre from the station
    lon, lat = _offset(float(home["lon"]), float(home["lat"]), 500, 200)
    config = tmp_path / "frigate.yml"
    config.write_text("forbidden_zones: [voie]\n"
                      f"cameras:\n  quai_nord: {{sensor_id: cam-quai-nord, lon: {lon}, lat: {lat}}}\n")
    token = _token_file(server, "frigate", tmp_path)
    with Mosquitto(tmp_path / "broker") as broker:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "safecity.cli", "ingest", "mqtt", "--broker", broker.address,
             "--topic", "frigate/events", "--format", "frigate", "--config", str(config),
             "--server", server.url, "--token", str(token)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            log = wait_for_line(bridge.stderr, "subscribed to frigate/events")  # before publishing
            with chromium_page((1400, 1400)) as (page, _, failures):
                _page(page, server)
                assert page.locator("article.incident").count() == 0  # a fresh city: nothing yet

                messages = _frigate_messages("quai_nord", _now() - pd.Timedelta(seconds=5))
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
                connected = threading.Event()
                client.on_connect = lambda *_: connected.set()
                client.connect("127.0.0.1", broker.port)
                client.loop_start()
                try:
                    assert connected.wait(30), "the test's publisher could not connect"
                    published = time.monotonic()
                    for payload in messages:
                        client.publish("frigate/events", payload, qos=1).wait_for_publish(30)
                    times.since("MQTT publish of the 4 messages -> acknowledged by the broker",
                                published)
                finally:
                    client.loop_stop()
                    client.disconnect()
                deadline = time.monotonic() + 120
                while not any(i["kind"] == "forbidden_zone"
                              for i in server.get("/api/v1/incidents")[1]):
                    assert time.monotonic() < deadline, "no forbidden_zone incident in the API"
                    time.sleep(0.02)
                times.since("MQTT publish -> incident in GET /api/v1/incidents", published)
                row = page.locator(QUEUE_ROW, has_text="forbidden_zone").first
                row.wait_for(timeout=120_000)
                times.since("MQTT publish (new/update/update/end) -> incident visible in the queue",
                            published)

                incidents = [i for i in server.get("/api/v1/incidents")[1]
                             if i["kind"] == "forbidden_zone"]
                assert len(incidents) == 1, incidents
                incident = incidents[0]
                frigate_id = json.loads(messages[0])["after"]["id"]
                assert json.loads(incident["event_ids"]) == [f"frigate-{frigate_id}-forbidden_zone"]
                assert (incident["lon"], incident["lat"]) == pytest.approx((lon, lat))
                row.click()
                shown = page.locator(
                    f'article.selected-incident[data-incident="{incident["incident_id"]}"]')
                shown.wait_for(timeout=60_000)
                assert incident["summary"] in shown.text_content()
                # a police unit is proposed for it, the nearest first
                page.locator("table.recommended tbody tr", has_text="police-01").first.wait_for(
                    timeout=60_000)
                first = page.locator("table.recommended tbody tr").first.text_content()
                assert first.split()[0] == "police-01", first
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "live_e2e_mqtt.png"), full_page=True)
                assert not failures, failures
            # every message went through; the updates and the end were duplicates of the first row
            bridge.terminate()
            out, err = bridge.communicate(timeout=60)
        finally:
            if bridge.poll() is None:
                stop(bridge)
    assert bridge.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["messages"] == len(messages) and summary["skipped"] == 0, summary
    assert summary["accepted"] == 1 and summary["duplicates"] == 2, summary
    assert server.tokens["frigate"] not in out + err + "".join(log)
    times.report()


# --------------------------------------------------------------------------- the page's choice


def test_choosing_another_incident_proposes_its_fastest_unit(city, roads, tmp_path):
    """The unit preselected for dispatch is the chosen incident's fastest, not the unit
    chosen for the incident shown before (found by the browser test above: the page sent
    police-02, first for the camera's incident, to the gunshot whose fastest was police-01)."""
    from safecity.app.dashboard import LiveView
    from safecity.app.engine import LiveEngine
    from safecity.data.citydir import read_city

    _, stations = roads
    engine = LiveEngine(read_city(city, store=False), tmp_path / "state")
    now = _now()
    engine.ingest("units", [
        {"unit_id": u, "ts": _iso(now), "lon": float(stations.loc[st, "lon"]),
         "lat": float(stations.loc[st, "lat"]), "kind": "police", "station": st}
        for u, st in (("police-01", "st-01"), ("police-02", "st-04"))], source="avl")
    near = {}
    for unit, st in (("police-01", "st-01"), ("police-02", "st-04")):
        lon, lat = _offset(float(stations.loc[st, "lon"]), float(stations.loc[st, "lat"]), 50, 50)
        engine.ingest("events", [{"event_id": f"near-{unit}", "ts": _iso(now), "kind": "panic",
                                  "sensor_id": f"panic-{unit}", "lon": lon, "lat": lat,
                                  "source": "panic_button"}], source="panic")
        near[unit] = engine.incidents.loc[engine.incidents["event_ids"].str.contains(
            f"near-{unit}"), "incident_id"].iloc[0]
    try:
        view = LiveView(engine)
        for unit in ("police-02", "police-01", "police-02"):
            view.incident = near[unit]
            assert view.unit == unit, (view.incident, view.unit)
        view.unit = "police-01"  # the operator's own choice stays while the page refreshes
        engine.ingest("units", [{"unit_id": "police-02", "ts": _iso(_now()),
                                 "lon": float(stations.loc["st-04", "lon"]) + 0.001,
                                 "lat": float(stations.loc["st-04", "lat"])}], source="avl")
        view.refresh()
        assert view.incident == near["police-02"] and view.unit == "police-01"
    finally:
        engine.close()
