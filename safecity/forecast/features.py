"""What the forecaster knows about each hour to forecast: lags, local time, holidays, events, roadworks.

Every feature is known for every hour of the horizon at the origin, so one
model serves hour 1 and hour 24 alike and nothing is fed back: the counts at
the same local hour 7, 14, 21 and 28 days before, and 1 to 6 days before when
the horizon allows it (a lag is only used when it is at least as long as the
horizon); the local hour and day of the week; public and school holidays at
the hour and at the lags (so a holiday a week ago does not pass for a quiet
week); events at the lags (last Saturday's match is not this Saturday's
level) and nearby roadworks. Lags are taken in local wall-clock time so that
"the same hour one week before" stays right across a change of clocks.

An hour is an event hour for a sensor when an event is under way near it
(from ``EVENT_BEFORE_H`` before the start to ``EVENT_AFTER_H`` after the end,
weighted by exp(-(d / event_radius_m)^2) of the distance to the venue; an
event without lon/lat concerns every sensor).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from safecity.data.geo import distance_m
from safecity.data.time_features import EVENT_AFTER_H, EVENT_BEFORE_H, shift_positions
from safecity.forecast.table import HOUR

WEEK_LAGS = (7, 14, 21, 28)

#: Hours since / until an event where none is near: a number, not NaN, because a
#: feature missing everywhere (a calendar without events) breaks the model's binning.
NO_EVENT_H = -99.0

#: Features of the event at the hour: left out of the usual-hour model, read by the event model.
EVENT_FEATURES = ("ev_n", "ev_att", "ev_since", "ev_until", "ev_rel")



def pad_missing(matrix: np.ndarray) -> np.ndarray:
    """Append a row of NaN so that position -1 reads as missing."""
    return np.vstack([matrix, np.full((1,) + matrix.shape[1:], np.nan, dtype=matrix.dtype)])



def _weights(row, lonlat: np.ndarray, radius_m: float) -> np.ndarray:
    """How much a dated happening concerns each sensor: a Gaussian of the distance; 1 when unplaced."""
    w = np.ones(len(lonlat))
    if pd.isna(row.lon) or pd.isna(row.lat):
        return w
    placed = np.isfinite(lonlat).all(axis=1)
    d = distance_m(lonlat[placed, 0], lonlat[placed, 1], row.lon, row.lat)
    w[placed] = np.exp(-(d / radius_m) ** 2)
    # Beyond about two radii a happening is none of the sensor's business; a
    # tiny weight times a stadium's crowd would still read as an event.
    w[w < 0.01] = 0.0
    return w



def _span(t_ns: np.ndarray, start: pd.Timestamp, end: pd.Timestamp) -> slice:
    """Rows of the hourly grid whose hour overlaps ``[start, end)``."""
    lo = np.searchsorted(t_ns, start.value - HOUR.value, side="right")
    hi = np.searchsorted(t_ns, end.value, side="left")
    return slice(lo, max(lo, hi))



def _happenings(calendar: pd.DataFrame, grid: pd.DatetimeIndex, lonlat: np.ndarray,
                event_radius_m: float, roadworks_radius_m: float) -> dict[str, np.ndarray | None]:
    """Per hour and sensor: events (weighted count, attendance, hours since start / until end) and roadworks.

    ``None`` for a feature no row of the calendar touches, so years of hours
    by hundreds of sensors cost nothing when the calendar has no events.
    """
    T, S = len(grid), len(lonlat)
    t_ns = grid.as_unit("ns").asi8
    t_h = (t_ns - (t_ns[0] if T else 0)) / 3.6e12
    out = {"ev_n": None, "ev_att": None, "ev_since": None, "ev_until": None, "roadworks": None}
    if T == 0 or calendar is None or calendar.empty:
        return out
    before, after = pd.Timedelta(hours=EVENT_BEFORE_H), pd.Timedelta(hours=EVENT_AFTER_H)
    events = calendar[(calendar["kind"] == "event") & (calendar["end"] + after > grid[0])
                      & (calendar["start"] - before < grid[-1] + HOUR)]
    if len(events):
        n, att, best = (np.zeros((T, S), np.float32) for _ in range(3))
        since, until = (np.full((T, S), NO_EVENT_H, np.float32) for _ in range(2))
        for row in events.itertuples(index=False):
            span = _span(t_ns, row.start - before, row.end + after)
            if span.stop <= span.start:
                continue
            w = _weights(row, lonlat, event_radius_m).astype(np.float32)
            a = float(row.expected_attendance) if pd.notna(row.expected_attendance) else np.nan
            n[span] += w
            if np.isfinite(a):
                att[span] += a * w
            strength = w * (a if np.isfinite(a) and a > 1 else 1.0)
            wins = (strength[None, :] > best[span]) & (w[None, :] > 0.01)
            s0 = (row.start.value - t_ns[0]) / 3.6e12
            e0 = (row.end.value - t_ns[0]) / 3.6e12
            hours = t_h[span][:, None].astype(np.float32)
            best[span] = np.where(wins, strength[None, :], best[span])
            since[span] = np.where(wins, hours - s0, since[span])
            until[span] = np.where(wins, e0 - hours, until[span])
        out.update(ev_n=n, ev_att=np.log1p(att), ev_since=since, ev_until=until)
    works = calendar[(calendar["kind"] == "roadworks") & (calendar["end"] > grid[0])
                     & (calendar["start"] < grid[-1] + HOUR)]
    if len(works):
        rw = np.zeros((T, S), np.float32)
        for row in works.itertuples(index=False):
            span = _span(t_ns, row.start, row.end)
            rw[span] = np.maximum(rw[span], _weights(row, lonlat, roadworks_radius_m)[None, :])
        out["roadworks"] = rw
    return out



def hour_of_week(grid: pd.DatetimeIndex, tz: str) -> np.ndarray:
    local = grid.tz_convert(tz)
    return np.asarray(local.day_of_week * 24 + local.hour, int)



def context(grid: pd.DatetimeIndex, calendar: pd.DataFrame, lonlat: np.ndarray, *, tz: str,
            day_lags: Sequence[int], event_radius_m: float, roadworks_radius_m: float) -> dict:
    """Everything per hour (and per sensor) the design matrix reads."""
    from safecity.data.calendars import calendar_flags

    local = grid.tz_convert(tz)
    flags = calendar_flags(calendar, grid, tz=tz)
    ctx = {
        "hour": np.asarray(local.hour, np.float32),
        "dow": np.asarray(local.day_of_week, np.float32),
        "public_holiday": flags["public_holiday"].to_numpy(np.float32),
        "school_holiday": flags["school_holiday"].to_numpy(np.float32),
        "pos": {d: shift_positions(grid, tz, d) for d in (1, *day_lags, *WEEK_LAGS)},
    }
    ctx.update(_happenings(calendar, grid, lonlat, event_radius_m, roadworks_radius_m))
    return ctx


def weekly_level(Y: np.ndarray, ctx: dict) -> np.ndarray:
    """The weekly level: median of the same local hour 7, 14, 21 and 28 days before."""
    P = pad_missing(Y)
    lags = np.stack([P[ctx["pos"][d]] for d in WEEK_LAGS])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all four missing: expected, stays NaN
        return np.nanmedian(lags, axis=0)


def design(Y, ctx, base, rows, cols, day_lags: Sequence[int],
           unseen: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """The feature matrix of the points (``rows``, ``cols``) and the feature names.

    ``unseen`` marks features never observed in fit: they are set to 0 here, as in fit.
    """
    P = pad_missing(Y)
    log_base = np.log1p(base[rows, cols])
    feats: dict[str, np.ndarray] = {
        "hour": ctx["hour"][rows], "dow": ctx["dow"][rows], "log_level": log_base,
    }
    for d in (*day_lags, *WEEK_LAGS):
        feats[f"lag_{d}d"] = np.log1p(P[ctx["pos"][d][rows], cols]) - log_base

    def at(values, d=None):
        """A per-hour (or per hour and sensor) feature at the rows, or ``d`` days before them."""
        if d is None:
            return values[rows] if values.ndim == 1 else values[rows, cols]
        r = ctx["pos"][d][rows]
        out = values[r] if values.ndim == 1 else values[r, cols]
        return np.where(r >= 0, out, np.nan)

    for name in ("public_holiday", "school_holiday"):
        feats[name] = at(ctx[name])
        feats[f"{name}_7d"] = at(ctx[name], 7)
    feats["public_holiday_1d"] = at(ctx["public_holiday"], 1)
    for name in ("ev_n", "ev_att", "ev_since", "ev_until", "roadworks"):
        m = ctx[name]
        fill = NO_EVENT_H if name in ("ev_since", "ev_until") else 0.0
        feats[name] = np.full(len(rows), fill, np.float32) if m is None else at(m)
    # The event's expected crowd relative to the sensor's usual level: the same
    # feature for a stadium by a quiet street and a concert by a busy one.
    feats["ev_rel"] = feats["ev_att"] - log_base
    for d in (1, 7):
        m = ctx["ev_att"]
        feats[f"ev_att_{d}d"] = np.zeros(len(rows), np.float32) if m is None else \
            np.nan_to_num(at(m, d), nan=0.0)
    names = list(feats)
    X = np.column_stack([feats[n].astype(np.float32) for n in names])
    if unseen is not None and unseen.any():
        X[:, unseen] = 0.0
    return X, names
