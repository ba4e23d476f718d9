"""Acknowledge, close, and verdicts on alarms: stored in each state backend, audited, checked."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from safecity.data.store import Store
from safecity.incidents import review


def _incident(incident_id="inc-1", status="open"):
    return pd.DataFrame([{
        "incident_id": incident_id, "ts": pd.Timestamp("2026-06-01 12:00", tz="UTC"),
        "kind": "gunshot", "priority": 1, "confidence": 0.8, "status": status,
        "lon": 5.37, "lat": 43.29, "summary": "gunshot", "event_ids": json.dumps(["ev-1", "ev-2"])}])


def _event(event_id="ev-1", kind="abandoned_object", sensor="cam-001"):
    return pd.Series({"event_id": event_id, "ts": pd.Timestamp("2026-06-01 11:59", tz="UTC"),
                      "kind": kind, "sensor_id": sensor, "lon": 5.37, "lat": 43.29, "score": 0.7,
                      "source": "camera", "details": None})


@pytest.fixture
def store(tmp_path, state_backend):
    store = Store(tmp_path, state=state_backend(tmp_path))
    store.state.upsert("incidents", _incident())
    return store


def test_acknowledge_then_close_are_audited(store):
    assert review.acknowledge(store, "inc-1", "alice")["status"] == "acknowledged"
    assert review.acknowledge(store, "inc-1", "bob")["status"] == "acknowledged"  # no change, no record
    closed = review.close(store, "inc-1", "resolved", "alice")
    assert closed["status"] == "closed"
    assert store.read("incidents").set_index("incident_id").loc["inc-1", "status"] == "closed"
    audit = store.read("audit_log")
    assert list(audit["action"]) == ["acknowledge", "close"]
    assert list(audit["actor"]) == ["alice", "alice"]
    assert json.loads(audit["details"].iloc[1]) == {"outcome": "resolved", "was": "acknowledged"}
    with pytest.raises(ValueError, match="inc-1' is closed"):
        review.acknowledge(store, "inc-1", "alice")
    with pytest.raises(ValueError, match="inc-1' is closed"):
        review.close(store, "inc-1", "resolved", "alice")


def test_bad_outcome_or_unknown_incident_changes_nothing(store):
    with pytest.raises(ValueError, match="outcome: 'fixed' is not one of resolved"):
        review.close(store, "inc-1", "fixed", "alice")
    with pytest.raises(KeyError, match="unknown incident 'inc-9'"):
        review.acknowledge(store, "inc-9", "alice")
    assert store.read("incidents")["status"].tolist() == ["open"]
    assert store.read("audit_log").empty


def test_verdicts_keep_the_alarm_and_the_latest_judgement(store):
    review.record_verdict(store, _event(), "event", review.Verdict("false_alarm", "shadow"), "alice")
    review.record_verdict(store, _incident().iloc[0], "incident", review.Verdict("confirmed"), "bob")
    review.record_verdict(store, _event(), "event", review.Verdict("unsure"), "carol")  # replaces
    got = store.read("verdicts").set_index("alarm_id")
    assert set(got.index) == {"ev-1", "inc-1"}
    ev = got.loc["ev-1"]
    assert (ev["verdict"], ev["actor"], ev["kind"], ev["sensor_id"]) == (
        "unsure", "carol", "abandoned_object", "cam-001")
    assert pd.isna(ev["reason"]) and ev["alarm_ts"] == pd.Timestamp("2026-06-01 11:59", tz="UTC")
    inc = got.loc["inc-1"]
    assert (inc["alarm_type"], inc["verdict"], inc["score"]) == ("incident", "confirmed", 0.8)
    audit = store.read("audit_log")
    assert list(audit["action"]) == ["verdict"] * 3
    assert json.loads(audit["details"].iloc[0])["reason"] == "shadow"


@pytest.mark.parametrize("verdict, reason, message", [
    ("wrong", None, "verdict: 'wrong' is not one of confirmed"),
    ("false_alarm", None, "reason: a false alarm needs one of reflection_lighting"),
    ("false_alarm", "bird", "reason: a false alarm needs one of"),
    ("confirmed", "shadow", "reason: only a false alarm takes a reason"),
])
def test_a_bad_verdict_is_refused_by_name(verdict, reason, message):
    with pytest.raises(ValueError, match=message):
        review.Verdict(verdict, reason)


def test_engine_acknowledges_closes_and_reviews(tmp_path):
    """The live engine's operator actions, on a real simulated city and its real fusion."""
    from live_server import make_city

    from safecity.app.engine import LiveEngine
    from safecity.data.citydir import read_city

    engine = LiveEngine(read_city(make_city(tmp_path / "city"), store=False), tmp_path / "state")
    now = pd.Timestamp.now(tz="UTC").floor("s")
    engine.ingest("events", [
        {"event_id": f"gs-{k}", "ts": (now - pd.Timedelta(seconds=k)).isoformat(), "kind": "gunshot",
         "sensor_id": f"gsd-00{k}", "lon": 5.37, "lat": 43.29 + k * 1e-4, "score": 0.9,
         "source": "acoustic"} for k in (1, 2)], source="acoustic")
    inc = engine.incident_queue().iloc[0]
    evidence = engine.incident_events(inc["incident_id"])
    assert sorted(evidence["event_id"]) == ["gs-1", "gs-2"]
    version = engine.version
    engine.acknowledge(inc["incident_id"], "alice")
    assert engine.version > version
    assert engine.incident_queue().iloc[0]["status"] == "acknowledged"
    engine.review("gs-1", "false_alarm", "alice", reason="reflection_lighting")
    engine.review(inc["incident_id"], "confirmed", "alice")
    engine.close_incident(inc["incident_id"], "resolved", "alice")
    assert engine.incident_queue().iloc[0]["status"] == "closed"
    verdicts = engine.verdicts().set_index("alarm_id")
    assert verdicts.loc["gs-1", ["alarm_type", "verdict", "sensor_id"]].tolist() == [
        "event", "false_alarm", "gsd-001"]
    assert verdicts.loc[inc["incident_id"], "alarm_type"] == "incident"
    assert list(engine.audit(10)["action"])[:4] == ["close", "verdict", "verdict", "acknowledge"]
    with pytest.raises(KeyError, match="unknown event 'nope'"):
        engine.review("nope", "confirmed", "alice")
    engine.close()
