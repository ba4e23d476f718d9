"""What an operator does with an alarm besides dispatching: acknowledge, close, judge.

An incident is *acknowledged* once an operator has seen it (a new priority 1 or 2
incident stands out on the console until then), *closed* with an outcome, and any
alarm (a video event, an anomaly, a gathering alert, a fused incident) gets a
*verdict*: confirmed, false alarm with a reason, or unsure. Verdicts are the
alarm ledger's raw material (``safecity.evaluation.ledger``): how often each
detector is right, measured in the field. Each change is written with its audit
record in one transaction of the state store, so the audit never misses one.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from safecity.data.schema import FALSE_ALARM_REASONS, VERDICTS
from safecity.data.store import Store

#: How an operator may close an incident.
CLOSE_OUTCOMES = ("resolved", "no_action_needed", "false_alarm", "duplicate", "handed_over")
#: Incidents an operator may still act on (dispatch, acknowledge, close).
ACTIVE_STATUSES = ("open", "acknowledged", "dispatched")


@dataclass(frozen=True)
class Verdict:
    """An operator's judgement of one alarm; a false alarm says why, from a short list."""

    verdict: str
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict: '{self.verdict}' is not one of {', '.join(VERDICTS)}")
        if self.verdict == "false_alarm" and self.reason not in FALSE_ALARM_REASONS:
            raise ValueError(f"reason: a false alarm needs one of {', '.join(FALSE_ALARM_REASONS)}, "
                             f"got {self.reason!r}")
        if self.verdict != "false_alarm" and self.reason is not None:
            raise ValueError(f"reason: only a false alarm takes a reason, not '{self.verdict}'")


def _active(store: Store, incident_id: str, what: str) -> pd.DataFrame:
    """The incident's row, if an operator may still act on it (else a ValueError saying why)."""
    incidents = store.state.read("incidents")
    row = incidents[incidents["incident_id"] == incident_id]
    if row.empty:
        raise KeyError(f"unknown incident '{incident_id}'")
    status = row["status"].iloc[0]
    if status not in ACTIVE_STATUSES:
        raise ValueError(f"incident '{incident_id}' is {status}; only an active incident "
                         f"can be {what}")
    return row


def acknowledge(store: Store, incident_id: str, actor: str, ts=None) -> pd.Series:
    """Mark an open incident as seen; an incident already acknowledged or dispatched stays as it is."""
    with store.state.transaction():
        row = _active(store, incident_id, "acknowledged")
        if row["status"].iloc[0] == "open":
            row = row.assign(status="acknowledged")
            store.state.upsert("incidents", row)
            store.state.audit(actor, "acknowledge", incident_id, {}, ts=ts)
    return row.iloc[0]


def close(store: Store, incident_id: str, outcome: str, actor: str, ts=None) -> pd.Series:
    """Close an active incident with one of ``CLOSE_OUTCOMES``; the outcome goes to the audit."""
    if outcome not in CLOSE_OUTCOMES:
        raise ValueError(f"outcome: '{outcome}' is not one of {', '.join(CLOSE_OUTCOMES)}")
    with store.state.transaction():
        row = _active(store, incident_id, "closed")
        status = row["status"].iloc[0]
        row = row.assign(status="closed")
        store.state.upsert("incidents", row)
        store.state.audit(actor, "close", incident_id, {"outcome": outcome, "was": status}, ts=ts)
    return row.iloc[0]


def verdict_row(alarm: pd.Series, alarm_type: str, verdict: Verdict, actor: str, ts) -> pd.DataFrame:
    """The ``verdicts`` row for an event or incident row: its kind, sensor, time and score kept."""
    if alarm_type == "event":
        sensor, alarm_id, score = alarm.get("sensor_id"), alarm["event_id"], alarm.get("score")
    elif alarm_type == "incident":
        sensor, alarm_id, score = None, alarm["incident_id"], alarm.get("confidence")
    else:
        raise ValueError(f"alarm_type: '{alarm_type}' is neither 'event' nor 'incident'")
    return pd.DataFrame([{
        "alarm_id": alarm_id, "alarm_type": alarm_type, "kind": alarm["kind"],
        "sensor_id": None if pd.isna(sensor) else sensor, "alarm_ts": alarm["ts"],
        "score": None if score is None or pd.isna(score) else float(score),
        "verdict": verdict.verdict, "reason": verdict.reason, "actor": actor,
        "ts": pd.Timestamp.now(tz="UTC") if ts is None else ts}])


def record_verdict(store: Store, alarm: pd.Series, alarm_type: str, verdict: Verdict, actor: str,
                   ts=None) -> pd.Series:
    """Store an operator's verdict on an alarm (a later verdict replaces it); audited."""
    row = verdict_row(alarm, alarm_type, verdict, actor, ts)
    with store.state.transaction():
        store.state.upsert("verdicts", row)
        store.state.audit(actor, "verdict", str(row["alarm_id"].iloc[0]),
                          {"alarm_type": alarm_type, "kind": str(alarm["kind"]),
                           "verdict": verdict.verdict, "reason": verdict.reason},
                          ts=row["ts"].iloc[0])
    return row.iloc[0]
