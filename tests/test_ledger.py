"""The alarm ledger: its figures on hand-made verdicts, its command, and the ground-truth check
on a synthetic city whose every alarm is reviewed through the live engine."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from safecity.cli import main
from safecity.data.store import Store
from safecity.evaluation import ledger
from safecity.incidents import review

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
T0 = pd.Timestamp("2026-06-01 20:30", tz="UTC")  # 22:30 in Paris (summer time)


def _alarm(i, kind="abandoned_object", sensor="cam-001", hours=0.0, score=0.5):
    return pd.Series({"event_id": f"ev-{i}", "ts": T0 + pd.Timedelta(hours=hours), "kind": kind,
                      "sensor_id": sensor, "lon": 5.37, "lat": 43.29, "score": score,
                      "source": "camera", "details": None})


# (kind, sensor, hours after T0, score, verdict, reason)
ALARMS = [
    ("abandoned_object", "cam-001", 0, 0.9, "confirmed", None),
    ("abandoned_object", "cam-001", 0, 0.8, "confirmed", None),
    ("abandoned_object", "cam-001", 2, 0.4, "false_alarm", "shadow"),
    ("abandoned_object", "cam-002", 2, 0.3, "false_alarm", "reflection_lighting"),
    ("abandoned_object", "cam-002", 2, 0.6, "unsure", None),
    ("fire", "cam-002", 0, 0.7, "confirmed", None),
    ("gunshot", "gsd-001", 2, 0.5, "false_alarm", "other"),
]


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path)
    for i, (kind, sensor, hours, score, verdict, reason) in enumerate(ALARMS):
        review.record_verdict(store, _alarm(i, kind, sensor, hours, score), "event",
                              review.Verdict(verdict, reason), "alice")
    # cam-001 reports bins in 4 clock hours, cam-002 in 2, the gunshot detector in none
    bins = [("cam-001", T0.floor("h") + pd.Timedelta(minutes=20 * k)) for k in range(12)]
    bins += [("cam-002", T0 + pd.Timedelta(minutes=45 * k)) for k in range(2)]
    store.append("observations", pd.DataFrame(
        [{"ts": ts, "sensor_id": s, "metric": "people_count", "value": 3.0} for s, ts in bins]))
    return store


def test_precision_per_detector_camera_and_hour(store):
    got = ledger.build_ledger(store.read("verdicts"), "Europe/Paris",
                              observations=store.read("observations"))
    det = got.by_detector.set_index("kind")
    ab = det.loc["abandoned_object"]
    assert (ab["confirmed"], ab["false_alarm"], ab["unsure"], ab["reviewed"]) == (2, 2, 1, 5)
    assert ab["precision"] == 0.5  # unsure is counted, never in the ratio
    low, high = ledger.wilson_interval(2, 4)
    assert (ab["precision_low"], ab["precision_high"]) == pytest.approx((low, high))
    assert 0 < ab["precision_low"] < 0.5 < ab["precision_high"] < 1
    assert det.loc["fire", "precision"] == 1.0 and det.loc["gunshot", "precision"] == 0.0
    assert det.loc["gunshot", "precision_low"] == 0.0  # clipped, not -1e-17
    cam = got.by_camera.set_index("sensor_id")
    assert cam.loc["cam-001", ["confirmed", "false_alarm"]].tolist() == [2, 1]
    assert cam.loc["cam-002", ["confirmed", "false_alarm", "unsure"]].tolist() == [1, 1, 1]
    hour = got.by_hour.set_index("hour")  # 20:30 UTC is 22 h in Paris, 22:30 UTC is 0 h
    assert sorted(hour.index) == [0, 22]
    assert hour.loc[22, ["confirmed", "false_alarm"]].tolist() == [3, 0]
    assert hour.loc[0, ["confirmed", "false_alarm", "unsure"]].tolist() == [0, 3, 1]
    reasons = got.reasons.set_index("kind")
    assert reasons.loc["abandoned_object", ["shadow", "reflection_lighting", "other"]].tolist() == [1, 1, 0]
    assert got.overall["precision"] == pytest.approx(3 / 6)


def test_false_alarms_per_camera_hour_with_an_exact_interval(store):
    got = ledger.build_ledger(store.read("verdicts"), "Europe/Paris",
                              observations=store.read("observations"))
    assert got.camera_hours_from == "observations"
    rates = got.false_alarm_rates.set_index("sensor_id")
    assert rates.loc["cam-001", "camera_hours"] == 4 and rates.loc["cam-002", "camera_hours"] == 2
    assert rates.loc["cam-001", "per_camera_hour"] == 1 / 4
    # Garwood: chi-square quantiles over two, per hour of footage
    assert rates.loc["cam-001", "per_camera_hour_high"] == pytest.approx(stats.chi2.ppf(0.975, 4) / 2 / 4)
    assert rates.loc["cam-001", "per_camera_hour_low"] == pytest.approx(stats.chi2.ppf(0.025, 2) / 2 / 4)
    assert math.isnan(rates.loc["gsd-001", "per_camera_hour"])  # no observations, no hours
    assert got.overall["false_alarms_per_camera_hour"] == 2 / 6
    given = ledger.build_ledger(store.read("verdicts"), "UTC", hours=pd.Series({"cam-001": 10.0}))
    assert given.camera_hours_from == "given"
    assert given.false_alarm_rates.set_index("sensor_id").loc["cam-001", "per_camera_hour"] == 0.1


def test_period_and_review_coverage(store):
    verdicts = store.read("verdicts")
    events = pd.DataFrame([_alarm(i, kind, sensor, hours) for i, (kind, sensor, hours, *_)
                           in enumerate(ALARMS)] + [_alarm(99, "fire", "cam-002", 2)])
    got = ledger.build_ledger(verdicts, "Europe/Paris", alarms=ledger.alarms_from(events),
                              since=T0 + pd.Timedelta(hours=1))
    assert got.overall["reviewed"] == 4  # the alarms raised two hours after T0
    cov = got.coverage.set_index("kind")
    assert cov.loc["fire", ["alarms", "reviewed", "share"]].tolist() == [1, 0, 0.0]
    assert cov.loc["abandoned_object", ["alarms", "reviewed"]].tolist() == [3, 3]
    assert got.overall["share_reviewed"] == 4 / 5
    report = ledger.ledger_report(got)
    assert json.loads(json.dumps(report)) == report  # plain JSON, NaN as null
    assert report["by_camera"][0]["sensor_id"] == "cam-001"


def test_threshold_effect_counts_what_a_threshold_would_have_removed(store):
    verdicts = store.read("verdicts")
    effect = ledger.threshold_effect(verdicts, "abandoned_object", 0.5)
    assert (effect.confirmed_kept, effect.confirmed_lost) == (2, 0)
    assert (effect.false_alarms_kept, effect.false_alarms_avoided) == (0, 2)
    assert (effect.unsure_kept, effect.unsure_lost) == (1, 0)
    assert effect.precision == 1.0
    assert (effect.precision_low, effect.precision_high) == pytest.approx(ledger.wilson_interval(2, 2))
    harsh = ledger.threshold_effect(verdicts, "abandoned_object", 0.85)
    assert (harsh.confirmed_lost, harsh.false_alarms_avoided, harsh.unsure_lost) == (1, 2, 1)
    with pytest.raises(ValueError, match="kind: no reviewed event of kind 'wrong_way'"):
        ledger.threshold_effect(verdicts, "wrong_way", 0.5)


def test_command_prints_the_report_and_names_bad_input(store, tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["ledger", "report", "--data-dir", str(tmp_path), "--tz", "Europe/Paris",
                               "--since", "2026-06-01T23:00"])  # local time: 21:00 UTC
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["since"] == "2026-06-01T21:00:00+00:00"
    assert report["overall"]["reviewed"] == 4
    assert {r["kind"]: r["false_alarm"] for r in report["by_detector"]} == {
        "abandoned_object": 2, "gunshot": 1}
    missing = runner.invoke(main, ["ledger", "report", "--data-dir", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and f"{tmp_path / 'nope'}: no such directory" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["ledger", "report", "--data-dir", str(tmp_path / "empty")])
    assert empty.exit_code != 0 and "no state store (state.sqlite)" in empty.output
    bad = runner.invoke(main, ["ledger", "report", "--data-dir", str(tmp_path), "--until", "soon"])
    assert bad.exit_code != 0 and "--until" in bad.output and "'soon'" in bad.output


@pytest.mark.slow
def test_ledger_precision_equals_the_ground_truth_when_every_alarm_is_reviewed(tmp_path):
    """The ground-truth check: a synthetic city's every event reviewed, through the live engine,
    by a reviewer who knows which events belong to a true incident."""
    from safecity.app.engine import LiveEngine
    from safecity.data.citydir import read_city, write_city
    from safecity.data.inbox import json_rows
    from safecity.sim.city import simulate_city

    city = simulate_city(seed=0, days=2, n_cameras=24)
    write_city(city, tmp_path / "city")
    engine = LiveEngine(read_city(tmp_path / "city", store=False), tmp_path / "state")
    events = city.events
    for day, batch in events.groupby(events["ts"].dt.floor("D")):
        engine.ingest("events", json_rows(batch), source="simulated-city")
    truth = {e for ids in city.truth["incidents"]["event_ids"] for e in json.loads(ids)}
    for event_id in events["event_id"]:
        if event_id in truth:
            engine.review(event_id, "confirmed", "truth-reviewer", alarm_type="event")
        else:
            engine.review(event_id, "false_alarm", "truth-reviewer", reason="other", alarm_type="event")
    # a fused incident is confirmed when one of its events belongs to a true incident
    fused = engine.incidents[engine.incidents["status"] != "merged"]
    fused_true = {row.incident_id: bool(set(json.loads(row.event_ids)) & truth)
                  for row in fused.itertuples()}
    for incident_id, real in fused_true.items():
        engine.review(incident_id, "confirmed" if real else "false_alarm", "truth-reviewer",
                      reason=None if real else "other", alarm_type="incident")
    engine.close()  # the inbox reaches the history, as a served city's does

    out = CliRunner().invoke(main, ["ledger", "report", "--data-dir", str(tmp_path / "state"),
                                    "--tz", city.config.tz])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    by_kind = {r["kind"]: r for r in report["by_detector"] if r["alarm_type"] == "event"}
    expected = events.assign(true=events["event_id"].isin(truth)).groupby("kind")["true"].agg(
        ["mean", "sum", "size"])
    assert set(by_kind) == set(expected.index)
    assert (expected["mean"] < 1).any(), "the city raised no false alarm: nothing is checked"
    for kind, row in expected.iterrows():
        assert by_kind[kind]["precision"] == pytest.approx(row["mean"], abs=1e-6), kind
        assert by_kind[kind]["confirmed"] == row["sum"]
        assert by_kind[kind]["confirmed"] + by_kind[kind]["false_alarm"] == row["size"]
    incidents = {r["kind"]: r for r in report["by_detector"] if r["alarm_type"] == "incident"}
    assert sum(r["confirmed"] for r in incidents.values()) == sum(fused_true.values())
    assert sum(r["reviewed"] for r in incidents.values()) == len(fused_true)
    assert report["overall"]["share_reviewed"] == 1.0
    assert {r["kind"] for r in report["coverage"] if r["alarm_type"] == "event"} == set(expected.index)

    ARTIFACTS.mkdir(exist_ok=True)
    lines = ["| detector | alarms | confirmed | precision (ledger) | 95% Wilson | precision (truth) |",
             "|---|---:|---:|---:|---|---:|"]
    for kind, row in expected.iterrows():
        r = by_kind[kind]
        lines.append(f"| {kind} | {int(row['size'])} | {r['confirmed']} | {r['precision']:.3f} | "
                     f"{r['precision_low']:.2f}–{r['precision_high']:.2f} | {row['mean']:.3f} |")
    (ARTIFACTS / "ledger_truth_check.md").write_text("\n".join(lines) + "\n")


def test_ledger_view_shows_the_engine_verdicts_and_recomputes_only_on_change(tmp_path):
    from live_server import make_city

    from safecity.app.engine import LiveEngine
    from safecity.data.citydir import read_city
    from safecity.evaluation.ledger_view import LedgerView

    engine = LiveEngine(read_city(make_city(tmp_path / "city"), store=False), tmp_path / "state")
    now = pd.Timestamp.now(tz="UTC").floor("s")
    engine.ingest("events", [
        {"event_id": f"ab-{k}", "ts": (now - pd.Timedelta(minutes=k)).isoformat(),
         "kind": "abandoned_object", "sensor_id": f"cam-00{1 + k % 2}", "lon": 5.37 + k * 0.01,
         "lat": 43.29, "score": 0.5 + k / 20, "source": "video"} for k in range(5)], source="video")
    view = LedgerView(engine, tz="Europe/Paris")
    assert view.tables["detector"].value.empty
    assert "No verdict yet" in view.summary.object
    assert not view.refresh()  # nothing changed: nothing recomputed
    for k, (verdict, reason) in enumerate([("confirmed", None), ("confirmed", None),
                                           ("false_alarm", "shadow"), ("unsure", None)]):
        engine.review(f"ab-{k}", verdict, "alice", reason=reason, alarm_type="event")
    assert view.refresh()
    det = view.tables["detector"].value.set_index("kind").loc["abandoned_object"]
    assert det[["reviewed", "confirmed", "false_alarm", "unsure"]].tolist() == [4, 2, 1, 1]
    assert det["precision"] == round(2 / 3, 3)
    low, high = ledger.wilson_interval(2, 3)
    assert (det["precision_low"], det["precision_high"]) == (round(low, 3), round(high, 3))
    cam = view.tables["camera"].value.set_index("sensor_id")
    assert cam.loc["cam-001", ["confirmed", "false_alarm"]].tolist() == [1, 1]  # ab-0, ab-2
    assert cam.loc["cam-002", ["confirmed", "unsure"]].tolist() == [1, 1]       # ab-1, ab-3
    hours = view.tables["hour"].value
    expected_hours = {(now - pd.Timedelta(minutes=k)).tz_convert("Europe/Paris").hour for k in range(4)}
    assert set(hours["hour"]) == expected_hours and hours["reviewed"].sum() == 4
    since = now - pd.Timedelta(minutes=3)  # the first reviewed alarm: ab-4 came before
    shown = engine.incidents[engine.incidents["status"] != "merged"]
    alarms = 4 + int((shown["ts"] >= since).sum())
    assert "**4** verdicts" in view.summary.object
    assert f"{4 / alarms:.0%} of {alarms} alarms reviewed" in view.summary.object
    assert not view.refresh()
    layout = view.layout()
    assert "alarm-ledger" in layout.css_classes
    engine.close()
