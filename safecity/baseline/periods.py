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

from typing import TYPE_CHECKING

import json

import numpy as np
import pandas as pd

from safecity.baseline.alarms import CITY, group_shares, runs
from safecity.baseline.grid import NORMAL, PUBLIC, SCHOOL, Departures
from safecity.data.schema import empty, validate
from safecity.data.time_features import EVENT_AFTER_H, EVENT_BEFORE_H

if TYPE_CHECKING:
    from safecity.baseline.usual import UsualLevel

SOURCE = "safecity.baseline"
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
PERIOD_COLUMNS = ["sensor_id", "group", "start", "end", "direction", "observed", "expected", "low", "high",
                  "score", "peak", "n_sensors", "sensors", "attached", "explanation", "calendar"]


def alarm_periods(model: "UsualLevel", departures: Departures) -> pd.DataFrame:
    """The periods table: group anomalies (city, then zones), then sensor alarms they do not explain.

    ``departures`` are the scores of some bins (``UsualLevel.departures``, or
    ``replay.replay_live`` to score as the live model would); ``model`` gives
    the thresholds, groups, calendar and positions.
    """
    index, ids, Y = departures.index, departures.sensor_ids, departures.observed
    z, centre, scale = departures.z, departures.centre, departures.scale
    rows = model._rows(ids, add=False)
    gap = model._gap()
    thr = model.threshold_
    known = rows >= 0
    with np.errstate(invalid="ignore"):
        expected = model._inverse(centre)
        low = model._inverse(centre - thr * scale)
        high = model._inverse(centre + thr * scale)
    step = model.freq_
    pos = {s: i for i, s in enumerate(ids)}
    out: list[dict] = []
    claimed: list[tuple[int, int, int, str]] = []  # (sensor, first, last, direction) explained by a group
    fallback_tau = float(np.median(list(model.group_threshold_.values()))) if model.group_threshold_ else 0.5
    groups = model._all_groups()
    for name, members in groups.items():  # the city first, then zones
        idx = np.array([pos[m] for m in members if m in pos and known[pos[m]]], dtype=np.int64)
        if len(idx) < model.min_group_sensors:
            continue
        tau = model.group_threshold_.get(name, fallback_tau)
        up, down, n_obs = group_shares(z[idx], model.group_z, model.min_group_sensors)
        for direction, share, sign in (("high", up, 1), ("low", down, -1)):
            with np.errstate(invalid="ignore"):
                mask = share >= tau
            _, firsts, lasts = runs(mask[None, :], gap)
            for a, b in zip(firsts, lasts):
                if name != CITY and _overlaps(out, CITY, a, b, direction, index, step):
                    continue  # a city-wide anomaly already explains it
                seg = slice(a, b + 1)
                zz = z[idx, seg]
                with np.errstate(invalid="ignore"):
                    departed = (sign * zz > model.group_z).any(axis=1)
                peak_bin = a + int(np.nanargmax(share[seg]))
                members_out = idx[departed]
                order = np.argsort(-np.nanmax(sign * z[members_out, seg], axis=1))
                members_out = members_out[order]
                attached = []
                for s in members_out:
                    with np.errstate(invalid="ignore"):
                        if (sign * z[s, seg] > thr).any():
                            attached.append(ids[s])
                            claimed.append((s, a, b, direction))
                both = np.isfinite(Y[idx, seg]) & np.isfinite(expected[idx, seg])
                obs_sum = np.where(both, Y[idx, seg], 0).sum(0)
                exp_sum = np.where(both, expected[idx, seg], 0).sum(0)
                lo_sum = np.where(both, low[idx, seg], 0).sum(0)
                hi_sum = np.where(both, high[idx, seg], 0).sum(0)
                k = peak_bin - a
                ratio = obs_sum[k] / exp_sum[k] if exp_sum[k] > 0 else np.inf
                n_rep = int(n_obs[peak_bin])
                n_dep = int(round(share[peak_bin] * n_rep))
                where = "the city" if name == CITY else name
                label = _slot_label(index[peak_bin], model.tz, int(departures.day_type[peak_bin]))
                out.append({
                    "sensor_id": None, "group": name, "start": index[a], "end": index[b] + step,
                    "direction": direction, "observed": float(obs_sum.mean()),
                    "expected": float(exp_sum.mean()), "low": float(lo_sum.mean()),
                    "high": float(hi_sum.mean()), "score": float(sign * share[peak_bin]),
                    "peak": index[peak_bin], "n_sensors": int(len(members_out)),
                    "sensors": json.dumps([ids[s] for s in members_out]),
                    "attached": json.dumps(attached),
                    "explanation": f"{n_dep} of {n_rep} sensors in {where} {'above' if sign > 0 else 'below'} "
                                   f"their usual level; together {_ratio(ratio)} the usual {label} level",
                    "calendar": happenings(model, index[a], index[b] + step, rows[idx]),
                })
    # Sensor alarms, unless a group anomaly of the same direction explains them.
    for direction, sign in (("high", 1), ("low", -1)):
        with np.errstate(invalid="ignore"):
            mask = sign * z > thr
        rs, firsts, lasts = runs(mask, gap)
        for s, a, b in zip(rs, firsts, lasts):
            if any(c[0] == s and c[3] == direction and a <= c[2] and c[1] <= b for c in claimed):
                continue
            seg = slice(a, b + 1)
            peak_bin = a + int(np.nanargmax(sign * z[s, seg]))
            both = np.isfinite(Y[s, seg]) & np.isfinite(expected[s, seg])
            obs, exp = Y[s, peak_bin], expected[s, peak_bin]
            label = _slot_label(index[peak_bin], model.tz, int(departures.day_type[peak_bin]))
            out.append({
                "sensor_id": ids[s], "group": None, "start": index[a], "end": index[b] + step,
                "direction": direction, "observed": float(Y[s, seg][both].mean()),
                "expected": float(expected[s, seg][both].mean()), "low": float(low[s, seg][both].mean()),
                "high": float(high[s, seg][both].mean()), "score": float(z[s, peak_bin]),
                "peak": index[peak_bin], "n_sensors": 1, "sensors": json.dumps([ids[s]]),
                "attached": json.dumps([]),
                "explanation": f"{_ratio(obs / exp if exp > 0 else np.inf)} the usual {label} level at "
                               f"sensor {ids[s]} ({_number(obs)} vs {_number(exp)})",
                "calendar": happenings(model, index[a], index[b] + step, rows[[s]]),
            })
    if not out:
        return empty_periods()
    table = pd.DataFrame(out, columns=PERIOD_COLUMNS)
    table["is_group"] = table["group"].notna()
    table = table.sort_values(["start", "is_group", "sensor_id"], ascending=[True, False, True],
                              ignore_index=True).drop(columns="is_group")
    return table


def happenings(model: "UsualLevel", start, end, rows) -> str | None:
    """Names of calendar events and roadworks under way near these sensors (with arrival and departure)."""
    cal = model.calendar_
    if cal.empty:
        return None
    before, after = pd.Timedelta(hours=EVENT_BEFORE_H), pd.Timedelta(hours=EVENT_AFTER_H)
    hits = cal[cal["kind"].isin(["event", "roadworks"]) & (cal["start"] - before < end)
               & (cal["end"] + after > start)]
    names = [row.name for row in hits.itertuples(index=False) if model._near(row, rows).any()]
    return "; ".join(dict.fromkeys(names)) or None


def _overlaps(rows: list[dict], group: str, a: int, b: int, direction: str, index, step) -> bool:
    start, end = index[a], index[b] + step
    return any(r["group"] == group and r["direction"] == direction and r["start"] < end and start < r["end"]
               for r in rows)


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
