"""The periods table: alarm periods of sensors and groups, each with a one-line English explanation.

Columns (``PERIOD_COLUMNS``):
    sensor_id (None for a group), group (None for a sensor), start, end (UTC),
    direction (high or low), observed, expected (mean per bin over the period,
    for a group the sum over its sensors), low, high (the usual band at the
    threshold, same basis), score (a sensor's peak standardised departure, a
    group's peak share of departing sensors; negative when low), peak (the bin
    of the peak), n_sensors, sensors (JSON list: the departing sensors of a
    group), attached (JSON list: sensors whose own alarms the group explains),
    explanation (one line), calendar (known happenings at the time and place).

A group alarm is one anomaly that lists the sensors that departed; their own
alarms in it are attached to it rather than repeated, so New Year's Eve is
one city-wide anomaly, not thirty-nine. ``anomaly_events`` turns the table
into ``anomaly`` rows of the events table.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from safecity.baseline.alarms import CITY, runs, shares_from_counts
from safecity.baseline.grid import NORMAL, PUBLIC, SCHOOL, Departures
from safecity.data.schema import empty, validate
from safecity.data.time_features import EVENT_AFTER_H, EVENT_BEFORE_H

if TYPE_CHECKING:
    from safecity.baseline.usual import UsualLevel

SOURCE = "safecity.baseline"
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PERIOD_COLUMNS = ["sensor_id", "group", "start", "end", "direction", "observed", "expected", "low", "high",
                  "score", "peak", "n_sensors", "sensors", "attached", "explanation", "calendar"]


def alarm_periods(model: UsualLevel, departures: Departures) -> pd.DataFrame:
    """The periods table: group anomalies (city, then zones), then sensor alarms they do not explain.

    ``departures`` are the scores of some bins (``UsualLevel.departures``, or
    ``replay.replay_live`` to score as the live model would); ``model`` gives
    the thresholds, groups, calendar and positions. The steps are apart so that
    a cluster can run the per-sensor ones where each sensor's scores are
    (``safecity.cluster.history``): group counts per bin, then group periods
    (on their members' bins only), then sensor alarms.
    """
    segments = group_segments(model, departures.index, group_counts(model, departures))
    out, claimed = [], []
    for seg, members in zip(segments, group_members(model, departures, segments)):
        row, attached = group_period(model, seg, members, departures.index, departures.day_type)
        out.append(row)
        claimed += [(s, seg.first, seg.last, seg.direction) for s in attached]
    out += sensor_periods(model, departures, claimed)
    return periods_table(out)


@dataclass(frozen=True)
class GroupCounts:
    """A group's reporting and departing sensors per bin, over some of its members (they add up)."""

    members: int  # members present in the scores and known to the model
    n_obs: np.ndarray
    up: np.ndarray
    down: np.ndarray

    def __add__(self, other: GroupCounts) -> GroupCounts:
        return GroupCounts(self.members + other.members, self.n_obs + other.n_obs, self.up + other.up,
                           self.down + other.down)


@dataclass(frozen=True)
class GroupSegment:
    """One group alarm period: bins ``first``..``last`` of the scores, its peak share and reporting sensors."""

    group: str
    direction: str
    sign: int
    first: int
    last: int
    peak: int
    share: float
    n_reporting: int


@dataclass(frozen=True)
class MemberBins:
    """A group's members (present, known; in the group's order) on one segment's bins."""

    sensor_ids: np.ndarray
    observed: np.ndarray
    z: np.ndarray
    centre: np.ndarray
    scale: np.ndarray

    @classmethod
    def concat(cls, parts: list[MemberBins], order: list[str]) -> MemberBins:
        """Parts of a group's members (from several partitions), in the group's member ``order``."""
        ids = np.concatenate([p.sensor_ids for p in parts])
        rank = {s: i for i, s in enumerate(order)}
        sort = np.argsort([rank[s] for s in ids], kind="stable")
        return cls(ids[sort], *(np.concatenate([getattr(p, f) for p in parts])[sort]
                                for f in ("observed", "z", "centre", "scale")))


def _present(model: UsualLevel, departures: Departures, members: list[str]) -> np.ndarray:
    pos = {s: i for i, s in enumerate(departures.sensor_ids)}
    known = model._rows(departures.sensor_ids, add=False) >= 0
    return np.array([pos[m] for m in members if m in pos and known[pos[m]]], dtype=np.int64)


def group_counts(model: UsualLevel, departures: Departures,
                 groups: dict[str, list[str]] | None = None) -> dict[str, GroupCounts]:
    """Per group (default: the model's), its members' reporting and departing (beyond ``group_z``) sensors per bin."""
    out = {}
    for name, members in (model._all_groups() if groups is None else groups).items():
        idx = _present(model, departures, members)
        with np.errstate(invalid="ignore"):
            z = departures.z[idx]
            out[name] = GroupCounts(len(idx), np.isfinite(z).sum(0), (z > model.group_z).sum(0),
                                    (z < -model.group_z).sum(0))
    return out


def group_segments(model: UsualLevel, index: pd.DatetimeIndex,
                   counts: dict[str, GroupCounts]) -> list[GroupSegment]:
    """Group alarm periods from the groups' counts: the city first, then zones it does not already explain."""
    gap = model._gap()
    fallback_tau = float(np.median(list(model.group_threshold_.values()))) if model.group_threshold_ else 0.5
    out: list[GroupSegment] = []
    step = model.freq_
    for name in model._all_groups():  # the city first, then zones
        c = counts.get(name)
        if c is None or c.members < model.min_group_sensors:
            continue
        tau = model.group_threshold_.get(name, fallback_tau)
        up, down, n_obs = shares_from_counts(c.n_obs, c.up, c.down, model.min_group_sensors)
        for direction, share, sign in (("high", up, 1), ("low", down, -1)):
            with np.errstate(invalid="ignore"):
                mask = share >= tau
            _, firsts, lasts = runs(mask[None, :], gap)
            for a, b in zip(firsts, lasts):
                start, end = index[a], index[b] + step
                if name != CITY and any(o.group == CITY and o.direction == direction
                                        and index[o.first] < end and start < index[o.last] + step
                                        for o in out):
                    continue  # a city-wide anomaly already explains it
                peak = int(a + int(np.nanargmax(share[a:b + 1])))
                out.append(GroupSegment(name, direction, sign, int(a), int(b), peak, float(share[peak]),
                                        int(n_obs[peak])))
    return out


def group_members(model: UsualLevel, departures: Departures, segments: list[GroupSegment],
                  groups: dict[str, list[str]] | None = None) -> list[MemberBins]:
    """For each segment, its group's members present in ``departures`` on the segment's bins."""
    groups = model._all_groups() if groups is None else groups
    out = []
    for seg in segments:
        idx = _present(model, departures, groups[seg.group])
        cols = slice(seg.first, seg.last + 1)
        out.append(MemberBins(departures.sensor_ids[idx], *(getattr(departures, f)[idx, cols]
                                                            for f in ("observed", "z", "centre", "scale"))))
    return out


def group_period(model: UsualLevel, seg: GroupSegment, m: MemberBins, index: pd.DatetimeIndex,
                 day_type: np.ndarray) -> tuple[dict, list[str]]:
    """The periods-table row of a group segment, and the members whose own alarms it explains."""
    thr, sign, a, b = model.threshold_, seg.sign, seg.first, seg.last
    with np.errstate(invalid="ignore"):
        expected = model._inverse(m.centre)
        low = model._inverse(m.centre - thr * m.scale)
        high = model._inverse(m.centre + thr * m.scale)
        departed = (sign * m.z > model.group_z).any(axis=1)
    out_idx = np.nonzero(departed)[0]
    order = np.argsort(-np.nanmax(sign * m.z[out_idx], axis=1))
    out_idx = out_idx[order]
    with np.errstate(invalid="ignore"):
        attached = [m.sensor_ids[s] for s in out_idx if (sign * m.z[s] > thr).any()]
    both = np.isfinite(m.observed) & np.isfinite(expected)
    obs_sum = np.where(both, m.observed, 0).sum(0)
    exp_sum = np.where(both, expected, 0).sum(0)
    lo_sum = np.where(both, low, 0).sum(0)
    hi_sum = np.where(both, high, 0).sum(0)
    k = seg.peak - a
    ratio = obs_sum[k] / exp_sum[k] if exp_sum[k] > 0 else np.inf
    n_rep = seg.n_reporting
    n_dep = int(round(seg.share * n_rep))
    where = "the city" if seg.group == CITY else seg.group
    label = _slot_label(index[seg.peak], model.tz, int(day_type[seg.peak]))
    row = {
        "sensor_id": None, "group": seg.group, "start": index[a], "end": index[b] + model.freq_,
        "direction": seg.direction, "observed": float(obs_sum.mean()),
        "expected": float(exp_sum.mean()), "low": float(lo_sum.mean()),
        "high": float(hi_sum.mean()), "score": float(sign * seg.share),
        "peak": index[seg.peak], "n_sensors": len(out_idx),
        "sensors": json.dumps([m.sensor_ids[s] for s in out_idx]),
        "attached": json.dumps(attached),
        "explanation": f"{n_dep} of {n_rep} sensors in {where} {'above' if sign > 0 else 'below'} "
                       f"their usual level; together {_ratio(ratio)} the usual {label} level",
        "calendar": happenings(model, index[a], index[b] + model.freq_,
                               model._rows(m.sensor_ids, add=False)),
    }
    return row, attached


def sensor_periods(model: UsualLevel, departures: Departures,
                   claimed: list[tuple[str, int, int, str]]) -> list[dict]:
    """Sensor alarm rows (high, then low; by sensor, then time), unless a group anomaly ``claimed`` them."""
    index, ids, Y = departures.index, departures.sensor_ids, departures.observed
    z, centre, scale = departures.z, departures.centre, departures.scale
    rows = model._rows(ids, add=False)
    gap, thr, step = model._gap(), model.threshold_, model.freq_
    by_sensor: dict[str, list[tuple[int, int, str]]] = {}
    for s, a, b, direction in claimed:
        by_sensor.setdefault(s, []).append((a, b, direction))
    out = []
    for direction, sign in (("high", 1), ("low", -1)):
        with np.errstate(invalid="ignore"):
            mask = sign * z > thr
        rs, firsts, lasts = runs(mask, gap)
        for s, a, b in zip(rs, firsts, lasts):
            if any(d == direction and a <= cb and ca <= b for ca, cb, d in by_sensor.get(ids[s], ())):
                continue
            seg = slice(a, b + 1)
            peak_bin = a + int(np.nanargmax(sign * z[s, seg]))
            with np.errstate(invalid="ignore"):
                expected = model._inverse(centre[s, seg])
                low = model._inverse(centre[s, seg] - thr * scale[s, seg])
                high = model._inverse(centre[s, seg] + thr * scale[s, seg])
            both = np.isfinite(Y[s, seg]) & np.isfinite(expected)
            obs, exp = Y[s, peak_bin], expected[peak_bin - a]
            label = _slot_label(index[peak_bin], model.tz, int(departures.day_type[peak_bin]))
            out.append({
                "sensor_id": ids[s], "group": None, "start": index[a], "end": index[b] + step,
                "direction": direction, "observed": float(Y[s, seg][both].mean()),
                "expected": float(expected[both].mean()), "low": float(low[both].mean()),
                "high": float(high[both].mean()), "score": float(z[s, peak_bin]),
                "peak": index[peak_bin], "n_sensors": 1, "sensors": json.dumps([ids[s]]),
                "attached": json.dumps([]),
                "explanation": f"{_ratio(obs / exp if exp > 0 else np.inf)} the usual {label} level at "
                               f"sensor {ids[s]} ({_number(obs)} vs {_number(exp)})",
                "calendar": happenings(model, index[a], index[b] + step, rows[[s]]),
            })
    return out


def periods_table(rows: list[dict]) -> pd.DataFrame:
    """The periods table of group then sensor rows, sorted by start (groups first at a tie), then sensor."""
    if not rows:
        return empty_periods()
    table = pd.DataFrame(rows, columns=PERIOD_COLUMNS)
    table["is_group"] = table["group"].notna()
    return table.sort_values(["start", "is_group", "sensor_id"], ascending=[True, False, True],
                             ignore_index=True).drop(columns="is_group")


def happenings(model: UsualLevel, start, end, rows) -> str | None:
    """Names of calendar events and roadworks under way near these sensors (with arrival and departure)."""
    cal = model.calendar_
    if cal.empty:
        return None
    before, after = pd.Timedelta(hours=EVENT_BEFORE_H), pd.Timedelta(hours=EVENT_AFTER_H)
    hits = cal[cal["kind"].isin(["event", "roadworks"]) & (cal["start"] - before < end)
               & (cal["end"] + after > start)]
    names = [row.name for row in hits.itertuples(index=False) if model._near(row, rows).any()]
    return "; ".join(dict.fromkeys(names)) or None


def _slot_label(ts: pd.Timestamp, tz: str, day_type: int) -> str:
    local = ts.tz_convert(tz)
    prefix = {NORMAL: "", SCHOOL: "school-holiday ", PUBLIC: "public-holiday "}[day_type]
    return f"{prefix}{WEEKDAYS[local.day_of_week]} {local:%H:%M}"


def _ratio(r: float) -> str:
    if not np.isfinite(r):
        return "far above"
    return f"{r:.1f}x" if r >= 0.095 else f"{r:.2f}x"


def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.1f}"


def empty_periods() -> pd.DataFrame:
    """A periods table with no rows (the columns of ``PERIOD_COLUMNS``, typed)."""
    return pd.DataFrame({c: pd.Series(dtype="datetime64[ns, UTC]" if c in ("start", "end", "peak") else
                                      float if c in ("observed", "expected", "low", "high", "score") else
                                      "int64" if c == "n_sensors" else object) for c in PERIOD_COLUMNS})


def anomaly_events(periods: pd.DataFrame, sensors: pd.DataFrame | None = None,
                   metric: str = "people_count") -> pd.DataFrame:
    """``anomaly`` events from the periods table: one per sensor alarm or group anomaly.

    ts is the start of the period; score its |score| (standardised departure,
    or share of a group's sensors); details hold the rest (observed, expected,
    interval, direction, explanation, the group's sensors and the alarms it
    explains). ``sensors`` (sensor_id, lon, lat) places a sensor at its
    position and a group at the mean position of its departing sensors.
    """
    if periods.empty:
        return empty("events")
    lonlat = None
    if sensors is not None:
        lonlat = sensors.assign(sensor_id=sensors["sensor_id"].astype(str)) \
            .drop_duplicates("sensor_id").set_index("sensor_id")[["lon", "lat"]]
    rows = []
    for p in periods.itertuples(index=False):
        members = json.loads(p.sensors) if isinstance(p.sensors, str) else []
        who = p.sensor_id if isinstance(p.sensor_id, str) else f"group-{p.group}"
        lon = lat = np.nan
        if lonlat is not None:
            where = lonlat.reindex([p.sensor_id] if isinstance(p.sensor_id, str) else members).dropna()
            if len(where):
                lon, lat = float(where["lon"].mean()), float(where["lat"].mean())
        details = {
            "metric": metric, "direction": p.direction, "start": p.start.isoformat(), "end": p.end.isoformat(),
            "peak": p.peak.isoformat(), "observed": _round(p.observed), "expected": _round(p.expected),
            "interval": [_round(p.low), _round(p.high)], "explanation": p.explanation,
            "group": p.group if isinstance(p.group, str) else None,
            "sensors": members, "attached": json.loads(p.attached) if isinstance(p.attached, str) else [],
            "calendar": p.calendar if isinstance(p.calendar, str) else None,
            "signed_score": _round(p.score, 3),
        }
        rows.append({"event_id": f"anomaly-{who}-{p.direction}-{p.start:%Y%m%dT%H%MZ}", "ts": p.start,
                     "kind": "anomaly", "sensor_id": p.sensor_id if isinstance(p.sensor_id, str) else None,
                     "lon": lon, "lat": lat, "score": abs(float(p.score)), "source": SOURCE,
                     "details": json.dumps(details, ensure_ascii=False)})
    return validate(pd.DataFrame(rows), "events")


def _round(v, digits: int = 1):
    return None if v is None or not np.isfinite(v) else round(float(v), digits)
