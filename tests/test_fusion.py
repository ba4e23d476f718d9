"""Fusion of events into incidents: rules, duplicates, hostile text, truth, real alerts."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from safecity.data import catalog
from safecity.evaluation.incidents import pairwise_scores
from safecity.incidents import fusion
from safecity.data import geo
from safecity.data import schema
from safecity.sim import city as sim
from safecity.cli import main
from safecity.data.store import Store

from conftest import shared_data

T0 = pd.Timestamp("2026-06-01 22:00", tz="UTC")
HOSTILE = ['<script>alert(1)</script>', '<img src=x onerror=alert(document.cookie)>']


def _ev(event_id, seconds, kind, lon, lat, source, sensor=None, details=None, score=None):
    return {"event_id": event_id, "ts": T0 + pd.Timedelta(seconds=seconds), "kind": kind,
            "sensor_id": sensor, "lon": lon, "lat": lat, "score": score, "source": source,
            "details": json.dumps(details or {})}


def _frame(rows) -> pd.DataFrame:
    return schema.validate(pd.DataFrame(rows), "events")


def _shooting():
    x, y = geo.to_xy(5.38, 43.30)
    at = lambda dx, dy: tuple(float(v) for v in geo.to_lonlat(x + dx, y + dy))  # noqa: E731
    return [
        _ev("g1", 0.0, "gunshot", *at(0, 0), "acoustic", "det-1"),
        _ev("g2", 1.5, "gunshot", *at(30, -20), "acoustic", "det-2"),
        _ev("g3", 2.9, "gunshot", *at(-25, 40), "acoustic", "det-3"),
        _ev("c1", 95.0, "call", *at(80, 60), "emergency_call", details={"category": "gunshot"}),
        # far away, same minute: another incident
        _ev("m1", 30.0, "call", *at(3000, 0), "emergency_call", details={"category": "medical"}),
    ]


def test_shooting_becomes_one_incident_with_priority_confidence_summary():
    incidents, membership = fusion.fuse(_frame(_shooting()))
    assert len(incidents) == 2
    shot = incidents[incidents["kind"] == "gunshot"].iloc[0]
    assert json.loads(shot["event_ids"]) == ["c1", "g1", "g2", "g3"]
    assert shot["priority"] == 1 and shot["status"] == "open"
    # two independent sources: 1 - (1 - 0.7)(1 - 0.5)
    assert shot["confidence"] == pytest.approx(0.85)
    assert shot["summary"].startswith("Gunshot: 3 detections by 3 sensors and 1 emergency call "
                                      "within 95 s")
    assert shot["ts"] == T0
    assert set(membership["event_id"]) == {"g1", "g2", "g3", "c1", "m1"}
    medical = incidents[incidents["kind"] == "medical"].iloc[0]
    assert medical["priority"] == 2 and medical["summary"] == "Medical: 1 emergency call"


def test_window_and_radius_rules_are_per_kind_pair():
    events = _frame(_shooting())
    strict = fusion.FusionRules(pairs={("call", "gunshot"): (60, 400)})
    incidents, _ = fusion.fuse(events, strict)
    assert len(incidents) == 3  # the call 95 s later no longer joins
    rules = fusion.FusionRules.from_dict({"window_s": 30, "radius_m": 10,
                                          "pairs": [{"kinds": ["gunshot", "call"],
                                                     "window_s": 120}],
                                          "priority": {"medical": 1}})
    assert rules.link("gunshot", "call") == (120, 10)
    assert rules.link("call", "call") == (900, 300)  # defaults kept
    assert rules.priority["medical"] == 1 and rules.priority["gunshot"] == 1
    with pytest.raises(ValueError, match="unknown key"):
        fusion.FusionRules.from_dict({"windw_s": 3})
    with pytest.raises(ValueError, match="priority"):
        fusion.FusionRules(priority={"gunshot": 9})


def test_duplicates_merged_and_counted_once():
    rows = _shooting()
    again = dict(rows[0])  # the same event delivered twice
    echo = dict(rows[1], event_id="g2-echo", ts=rows[1]["ts"] + pd.Timedelta(seconds=2))
    events = pd.concat([_frame(rows[:4]), pd.DataFrame([again]), _frame([echo])],
                       ignore_index=True)
    incidents, membership = fusion.fuse(events)
    assert len(incidents) == 1
    inc = incidents.iloc[0]
    assert inc["summary"].startswith("Gunshot: 3 detections by 3 sensors and 1 emergency call")
    assert "1 duplicate report merged" in inc["summary"]
    assert membership["event_id"].is_unique and len(membership) == 5
    assert membership.set_index("event_id").loc["g2-echo", "duplicate_of"] == "g2"
    # fusing again gives the same ids: the store upserts rather than duplicating
    again_incidents, _ = fusion.fuse(events.iloc[::-1])
    assert again_incidents["incident_id"].tolist() == incidents["incident_id"].tolist()


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_police_log_is_stored_verbatim_and_shown_escaped(tmp_path, hostile):
    rows = _shooting()[:1]
    lon, lat = rows[0]["lon"], rows[0]["lat"]
    rows.append(_ev("log-1", 40.0, "police_log", lon, lat, "police_log",
                    details={"text": f'shots "heard" {hostile}\nIGNORE PREVIOUS'}))
    incidents, _ = fusion.fuse(_frame(rows))
    assert len(incidents) == 1
    summary = incidents.iloc[0]["summary"]
    # quoted as one JSON string: quotes and newlines escaped, the markup kept as text
    assert summary.endswith('; police log: "shots \\"heard\\" ' + hostile + '\\nIGNORE PREVIOUS"')
    store = Store(tmp_path)
    store.append("incidents", incidents)
    stored = store.read("incidents")
    assert stored.iloc[0]["summary"] == summary  # verbatim, not sanitised away
    page = fusion.incident_html(stored.iloc[0])
    assert hostile not in page and "<script" not in page and "<img" not in page
    import html
    assert html.escape(hostile) in page
    assert page.startswith('<article class="incident"')


def test_empty_and_unlocated_events():
    incidents, membership = fusion.fuse(schema.empty("events"))
    assert incidents.empty and membership.empty
    rows = [_ev("a", 0, "police_log", None, None, "police_log", details={"text": "x"}),
            _ev("b", 1, "police_log", None, None, "police_log", details={"text": "y"})]
    incidents, _ = fusion.fuse(_frame(rows))
    assert len(incidents) == 2 and incidents["lon"].isna().all()


@pytest.fixture(scope="module")
def city():
    return sim.simulate_city(seed=0, days=14, n_counters=2, zones=geo.builtin_zones())


def test_precision_recall_on_synthetic_truth(city):
    incidents, membership = fusion.fuse(city.events)
    scores = pairwise_scores(membership, city.truth["incidents"])
    print(f"\nsynthetic city, 14 days, {len(city.events)} events: "
          f"pairwise precision {scores['precision']:.3f}, recall {scores['recall']:.3f}, "
          f"true incidents recovered exactly {scores['exact']:.3f} "
          f"({scores['incidents_true']} true, {scores['incidents_fused']} fused incl. false alarms)")
    assert scores["precision"] >= 0.95 and scores["recall"] >= 0.95 and scores["exact"] >= 0.95
    # a grouping of one incident per event has perfect precision and no recall
    alone = membership.assign(incident_id=membership["event_id"])
    assert pairwise_scores(alone, city.truth["incidents"])["recall"] == 0.0
    # and too wide a rule merges what is separate
    wide = fusion.fuse(city.events, fusion.FusionRules().uniform(6 * 3600, 20_000))[1]
    assert pairwise_scores(wide, city.truth["incidents"])["precision"] < 0.5


def test_sf_shotspotter_grouping():
    path = shared_data("city/sf_shotspotter/San_Francisco_ShotSpotter.csv")
    alerts = catalog.read_sf_shotspotter(path)
    incidents, membership = fusion.fuse(alerts)
    assert len(incidents) < len(alerts) and len(membership) == len(alerts)
    assert (incidents["kind"] == "gunshot").all() and (incidents["priority"] == 1).all()
    windows, radii = [30, 60, 120, 300, 600], [50, 100, 200, 400]
    sweep = fusion.grouping_sweep(alerts, windows, radii)
    table = sweep.pivot(index="window_s", columns="radius_m", values="incidents")
    print(f"\nSF ShotSpotter: {len(alerts)} alerts -> {len(incidents)} incidents (default rules)")
    print("incidents by window (rows, s) and radius (columns, m):")
    print(table.to_string())
    counts = table.to_numpy()
    assert (np.diff(counts, axis=0) <= 0).all() and (np.diff(counts, axis=1) <= 0).all()
    assert counts.max() < len(alerts)


def test_cli_fuse(tmp_path):
    events = _frame(_shooting())
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    runner = CliRunner()
    result = runner.invoke(main, ["fuse", "--events", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("incident_id,ts,kind,priority")
    assert "Gunshot: 3 detections" in result.stdout
    rules = tmp_path / "rules.yml"
    rules.write_text("pairs:\n  - kinds: [call, gunshot]\n    window_s: 60\n")
    out = tmp_path / "incidents.json"
    result = runner.invoke(main, ["fuse", "--events", str(path), "--rules", str(rules),
                                  "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())) == 3
    parquet = tmp_path / "incidents.parquet"
    assert runner.invoke(main, ["fuse", "--events", str(path), "-o", str(parquet)]).exit_code == 0
    schema.validate(pd.read_parquet(parquet), "incidents")
    bad = tmp_path / "bad.csv"
    events.drop(columns="kind").to_csv(bad, index=False)
    result = runner.invoke(main, ["fuse", "--events", str(bad)])
    assert result.exit_code != 0 and "bad.csv" in result.output and "'kind'" in result.output


def test_rules_from_yaml_and_units_needed(tmp_path):
    path = tmp_path / "rules.yml"
    path.write_text("window_s: 90\nneeds:\n  gunshot: {police: 3}\nsource_confidence:\n"
                    "  acoustic: 0.9\n")
    rules = fusion.FusionRules.from_yaml(path)
    assert rules.window_s == 90 and rules.units_needed("gunshot") == {"police": 3}
    assert rules.units_needed("fire") == {"fire": 1}
    assert rules.source_confidence["acoustic"] == 0.9
    path.write_text("source_confidence: {acoustic: 2}\n")
    with pytest.raises(ValueError, match="rules.yml.*acoustic"):
        fusion.FusionRules.from_yaml(path)
