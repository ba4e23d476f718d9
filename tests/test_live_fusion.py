"""Live fusion groups events arriving in batches as batch fusion groups the whole history."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from safecity.data import catalog, geo, schema
from safecity.incidents import fusion
from safecity.incidents.live import LiveFusion
from safecity.sim import city as sim

from conftest import shared_data


def _partition(membership: pd.DataFrame) -> set[frozenset]:
    return {frozenset(g["event_id"]) for _, g in membership.groupby("incident_id")}


def _live_partition(events: pd.DataFrame, batch: int) -> tuple[set[frozenset], LiveFusion, dict]:
    live = LiveFusion()
    rows: dict[str, dict] = {}
    ordered = events.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    for start in range(0, len(ordered), batch):
        for rec in live.add(ordered.iloc[start:start + batch]).to_dict("records"):
            rows[rec["incident_id"]] = rec
    groups = {frozenset(json.loads(r["event_ids"])) for r in rows.values() if r["status"] != "merged"}
    return groups, live, rows


@pytest.mark.parametrize("batch", [1, 37, 500])
def test_live_grouping_equals_batch_fusion_on_the_synthetic_city(batch):
    city = sim.simulate_city(seed=0, days=3, n_counters=2, zones=geo.builtin_zones())
    _, membership = fusion.fuse(city.events)
    groups, live, _ = _live_partition(city.events, batch)
    assert groups == _partition(membership)
    assert len(live.recent_) < len(city.events)  # the past is forgotten, not re-fused


def test_live_grouping_equals_batch_fusion_on_real_gunshot_alerts():
    alerts = catalog.read_sf_shotspotter(
        shared_data("city/sf_shotspotter/San_Francisco_ShotSpotter.csv")).head(3000)
    _, membership = fusion.fuse(alerts)
    groups, _, _ = _live_partition(alerts, 100)
    assert groups == _partition(membership)


def _gunshot(i: int, ts: str, lon: float, lat: float = 43.2965) -> dict:
    return {"event_id": f"g{i}", "ts": pd.Timestamp(ts, tz="UTC"), "kind": "gunshot",
            "sensor_id": f"acoustic-{i}", "lon": lon, "lat": lat, "score": 0.9,
            "source": "acoustic", "details": None}


def test_an_arriving_event_joins_an_open_incident_and_keeps_its_id():
    live = LiveFusion()
    first = live.add(pd.DataFrame([_gunshot(1, "2026-06-01 22:00:00", 5.3700)]))
    assert len(first) == 1 and first["status"].iloc[0] == "open"
    inc = first["incident_id"].iloc[0]
    again = live.add(pd.DataFrame([_gunshot(2, "2026-06-01 22:00:20", 5.3701)]))
    assert again["incident_id"].tolist() == [inc]
    assert json.loads(again["event_ids"].iloc[0]) == ["g1", "g2"]
    assert live.add(pd.DataFrame([_gunshot(2, "2026-06-01 22:00:20", 5.3701)])).empty  # a re-send
    far = live.add(pd.DataFrame([_gunshot(3, "2026-06-01 22:00:30", 5.4200)]))  # 4 km away
    assert far["incident_id"].iloc[0] != inc


def test_an_event_linking_two_open_incidents_merges_the_younger_into_the_older():
    live = LiveFusion()
    a = live.add(pd.DataFrame([_gunshot(1, "2026-06-01 22:00:00", 5.3700)]))["incident_id"][0]
    b = live.add(pd.DataFrame([_gunshot(2, "2026-06-01 22:00:10", 5.3760)]))["incident_id"][0]
    assert a != b  # ~480 m apart: beyond the gunshot radius
    out = live.add(pd.DataFrame([_gunshot(3, "2026-06-01 22:00:20", 5.3730)])).set_index("incident_id")
    assert out.loc[b, "status"] == "merged" and out.loc[a, "status"] == "open"
    assert sorted(json.loads(out.loc[a, "event_ids"])) == ["g1", "g2", "g3"]


def test_seed_resumes_from_stored_incidents_as_if_never_stopped():
    city = sim.simulate_city(seed=1, days=1, n_counters=1, zones=geo.builtin_zones())
    events = city.events.sort_values(["ts", "event_id"]).reset_index(drop=True)
    half = len(events) // 2
    _, _, before = _live_partition(events.iloc[:half], 50)
    stored = schema.validate(pd.DataFrame(list(before.values())), "incidents")
    resumed = LiveFusion().seed(stored, events.iloc[:half])  # what a restarted engine reads back
    after = dict(before)
    for rec in resumed.add(events.iloc[half:]).to_dict("records"):
        after[rec["incident_id"]] = rec
    groups = {frozenset(json.loads(r["event_ids"])) for r in after.values() if r["status"] != "merged"}
    assert groups == _partition(fusion.fuse(events)[1])
