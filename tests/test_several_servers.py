"""Several servers, one state: two engines (and two ``safecity serve --live`` processes) on
one real PostgreSQL share incidents, unit status, the audit and verdicts.

First two engines in this process, each with its own inbox and its own follower of the
shared state (``safecity.app.follower``), as two servers have: what one fuses, the other
shows and links new events to; an operator's status is never overwritten by the other's
fusion; a unit dispatched from both at once is dispatched once, and the other operator is
told. Then the real thing: two ``safecity serve --live --state postgresql://...``
processes, events posted to A's ingest API shown on B's page, a dispatch clicked on A's
page seen on B's (the unit's status on the map, the incident's status, the audit).

Every wait polls the state with a deadline; nothing sleeps a fixed delay.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pandas as pd
import pytest
from conftest import chromium_page, click_dispatch, stop
from live_server import make_city, make_tokens, start
from test_console import QUEUE_ROW

NOW = pd.Timestamp.now(tz="UTC").floor("s")
DEADLINE_S = 60.0


def until(check, what: str, timeout: float = DEADLINE_S):
    """``check()``'s first answer other than None or False, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def gunshot(event_id: str, seconds: float, lon: float, lat: float) -> dict:
    return {"event_id": event_id, "ts": (NOW - pd.Timedelta(minutes=20)
                                          + pd.Timedelta(seconds=seconds)).isoformat(),
            "kind": "gunshot", "source": "acoustic", "sensor_id": f"ac-{event_id}",
            "lon": lon, "lat": lat, "score": 0.9}


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    return make_city(tmp_path_factory.mktemp("several") / "city")


@pytest.fixture(scope="module")
def stations(city) -> pd.DataFrame:
    from safecity.data.citydir import read_city

    return read_city(city, store=False).stations.set_index("station_id")


def roster(stations: pd.DataFrame, n: int = 2) -> list[dict]:
    """AVL registrations: ``n`` police units at the police stations."""
    police = stations[stations["kind"] == "police"]
    return [{"unit_id": f"police-{k + 1:02d}", "ts": (NOW - pd.Timedelta(hours=1)).isoformat(),
             "lon": float(police["lon"].iloc[k % len(police)]),
             "lat": float(police["lat"].iloc[k % len(police)]), "kind": "police",
             "station": str(police.index[k % len(police)])} for k in range(n)]


def place(stations: pd.DataFrame) -> tuple[float, float]:
    """Somewhere on the city's roads: a little off the first police station."""
    st = stations[stations["kind"] == "police"].iloc[0]
    return float(st["lon"]) + 0.002, float(st["lat"]) + 0.001


# --------------------------------------------------------------------------- two engines


@pytest.fixture()
def two_engines(city, tmp_path, postgres_url):
    """Two live engines on one PostgreSQL schema, each with its own state folder and follower."""
    from servers import postgres_schema

    from safecity.app.engine import LiveEngine
    from safecity.app.follower import follow
    from safecity.data.citydir import read_city

    data = read_city(city, store=False)
    with postgres_schema(postgres_url) as url:
        engines = []
        try:
            for name in ("a", "b"):
                engine = LiveEngine(data, tmp_path / name, state=url)
                engines.append(engine)
                follow(engine, poll_s=0.5)
            yield engines
        finally:
            for engine in engines:
                if engine.shared is not None:
                    engine.shared.stop()
                    engine.shared.shared.close()
                engine.close()
                engine.store.state.close()


def _incident_of(engine, event_id: str) -> pd.Series | None:
    inc = engine.incident_queue()
    hit = inc[[event_id in json.loads(ids) for ids in inc["event_ids"]]]
    return hit.iloc[0] if len(hit) else None


def test_an_incident_fused_on_one_server_is_shown_and_grown_by_the_other(two_engines, stations):
    a, b = two_engines
    lon, lat = place(stations)
    a.ingest("events", [gunshot("s1", 0, lon, lat), gunshot("s2", 2, lon + 1e-4, lat)], "acoustic")
    made = _incident_of(a, "s1")
    assert made is not None and made["status"] == "open"
    seen = until(lambda: _incident_of(b, "s1"), "A's incident in B's queue")
    assert seen["incident_id"] == made["incident_id"]
    assert sorted(json.loads(seen["event_ids"])) == ["s1", "s2"]

    # a third shot posted to B links to A's incident: one incident, grown by B
    b.ingest("events", [gunshot("s3", 20, lon, lat + 1e-4)], "acoustic")
    grown = _incident_of(b, "s3")
    assert grown["incident_id"] == made["incident_id"], "B opened a second incident"
    assert sorted(json.loads(grown["event_ids"])) == ["s1", "s2", "s3"]
    until(lambda: (r := _incident_of(a, "s3")) is not None
          and bool(r["incident_id"] == made["incident_id"]), "B's growth in A's queue")
    assert len(a.incident_queue()) == len(b.incident_queue()) == 1
    # its evidence on A includes the shot A never received
    assert list(a.incident_events(made["incident_id"])["event_id"]) == ["s1", "s2", "s3"]

    # A's operator acknowledges; B's fusion grows it again and keeps the operator's status
    a.acknowledge(made["incident_id"], "alice")
    until(lambda: bool(_incident_of(b, "s1")["status"] == "acknowledged"), "A's acknowledgement on B")
    b.ingest("events", [gunshot("s4", 40, lon, lat)], "acoustic")
    stored = a.store.read("incidents").set_index("incident_id").loc[made["incident_id"]]
    assert stored["status"] == "acknowledged", "B's fusion overwrote A's acknowledgement"
    assert "s4" in json.loads(stored["event_ids"])
    # the audit and the verdicts are one: each engine reads what the other wrote
    b.review(made["incident_id"], "confirmed", "bob")
    until(lambda: bool((a.verdicts()["alarm_id"] == made["incident_id"]).any()), "B's verdict on A")
    actions = set(zip(a.audit(20)["actor"], a.audit(20)["action"]))
    assert {("alice", "acknowledge"), ("bob", "verdict")} <= actions


def test_a_unit_dispatched_from_both_servers_at_once_is_dispatched_once(two_engines, stations):
    a, b = two_engines
    lon, lat = place(stations)
    a.ingest("units", roster(stations, 1), "avl")
    a.ingest("events", [gunshot("d1", 0, lon, lat)], "acoustic")
    incident = _incident_of(a, "d1")["incident_id"]
    until(lambda: _incident_of(b, "d1") is not None, "the incident on B")
    until(lambda: "police-01" in set(b.positions()["unit_id"]), "the unit on B")

    ready = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def send(name, engine, actor):
        ready.wait()
        try:
            outcomes[name] = engine.dispatch("police-01", incident, actor)
        except ValueError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=send, args=(n, e, f"operator-{n}"))
               for n, e in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    refused = [n for n, o in outcomes.items() if isinstance(o, ValueError)]
    assert len(outcomes) == 2 and len(refused) == 1, outcomes
    told = str(outcomes[refused[0]])
    assert "police-01" in told and "dispatched now" in told, told
    winner = "b" if refused == ["a"] else "a"
    audit = a.store.read("audit_log")
    sent = audit[(audit["action"] == "dispatch") & (audit["target"] == "police-01")]
    assert list(sent["actor"]) == [f"operator-{winner}"]
    for engine in (a, b):  # both servers show the unit dispatched
        until(lambda e=engine: bool(e.positions().set_index("unit_id").loc["police-01", "status"]
                                    == "dispatched"), "the dispatched unit on both servers")


# --------------------------------------------------------------------------- two served processes

#: Each unit marker source of the page's Bokeh document: {unit: status}.
_UNIT_STATUS = (
    "() => { const doc = window.Bokeh && window.Bokeh.documents[0]; if (!doc) return [];"
    " return Array.from(doc._all_models.values()).filter(m => m.type === 'ColumnDataSource'"
    "   && m.data.unit_id !== undefined && m.data.status !== undefined).map(m => {"
    "   const at = {}; Array.from(m.data.unit_id).forEach((u, i) => { at[u] = m.data.status[i]; });"
    "   return at; }); }")


@pytest.fixture(scope="module")
def two_servers(city, stations, tmp_path_factory, postgres_url):
    """``safecity serve --live`` twice on one PostgreSQL state: each its own port and state dir."""
    from servers import postgres_schema

    root = tmp_path_factory.mktemp("servers")
    tokens = make_tokens(root / "tokens.json")
    with postgres_schema(postgres_url) as url, ThreadPoolExecutor(2) as pool:
        starting = [pool.submit(start, city, root / name, root / "tokens.json", tokens, state=url)
                    for name in ("a", "b")]
        servers = []
        try:
            for future in starting:
                servers.append(future.result())
                servers[-1].state = url
            yield servers
        finally:
            wait(starting)  # one that failed to start has stopped itself
            for future in starting:
                if future.exception() is None:
                    stop(future.result().proc)


@pytest.mark.browser
def test_two_served_processes_share_incidents_dispatch_and_audit(two_servers, stations):
    a, b = two_servers
    lon, lat = place(stations)
    assert a.post("units", roster(stations, 2), token="avl")[0] == 202
    status, answer = a.post("events", [gunshot("w1", 0, lon, lat), gunshot("w2", 2, lon, lat + 1e-4)])
    assert status == 202 and answer["accepted"] == 2, answer
    made = next(i for i in a.get("/api/v1/incidents")[1] if "w1" in json.loads(i["event_ids"]))
    incident = made["incident_id"]
    # B's engine has A's incident and A's units (its ingest API answers from its memory)
    until(lambda: any(i["incident_id"] == incident for i in b.get("/api/v1/incidents")[1]),
          "A's incident in B's API")
    until(lambda: {"police-01", "police-02"} <= {u["unit_id"] for u in b.get("/api/v1/units")[1]},
          "A's units in B's API")

    from playwright.sync_api import expect

    with chromium_page() as (page_a, _, _):
        page_b = page_a.context.browser.new_page(viewport={"width": 1400, "height": 1000})
        page_b.set_default_timeout(60_000)
        for page, server in ((page_a, a), (page_b, b)):
            page.goto(f"{server.url}/operations", timeout=180_000)
            page.locator("span.live-counter").first.wait_for(state="attached", timeout=180_000)
        # B's page shows the incident A fused; both pages select it
        for page in (page_a, page_b):
            page.locator(QUEUE_ROW, has_text=incident).first.click(timeout=120_000)
            page.locator(f'article.selected-incident[data-incident="{incident}"]').wait_for()
        # A's operator dispatches; B's page shows the incident dispatched and the unit's new
        # status on its map
        message = click_dispatch(page_a)
        assert message.get_attribute("class") == "dispatch-done", message.text_content()
        unit = message.get_attribute("data-unit")
        shown_b = page_b.locator(f'article.selected-incident[data-incident="{incident}"]')
        expect(shown_b).to_have_attribute("data-status", "dispatched", timeout=60_000)
        page_b.wait_for_function(
            f"([unit]) => {{ const s = ({_UNIT_STATUS})(); return s.length > 0"
            " && s.filter(at => at[unit] !== undefined).every(at => at[unit] === 'dispatched')"
            " && s.some(at => at[unit] !== undefined); }", arg=[unit], timeout=60_000, polling=250)
        # the audit is one table: B's engine reads A's record of the dispatch
        from safecity.data.store import open_state

        state = open_state(b.state, b.state_dir)
        try:
            audit = state.read("audit_log")
        finally:
            state.close()
        sent = audit[(audit["action"] == "dispatch") & (audit["target"] == unit)]
        assert len(sent) == 1 and incident in sent["details"].iloc[0], sent
        assert unit not in page_b.locator("table.recommended").first.text_content()
        units_b = {u["unit_id"]: u["status"] for u in b.get("/api/v1/units")[1]}
        assert units_b[unit] == "dispatched", units_b

