"""The alarm ledger: how often each detector is right, measured from the operators' verdicts.

Every alarm an operator sees (a video event, an anomaly, a gathering alert, a
fused incident) may get a verdict: confirmed, false alarm (with a reason) or
unsure (``safecity.incidents.review``). This module turns the ``verdicts``
table into the figures a city can publish about its own detectors:

* **precision** = confirmed / (confirmed + false alarm), with a Wilson interval
  (unsure verdicts are counted and shown, never in the ratio), per detector
  (``alarm_type`` and ``kind``: a fused "gunshot" incident is not the gunshot
  detector's event), per camera (``sensor_id``), per hour of day in the city's
  local time;
* **false alarms per camera-hour**, with an exact (Garwood) Poisson interval.
  Camera-hours are counted from the ``observations`` history: a sensor
  contributes one hour for each clock hour in which it reported at least one
  bin in the period. A sensor that reports no observations (a gunshot
  detector, a panic button) has no camera-hours and no rate; hours can also be
  given directly (``camera_hours=``);
* the **share of alarms reviewed**, when the alarms (events and incidents) are
  given: a ledger over 5% of the alarms says less than one over all of them.

Plain functions over DataFrames; ``build_ledger`` gathers them in a ``Ledger``,
``ledger_report`` makes the JSON that ``safecity ledger report`` prints.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import pandas as pd

from safecity.data.schema import FALSE_ALARM_REASONS, VERDICTS
from safecity.evaluation.stats import poisson_interval, wilson_interval

#: The columns of a precision table, after its grouping columns.
COUNT_COLUMNS = ["reviewed", *VERDICTS, "precision", "precision_low", "precision_high"]
DETECTOR = ["alarm_type", "kind"]


def in_period(verdicts: pd.DataFrame, since=None, until=None) -> pd.DataFrame:
    """The verdicts on alarms raised in ``[since, until)`` (the alarm's time, not the verdict's)."""
    keep = pd.Series(True, index=verdicts.index)
    if since is not None:
        keep &= verdicts["alarm_ts"] >= _utc(since)
    if until is not None:
        keep &= verdicts["alarm_ts"] < _utc(until)
    return verdicts[keep]


def _wilson(k: int, n: int) -> tuple[float, float]:
    """``wilson_interval`` without the rounding that puts an end a hair outside [0, 1]."""
    low, high = wilson_interval(k, n)
    return (float(min(max(low, 0.0), 1.0)), float(min(max(high, 0.0), 1.0))) if n else (math.nan,) * 2


def precision(confirmed: int, false_alarms: int) -> tuple[float, float, float]:
    """``(precision, low, high)``: confirmed / (confirmed + false alarms) and its Wilson interval."""
    n = confirmed + false_alarms
    low, high = _wilson(confirmed, n)
    return (confirmed / n if n else math.nan, low, high)


def precision_table(verdicts: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """One row per group of ``by``: counts of each verdict, precision and its Wilson interval.

    Rows whose grouping value is missing (an incident has no camera) are left out.
    """
    by = [by] if isinstance(by, str) else list(by)
    if verdicts.empty:
        return pd.DataFrame(columns=by + COUNT_COLUMNS)
    counts = (verdicts.dropna(subset=by).groupby(by + ["verdict"]).size()
              .unstack("verdict", fill_value=0).reindex(columns=list(VERDICTS), fill_value=0))
    counts.columns.name = None
    rows = [precision(int(c), int(f)) for c, f in zip(counts["confirmed"], counts["false_alarm"])]
    table = counts.assign(reviewed=counts.sum(axis=1),
                          precision=[r[0] for r in rows], precision_low=[r[1] for r in rows],
                          precision_high=[r[2] for r in rows])
    return table.reset_index()[by + COUNT_COLUMNS]


def by_hour_of_day(verdicts: pd.DataFrame, tz: str) -> pd.DataFrame:
    """``precision_table`` per hour of day (0..23) of the alarm, in the city's time zone ``tz``."""
    hours = verdicts.assign(hour=verdicts["alarm_ts"].dt.tz_convert(tz).dt.hour)
    return precision_table(hours, "hour")


def reasons_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """False alarms per detector and reason: what fools each detector."""
    false = verdicts[verdicts["verdict"] == "false_alarm"]
    table = (false.groupby(DETECTOR + ["reason"]).size().unstack("reason", fill_value=0)
             .reindex(columns=list(FALSE_ALARM_REASONS), fill_value=0))
    table.columns.name = None
    return table.reset_index()


def camera_hours(observations: pd.DataFrame) -> pd.Series:
    """Hours each sensor reported: the number of distinct clock hours holding one of its bins."""
    if observations.empty:
        return pd.Series(dtype=float, name="camera_hours")
    hours = observations[["sensor_id"]].assign(hour=observations["ts"].dt.floor("h"))
    return hours.drop_duplicates().groupby("sensor_id").size().astype(float).rename("camera_hours")


def false_alarm_rate(false_alarms: int, hours: float, level: float = 0.95) -> tuple[float, float, float]:
    """``(rate, low, high)`` false alarms per camera-hour, with the exact Poisson interval."""
    if not hours or hours <= 0 or pd.isna(hours):
        return (math.nan, math.nan, math.nan)
    low, high = poisson_interval(int(false_alarms), level)
    return (false_alarms / hours, low / hours, high / hours)


def false_alarms_per_camera_hour(verdicts: pd.DataFrame, hours: pd.Series) -> pd.DataFrame:
    """Per sensor: its false alarms, camera-hours, and false alarms per camera-hour with interval.

    Every sensor with verdicts or with hours is listed; one without hours has a NaN rate.
    """
    false = verdicts[verdicts["verdict"] == "false_alarm"].dropna(subset=["sensor_id"])
    counts = false.groupby("sensor_id").size()
    sensors = sorted(set(counts.index) | set(hours.index) | set(verdicts["sensor_id"].dropna()))
    rows = []
    for sensor in sensors:
        k, h = int(counts.get(sensor, 0)), float(hours.get(sensor, math.nan))
        rate, low, high = false_alarm_rate(k, h)
        rows.append({"sensor_id": sensor, "false_alarm": k, "camera_hours": h,
                     "per_camera_hour": rate, "per_camera_hour_low": low,
                     "per_camera_hour_high": high})
    return pd.DataFrame(rows, columns=["sensor_id", "false_alarm", "camera_hours", "per_camera_hour",
                                       "per_camera_hour_low", "per_camera_hour_high"])


def alarms_from(events: pd.DataFrame, incidents: pd.DataFrame | None = None) -> pd.DataFrame:
    """The alarms an operator could review: events and (non-merged) incidents as one table."""
    frames = [events.assign(alarm_id=events["event_id"], alarm_type="event")[
        ["alarm_id", "alarm_type", "kind", "ts"]]]
    if incidents is not None and len(incidents):
        shown = incidents[incidents["status"] != "merged"]
        frames.append(shown.assign(alarm_id=shown["incident_id"], alarm_type="incident")[
            ["alarm_id", "alarm_type", "kind", "ts"]])
    return pd.concat(frames, ignore_index=True)


def review_coverage(verdicts: pd.DataFrame, alarms: pd.DataFrame) -> pd.DataFrame:
    """Per detector: alarms raised, how many got a verdict, and the share reviewed (Wilson interval)."""
    seen = alarms.assign(reviewed=alarms["alarm_id"].isin(set(verdicts["alarm_id"])))
    table = seen.groupby(DETECTOR)["reviewed"].agg(alarms="size", reviewed="sum").reset_index()
    intervals = [_wilson(int(r), int(n)) for r, n in zip(table["reviewed"], table["alarms"])]
    return table.assign(share=table["reviewed"] / table["alarms"],
                        share_low=[i[0] for i in intervals], share_high=[i[1] for i in intervals])


@dataclass
class Ledger:
    """The ledger's tables; ``overall`` holds the whole period's figures."""

    tz: str
    since: pd.Timestamp | None
    until: pd.Timestamp | None
    overall: dict
    by_detector: pd.DataFrame
    by_camera: pd.DataFrame
    by_hour: pd.DataFrame
    reasons: pd.DataFrame
    false_alarm_rates: pd.DataFrame
    coverage: pd.DataFrame | None = None
    camera_hours_from: str = "observations"
    notes: list[str] = field(default_factory=list)


def build_ledger(verdicts: pd.DataFrame, tz: str, observations: pd.DataFrame | None = None,
                 hours: pd.Series | None = None, alarms: pd.DataFrame | None = None,
                 since=None, until=None) -> Ledger:
    """The ledger of the alarms raised in ``[since, until)``.

    Camera-hours come from ``hours`` (sensor_id -> hours) when given, else from
    ``observations`` (``camera_hours``, restricted to the period); with neither,
    there is no false-alarm rate. ``alarms`` (``alarms_from``) adds the share reviewed.
    """
    since, until = (None if since is None else _utc(since)), (None if until is None else _utc(until))
    verdicts = in_period(verdicts, since, until)
    if hours is not None:
        source = "given"
    elif observations is not None:
        obs = observations
        if since is not None:
            obs = obs[obs["ts"] >= since]
        if until is not None:
            obs = obs[obs["ts"] < until]
        hours, source = camera_hours(obs), "observations"
    else:
        hours, source = pd.Series(dtype=float), "none"
    rates = false_alarms_per_camera_hour(verdicts, hours)
    counts = verdicts["verdict"].value_counts()
    p, low, high = precision(int(counts.get("confirmed", 0)), int(counts.get("false_alarm", 0)))
    measured = rates.dropna(subset=["camera_hours"])
    rate = false_alarm_rate(int(measured["false_alarm"].sum()), float(measured["camera_hours"].sum()))
    overall = {"reviewed": len(verdicts), **{v: int(counts.get(v, 0)) for v in VERDICTS},
               "precision": p, "precision_low": low, "precision_high": high,
               "camera_hours": float(measured["camera_hours"].sum()),
               "false_alarms_on_cameras": int(measured["false_alarm"].sum()),
               "false_alarms_per_camera_hour": rate[0], "false_alarms_per_camera_hour_low": rate[1],
               "false_alarms_per_camera_hour_high": rate[2]}
    coverage = None
    if alarms is not None:
        alarms = in_period(alarms.rename(columns={"ts": "alarm_ts"}), since, until)
        coverage = review_coverage(verdicts, alarms)
        n, k = int(coverage["alarms"].sum()), int(coverage["reviewed"].sum())
        share_low, share_high = _wilson(k, n)
        overall.update(alarms=n, reviewed_of_alarms=k, share_reviewed=k / n if n else math.nan,
                       share_reviewed_low=share_low, share_reviewed_high=share_high)
    return Ledger(tz=tz, since=since, until=until, overall=overall,
                  by_detector=precision_table(verdicts, DETECTOR),
                  by_camera=precision_table(verdicts, "sensor_id"),
                  by_hour=by_hour_of_day(verdicts, tz), reasons=reasons_table(verdicts),
                  false_alarm_rates=rates, coverage=coverage, camera_hours_from=source)


def read_ledger(data_dir: str | os.PathLike, tz: str, state: str | None = None, since=None,
                until=None) -> Ledger:
    """The ledger of a served city's state directory (``--state-dir``): verdicts from its state
    store, observations and events from its history (rows still in the inbox, the last few
    seconds, are not counted), incidents from its state store.

    Raises ``FileNotFoundError`` naming the directory or its missing state store.
    """
    from pathlib import Path

    from safecity.data.store import Store, open_state

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no such directory (give a served city's --state-dir)")
    if state is None and not (data_dir / "state.sqlite").exists():
        raise FileNotFoundError(f"{data_dir}: no state store (state.sqlite) here: is it the "
                                "--state-dir of a served city, or is its state in PostgreSQL (--state)?")
    store = Store(data_dir, state=open_state(state, data_dir))
    verdicts = store.read("verdicts")
    start = None if since is None else _utc(since)
    observations = store.read("observations", start=start, end=until, columns=["sensor_id", "ts"])
    events = store.read("events", start=start, end=until)
    alarms = alarms_from(events, store.read("incidents"))
    return build_ledger(verdicts, tz, observations=observations, alarms=alarms, since=since,
                        until=until)


def ledger_report(ledger: Ledger) -> dict:
    """The ledger as plain JSON-ready data (NaN becomes null)."""
    def records(df: pd.DataFrame | None):
        if df is None:
            return None
        return json.loads(df.to_json(orient="records", double_precision=6))

    return {
        "tz": ledger.tz,
        "since": None if ledger.since is None else ledger.since.isoformat(),
        "until": None if ledger.until is None else ledger.until.isoformat(),
        "camera_hours_from": ledger.camera_hours_from,
        "overall": json.loads(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                          for k, v in ledger.overall.items()})),
        "by_detector": records(ledger.by_detector),
        "by_camera": records(ledger.by_camera),
        "by_hour": records(ledger.by_hour),
        "reasons": records(ledger.reasons),
        "false_alarms_per_camera_hour": records(ledger.false_alarm_rates),
        "coverage": records(ledger.coverage),
    }


# --------------------------------------------------------------------------- tuning from the ledger

@dataclass(frozen=True)
class ThresholdEffect:
    """What a higher threshold on a detector's score would have done to its reviewed alarms.

    Alarms scoring at or above ``threshold`` are kept, the others would not have
    been raised; alarms without a score are always kept.
    """

    kind: str
    threshold: float
    confirmed_kept: int
    confirmed_lost: int
    false_alarms_kept: int
    false_alarms_avoided: int
    unsure_kept: int
    unsure_lost: int
    precision: float
    precision_low: float
    precision_high: float


def threshold_effect(verdicts: pd.DataFrame, kind: str, threshold: float,
                     alarm_type: str = "event") -> ThresholdEffect:
    """The confirmed alarms lost and the false alarms avoided if ``kind`` alarmed only at
    ``score >= threshold``, and the precision of what would remain (Wilson interval)."""
    mine = verdicts[(verdicts["kind"] == kind) & (verdicts["alarm_type"] == alarm_type)]
    if mine.empty:
        raise ValueError(f"kind: no reviewed {alarm_type} of kind '{kind}' in the ledger")
    score = pd.to_numeric(mine["score"], errors="coerce")
    kept = score.isna() | (score >= threshold)

    def n(verdict: str, keep: bool) -> int:
        return int(((mine["verdict"] == verdict) & (kept == keep)).sum())

    p, low, high = precision(n("confirmed", True), n("false_alarm", True))
    return ThresholdEffect(kind=kind, threshold=float(threshold),
                           confirmed_kept=n("confirmed", True), confirmed_lost=n("confirmed", False),
                           false_alarms_kept=n("false_alarm", True),
                           false_alarms_avoided=n("false_alarm", False),
                           unsure_kept=n("unsure", True), unsure_lost=n("unsure", False),
                           precision=p, precision_low=low, precision_high=high)


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# --------------------------------------------------------------------------- a ledger with known truth

def truth_verdict(event_id: str, true_events: set[str]) -> tuple[str, str | None]:
    """What a reviewer who knows the synthetic city's truth answers: ``(verdict, reason)``."""
    return ("confirmed", None) if event_id in true_events else ("false_alarm", "other")


def true_event_ids(truth_incidents: pd.DataFrame) -> set[str]:
    """The events that belong to a true incident; every other event is a false alarm."""
    return {e for ids in truth_incidents["event_ids"] for e in json.loads(ids)}


def review_from_truth(store, events: pd.DataFrame, truth_incidents: pd.DataFrame,
                      actor: str = "truth-reviewer") -> pd.DataFrame:
    """Give every event the ground truth's verdict through ``review.record_verdict`` (audited)."""
    from safecity.incidents import review

    true_events = true_event_ids(truth_incidents)
    for _, event in events.iterrows():
        verdict, reason = truth_verdict(event["event_id"], true_events)
        review.record_verdict(store, event, "event", review.Verdict(verdict, reason), actor,
                              ts=event["ts"] + pd.Timedelta(minutes=5))
    return store.read("verdicts")


def simulated_ledger_dir(out_dir: str | os.PathLike, days: int = 2, seed: int = 0,
                         n_cameras: int = 24) -> str:
    """A state directory as a served city leaves it, on a synthetic city reviewed from its truth.

    Its history holds the city's observations and events, its state store the
    verdicts; the city's time zone is returned (``Europe/Paris``).
    """
    from safecity.data.store import Store
    from safecity.sim.city import simulate_city

    city = simulate_city(seed=seed, days=days, n_cameras=n_cameras)
    store = Store(out_dir)
    store.append("observations", city.observations)
    store.append("events", city.events)
    review_from_truth(store, city.events, city.truth["incidents"])
    return city.config.tz


def read_verdicts(state_dir: str | os.PathLike, state: str | None = None) -> pd.DataFrame:
    """The verdicts of a state directory; ``FileNotFoundError`` names a missing one."""
    from pathlib import Path

    from safecity.data.store import Store, open_state

    if state is None and not (Path(state_dir) / "state.sqlite").exists():
        raise FileNotFoundError(f"{state_dir}: no state store (state.sqlite) here")
    return Store(state_dir, state=open_state(state, state_dir)).read("verdicts")
