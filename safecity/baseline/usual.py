"""Learn each sensor's usual level by time of week, and flag what departs from it, alone or city-wide.

An operator wants to hear about the Saturday night four times busier than
Saturday nights usually are, or the morning when half the city's counters read
half their usual level; not about every noisy minute. ``UsualLevel`` is a
scikit-learn estimator that learns, per sensor, the usual level of every slot of
the week on the city's calendar and scores new bins as standardised departures
from it; ``UsualLevel.flag`` turns the scores into alarm periods (one row per
sensor run, or one per group when many sensors of a district or of the city
depart together) and ``anomaly_events`` turns those into ``events`` rows.

How it works, and why:

* Slots. A bin's slot is (day type, day of week, time of day) in local time
  (``tz``). The day type is normal, school holiday or public holiday (from the
  ``holidays`` and ``vacances-scolaires-france`` packages and the analyst's
  calendar): a school-holiday Tuesday is compared with school-holiday Tuesdays,
  because the school run is gone, not with term-time Tuesdays.
* A robust centre on a variance-stabilising scale. Counts are Poisson-like, so
  values are square-rooted (``transform``); the noise is then of one size at
  night and at noon, and a spread learnt over an hour of the day fits all its
  days. A slot's centre is the median of its last ``memory`` values: a past
  event or a broken counter cannot move it, and missing bins are absent from
  the median, never zeros.
* Borrowing strength. A slot without values takes the level of a wider pool,
  and one with fewer than ``min_history`` counts the pool's level as one more
  value in its median (two values and the pool's: the middle one, so one
  outlier among two weeks cannot move it). For a normal day the pools are the
  same time on weekdays (or weekend days), then on any day. For a holiday it is
  the normal day's level (the same weekday for a school holiday; a Sunday for a
  public holiday, the usual stand-in when no holiday has been seen) plus the
  holiday's own offset at that time of day learnt from the holiday slots seen:
  the school run missing from school-holiday Mondays is missing from the first
  school-holiday Tuesday too. Three days of history so give a level for every
  slot of the fourth, and each week moves weight onto the exact slot. Pools
  are medians of their days' centres, so that ``partial_fit`` only keeps
  per-slot state.
* Spread. The noise is measured without the centre, on pairs: a bin and the
  same local time a week earlier (a day earlier with less than eight days of
  history) of the same day type, whose difference has twice a bin's variance.
  Per sensor, its variance is a + b c^2 at level c (on the square-root scale a
  is Poisson noise, 1/4 for plain counts, and b the overdispersion), fitted on
  the pairs' robust spread in level bins, so quiet nights and busy noons each
  get theirs from a few days of data; a factor per local hour (weekdays and
  weekend days apart), shrunk toward 1 while it has few pairs, keeps what the
  level does not explain. A score divides the departure by that noise, widened
  by √(1 + π/2 / n) when n values stand behind the centre (a median's own
  error; a wider pool counts as one), floored at ``min_spread`` (½ on the
  square-root scale: one passer-by in an empty minute is not an alarm).
* Online. ``partial_fit`` moves a slot's centre toward each new value by a Huber
  step (the departure clipped at ``huber`` spreads, weight 1/n down to
  1/``memory``; a slot's first value is averaged with the wider pool's level,
  as in fit), and each hour's noise factor toward the clipped prediction
  error: one extreme night moves a level by a fraction of a spread. A slot
  whose value departs beyond ``huber`` spreads in the same direction
  ``memory // 2`` times in a row takes the new value as its level (a street
  closed for good, a sensor moved): as the median of the last ``memory``
  values would, a new normal becomes the usual level after half the memory.
* Calibrated alarms. A bin alarms when its |score| exceeds ``threshold_``; alarm
  bins of one sensor and one direction closer than ``merge_gap`` make one alarm
  period. ``threshold_`` is solved so that alarm periods per sensor-day equal
  ``rate`` when the last ``calibration_days`` of the history are replayed as they
  would have run live (a model fitted on the days before, updated by
  ``partial_fit`` every ``update_every``); ``realised_rate_`` is the rate
  reached on those days. Known calendar events (with ``EVENT_BEFORE_H`` and
  ``EVENT_AFTER_H`` around them) are left out of what is learnt and of the
  calibration days, as they are not the usual situation; they are never left
  out of what is scored.
* Groups. At each bin, the share of a group's reporting sensors scoring above
  +``group_z`` (or below -``group_z``) is compared with a threshold calibrated
  per group in the same replay at ``group_rate``; groups are the whole city and
  each value of ``group_col`` in the sensors table (a zone, a district). A group
  alarm is one anomaly that lists the sensors that departed; their own alarms
  in it are attached to it rather than repeated, so New Year's Eve is one
  city-wide anomaly, not thirty-nine.

Tables. ``UsualLevel`` reads the ``observations`` table (ts, sensor_id, value;
rows of other metrics than ``metric`` are left out) or a wide frame (a regular
UTC DatetimeIndex by sensor, as ``forecast.hourly_counts`` returns). The bin is
the data's own step. ``flag`` returns the periods table (``PERIOD_COLUMNS``):
    sensor_id (None for a group), group (None for a sensor), start, end (UTC),
    direction (high or low), observed, expected (mean per bin over the period,
    for a group the sum over its sensors), low, high (the usual band at the
    threshold, same basis), score (a sensor's peak standardised departure, a
    group's peak share of departing sensors; negative when low), peak (the bin
    of the peak), n_sensors, sensors (JSON list: the departing sensors of a
    group), attached (JSON list: sensors whose own alarms the group explains),
    explanation (one line), calendar (known happenings at the time and place).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from safecity.forecast.model import (EVENT_AFTER_H, EVENT_BEFORE_H, HOLIDAYS_AHEAD_DAYS, check_columns,
                       sensor_positions, shift_positions, with_holidays)
from safecity.data.geo import distance_m
from safecity.data.schema import empty, validate

SOURCE = "safecity.baseline.usual"
DAY_TYPES = ("normal", "school_holiday", "public_holiday")
NORMAL, SCHOOL, PUBLIC = 0, 1, 2
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CITY = "city"
PERIOD_COLUMNS = ["sensor_id", "group", "start", "end", "direction", "observed", "expected", "low", "high",
                  "score", "peak", "n_sensors", "sensors", "attached", "explanation", "calendar"]

#: The variance of a median of n normal values is about π/2 times the mean's (σ²/n).
_MEDIAN_VAR = math.pi / 2
#: MAD to standard deviation for normal noise.
_MAD = 1.4826
#: Pairs of an hour's own spread factor that weigh as much as the prior factor 1.
_SPREAD_PRIOR = 10.0
#: Median of |N(0, 1)|.
_HALF_NORMAL_MEDIAN = 0.6745
#: Axes up to this long are sorted by a compare-exchange network in ``_nanmedian``.
_NETWORK_MAX = 9
#: Pairs per sensor that fit its noise model (evenly spread over the history).
_NOISE_PAIRS = 4096
#: A group alarms only when at least this share of its sensors departs, whatever the calibration says.
MIN_GROUP_SHARE = 0.2
#: Values per sensor chunk. Small on purpose: temporaries under malloc's mmap threshold
#: (32 MB) reuse freed memory, while larger ones are fresh pages that the kernel must
#: fault in and zero, which costs more than the arithmetic.
_CHUNK_VALUES = 2_000_000
_NONE = -(10 ** 12)


# =========================================================================== data shaping


def _matrix(X, metric: str | None, step: pd.Timedelta | None = None):
    """A regular UTC grid, sensor ids and values as float32 (sensors x bins), from long or wide input.

    Missing bins are NaN. Rows of one sensor in one bin are summed (counts that
    arrive in pieces). The step is the most common gap between timestamps
    unless given (a model's bin).
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame (observations or wide), got {type(X).__name__}")
    if isinstance(X.index, pd.DatetimeIndex):
        wide = X
        if wide.index.tz is None:
            wide = wide.tz_localize("UTC")
        wide = wide.tz_convert("UTC") if str(wide.index.tz) != "UTC" else wide
        wide = wide.sort_index()
    else:
        check_columns(X, "observations", ("ts", "sensor_id", "value"))
        obs = X
        if metric is not None and "metric" in obs.columns:
            obs = obs[obs["metric"] == metric]
            if obs.empty and len(X):
                raise ValueError(f"observations: no '{metric}' rows (metrics: "
                                 f"{', '.join(map(str, X['metric'].unique()[:10]))})")
        frame = pd.DataFrame({"ts": pd.to_datetime(obs["ts"], utc=True).to_numpy(),
                              "sensor_id": obs["sensor_id"].astype(str).to_numpy(),
                              "value": obs["value"].to_numpy(float)})
        if frame.duplicated(["ts", "sensor_id"]).any():
            frame = frame.groupby(["ts", "sensor_id"], as_index=False)["value"].sum()
        wide = frame.pivot(index="ts", columns="sensor_id", values="value")
        wide.index = pd.DatetimeIndex(wide.index).tz_localize("UTC") if wide.index.tz is None else wide.index
    if len(wide.index) == 0:
        raise ValueError("observations: no rows")
    t = wide.index.as_unit("ns").asi8
    if step is None:
        gaps = np.diff(np.unique(t))
        if len(gaps) == 0:
            raise ValueError("observations: one timestamp only; the bin cannot be inferred")
        values, counts = np.unique(gaps, return_counts=True)
        step = pd.Timedelta(int(values[np.argmax(counts)]), "ns")
    if step > pd.Timedelta(days=1) or (pd.Timedelta(days=1) % step) != pd.Timedelta(0):
        raise ValueError(f"the bin ({step}) must divide a day")
    off = (t - t[0]) % step.value
    if off.any():
        bad = wide.index[np.nonzero(off)[0][0]]
        raise ValueError(f"observations: timestamp {bad.isoformat()} is not on the {step} grid "
                         f"starting at {wide.index[0].isoformat()}")
    full = pd.date_range(wide.index[0], wide.index[-1], freq=step, name="ts").as_unit("ns")
    if not wide.index.as_unit("ns").equals(full):
        wide = wide.reindex(full)
    ids = np.asarray(wide.columns.astype(str), dtype=object)
    Y = wide.to_numpy(np.float32).T  # a view when the frame is one float32 block
    return full, ids, Y, step


@dataclass
class _Bins:
    """What the model needs to know about each bin of a grid, all in local time."""

    index: pd.DatetimeIndex
    day_type: np.ndarray  # 0 normal, 1 school holiday, 2 public holiday
    dow: np.ndarray  # 0 = Monday
    slot: np.ndarray  # time of day, in bins from local midnight
    hour: np.ndarray  # local hour
    weekend: np.ndarray  # Saturday, Sunday or public holiday: the spread's day class
    day: np.ndarray  # local date as a day number


def _bins(index: pd.DatetimeIndex, step: pd.Timedelta, tz: str, calendar: pd.DataFrame) -> _Bins:
    from safecity.data.calendars import calendar_flags

    local = index.tz_convert(tz)
    flags = calendar_flags(calendar, index, tz=tz)
    public = flags["public_holiday"].to_numpy() > 0
    school = flags["school_holiday"].to_numpy() > 0
    day_type = np.where(public, PUBLIC, np.where(school, SCHOOL, NORMAL)).astype(np.int8)
    dow = np.asarray(local.day_of_week, np.int8)
    minutes = np.asarray(local.hour, np.int64) * 60 + np.asarray(local.minute, np.int64)
    slot = (minutes * 60 // int(step.total_seconds())).astype(np.int32)
    day = np.asarray(local.tz_localize(None).normalize().asi8 // 86_400_000_000_000, np.int64)
    return _Bins(index, day_type, dow, slot, np.asarray(local.hour, np.int8),
                 (dow >= 5) | public, day)


def _chunks(n_rows: int, n_cols: int):
    size = max(1, _CHUNK_VALUES // max(n_cols, 1))
    for lo in range(0, n_rows, size):
        yield slice(lo, min(lo + size, n_rows))


# =========================================================================== robust statistics


def _nanmedian(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median along the last axis ignoring NaN, and the count of values.

    Short axes (a slot's few weeks, a pool's seven days) are sorted by a
    compare-exchange network applied to whole arrays: numpy's sort costs about
    a hundred nanoseconds per row, which millions of rows of three values
    would spend on overhead alone.
    """
    k = block.shape[-1]
    if k == 1:
        return block[..., 0].copy(), (~np.isnan(block[..., 0])).astype(np.int64)
    if k <= _NETWORK_MAX:
        cols = [np.where(np.isnan(block[..., i]), np.inf, block[..., i]) for i in range(k)]
        n = np.zeros(cols[0].shape, np.int16)
        for c in cols:
            n += c < np.inf
        for r in range(k):  # odd-even transposition: k rounds sort k values
            for i in range(r % 2, k - 1, 2):
                lo = np.minimum(cols[i], cols[i + 1])
                cols[i + 1] = np.maximum(cols[i], cols[i + 1])
                cols[i] = lo
        lo_i, hi_i = np.maximum((n - 1) // 2, 0), n // 2
        med, upper = cols[0].copy(), cols[0].copy()
        for j in range(1, k):  # np.choose is slower than these masked copies
            np.copyto(med, cols[j], where=lo_i == j)
            np.copyto(upper, cols[j], where=hi_i == j)
        med += upper
        med *= 0.5
        med[n == 0] = np.nan
        return med, n
    n = (~np.isnan(block)).sum(-1)
    s = np.sort(block, axis=-1)  # NaN sort last
    lo = np.maximum((n - 1) // 2, 0)[..., None]
    hi = np.maximum(n // 2, 0)[..., None]
    med = 0.5 * (np.take_along_axis(s, lo, -1) + np.take_along_axis(s, hi, -1))
    return med[..., 0], n


def _grouped_median(values: np.ndarray, key: np.ndarray, n_keys: int, memory: int | None = None,
                    prior: np.ndarray | None = None, k: int = 0,
                    clip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the median of the columns sharing a key (the last ``memory`` non-missing, in column order).

    With ``prior`` (rows x keys), a key with 0 < n < k values also counts its
    prior once: the median of two values is their mean, which one outlier
    drags anywhere; with the wider pool's centre as a third value it is the
    middle one. One value is averaged with it after clipping the value's
    departure from it at ``clip`` (rows x keys), as ``partial_fit`` does with
    a slot's first value. Counts returned are the real values only. Columns are
    gathered key by key into blocks of equal size, so every median is a
    vectorised sort whatever the number of rows.
    """
    S = values.shape[0]
    med = np.full((S, n_keys), np.nan, np.float32)
    cnt = np.zeros((S, n_keys), np.int64)
    order = np.argsort(key, kind="stable")
    order = order[key[order] >= 0]
    if len(order) == 0:
        return med, cnt
    keys, first, sizes = np.unique(key[order], return_index=True, return_counts=True)
    for size in np.unique(sizes):
        g = np.nonzero(sizes == size)[0]
        cols = order[first[g][:, None] + np.arange(size)[None, :]]  # (groups, size), in time order
        block = values[:, cols]
        if memory is not None and size > memory:
            valid = ~np.isnan(block)
            after = np.cumsum(valid[..., ::-1], axis=-1)[..., ::-1]
            block[after > memory] = np.nan
        n = (~np.isnan(block)).sum(-1)
        if prior is not None and k > 1:
            p = prior[:, keys[g]]
            one = n == 1
            if one.any():
                x = np.nansum(np.where(one[..., None], block, 0), axis=-1) if size > 1 else block[..., 0]
                c = np.inf if clip is None else clip[:, keys[g]]
                lone = p + np.clip(x - p, -c, c) / 2
            pseudo = np.where((n > 0) & (n < k), p, np.nan)
            block = np.concatenate([block, pseudo[..., None]], axis=-1)
        m, _ = _nanmedian(block)
        if prior is not None and k > 1 and one.any():
            m = np.where(one & np.isfinite(p), lone, m)
        med[:, keys[g]] = m
        cnt[:, keys[g]] = n
    return med, cnt


def _blend(x, nx, fallback, nf, k: float):
    """Shrink a pool's centre toward the wider pool's in proportion to the values it lacks (of ``k``)."""
    have_x, have_f = ~np.isnan(x), ~np.isnan(fallback)
    w = np.where(have_x, np.minimum(nx / k, 1.0), 0.0)
    w = np.where(have_f, w, have_x.astype(np.float32))
    with np.errstate(invalid="ignore"):
        est = np.where(w >= 1, x, np.where(w <= 0, fallback,
                                           w * np.nan_to_num(x) + (1 - w) * np.nan_to_num(fallback)))
        n = w * np.nan_to_num(nx) + (1 - w) * np.nan_to_num(nf)
    return est.astype(np.float32), n.astype(np.float32)


# =========================================================================== alarm runs


def _run_starts(mask: np.ndarray, gap: int) -> np.ndarray:
    """Alarm bins that start a period: no alarm bin in the ``gap`` bins before them."""
    T = mask.shape[-1]
    pos = np.arange(T)
    prev = np.maximum.accumulate(np.where(mask, pos, _NONE), axis=-1)
    prev = np.concatenate([np.full(mask.shape[:-1] + (1,), _NONE), prev[..., :-1]], axis=-1)
    return mask & (pos - prev > gap + 1)


def _runs(mask: np.ndarray, gap: int):
    """(row, first bin, last bin) of each period of ``mask`` (rows x bins), gaps up to ``gap`` bins merged."""
    mask = np.atleast_2d(mask)
    starts = _run_starts(mask, gap)
    ends = _run_starts(mask[:, ::-1], gap)[:, ::-1]
    rs, cs = np.nonzero(starts)
    _, ce = np.nonzero(ends)
    return rs, cs, ce


def _n_periods(z: np.ndarray, thr: float, gap: int) -> int:
    with np.errstate(invalid="ignore"):
        return int(_run_starts(z > thr, gap).sum() + _run_starts(z < -thr, gap).sum())


def _solve(rate_at, target: float, lo: float, hi: float, steps: int = 40) -> float:
    """The smallest threshold in [lo, hi] whose rate is at most ``target`` (the rate falls as it rises)."""
    if rate_at(lo) <= target:
        return lo
    if rate_at(hi) > target:
        return hi
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if rate_at(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def _gaussian_threshold(rate: float, bins_per_day: float) -> float:
    """|z| that independent normal bins exceed ``rate`` times a day: a floor for any calibration."""
    from scipy.stats import norm

    p = min(0.5, rate / (2 * bins_per_day))
    return float(norm.isf(p))


def _pair_spread(Z: np.ndarray, cols: np.ndarray, partner: np.ndarray, key: np.ndarray,
                 n_bins: int = 8):
    """Noise per sensor from the differences between bins and their partner (a week or a day before).

    Returns (a, b) per sensor, the noise variance a + b c^2 at level c on the
    transformed scale (Poisson and overdispersion on the square-root scale:
    a is 1/4 for plain counts, b the overdispersion), and a factor per (day
    class, hour) for what the level does not explain (nights out, weekends),
    shrunk toward 1 while its key has few pairs, with the number of pairs. A
    pair's difference has twice a bin's variance.
    """
    d = np.abs(Z[:, cols] - Z[:, partner[cols]])
    lev = 0.5 * (Z[:, cols] + Z[:, partner[cols]])
    # A few thousand pairs fix two numbers per sensor; more only cost sorting time.
    some = np.linspace(0, len(cols) - 1, min(len(cols), _NOISE_PAIRS)).astype(np.int64)
    ab = _fit_noise(d[:, some], lev[:, some], n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = d / np.sqrt(2 * (ab[:, :1] + ab[:, 1:] * lev ** 2))
    med, n = _grouped_median(u.astype(np.float32), key, 48)
    n = n.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_f = np.log(med / _HALF_NORMAL_MEDIAN)
    log_f = np.where(np.isfinite(log_f), log_f * n / (n + _SPREAD_PRIOR), 0.0)
    return ab, np.exp(log_f).astype(np.float32), n


def _fit_noise(d: np.ndarray, lev: np.ndarray, n_bins: int) -> np.ndarray:
    """Per row, (a, b) of var = a + b lev^2 fitted to the pairs' robust variance in level bins.

    The pairs of a sensor are cut into ``n_bins`` equal-count bins by level; in
    each, var = (MAD of the differences)^2 / 2 and the mean lev^2; a and b
    (both >= 0) minimise the relative squared error over the bins, so that
    quiet nights weigh as much as busy noons.
    """
    S, n_pairs = d.shape
    out = np.full((S, 2), np.nan, np.float32)
    ok = np.isfinite(d) & np.isfinite(lev)
    n = ok.sum(1)
    if n_pairs == 0 or not n.any():
        return out
    order = np.argsort(np.where(ok, lev, np.inf), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_pairs), order.shape), axis=1)
    nn = np.maximum(n, 1)[:, None]
    bins = np.minimum(rank * n_bins // nn, n_bins - 1)
    within = rank - (bins * nn + n_bins - 1) // n_bins
    width = int(np.ceil(n.max() / n_bins)) + 1
    rows = np.broadcast_to(np.arange(S)[:, None], d.shape)
    dd = np.full((S, n_bins, width), np.nan, np.float32)
    ll = np.full((S, n_bins, width), np.nan, np.float32)
    dd[rows[ok], bins[ok], within[ok]] = d[ok]
    ll[rows[ok], bins[ok], within[ok]] = lev[ok] ** 2
    med, cnt = _nanmedian(dd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        x = np.nanmean(ll, axis=-1)
    y = (_MAD * med) ** 2 / 2
    good = (cnt >= 3) & np.isfinite(x) & np.isfinite(y) & (y > 0)
    w = np.where(good, 1.0 / np.where(good, y, 1.0) ** 2, 0.0)
    x, y = np.where(good, x, 0.0), np.where(good, y, 0.0)
    sw, sx, sy = w.sum(1), (w * x).sum(1), (w * y).sum(1)
    sxx, sxy = (w * x * x).sum(1), (w * x * y).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        det = sw * sxx - sx * sx
        b = (sw * sxy - sx * sy) / det
        a = (sy - b * sx) / sw
        single = ~(np.abs(det) > 1e-12 * np.maximum(sw * sxx, 1e-30))  # one level only: a constant
        a, b = np.where(single, sy / sw, a), np.where(single, 0.0, b)
        neg_b = b < 0
        a, b = np.where(neg_b, sy / sw, a), np.where(neg_b, 0.0, b)
        neg_a = a < 0
        b = np.where(neg_a, sxy / sxx, b)
        a = np.where(neg_a, 0.0, a)
    have = good.sum(1) > 0
    out[have, 0], out[have, 1] = a[have], b[have]
    return out


# =========================================================================== the estimator


class UsualLevel(BaseEstimator):
    """Usual level of each sensor by slot of the week on the city's calendar; scores and alarms.

    Parameters
    ----------
    tz : the city's time zone: slots, days of week and holidays are local.
    rate : target alarm periods per sensor per day on normal data; sets ``threshold_``.
    group_rate : target group alarm periods per group per day (None: ``rate``).
    transform : "sqrt" (counts: Poisson noise becomes uniform), "log1p" or "none".
    min_history : values a slot needs to stand alone; with fewer it borrows from wider pools.
    memory : values per slot the centre remembers (weeks, for a weekday slot); also
        the slowest weight of an online update (1/memory).
    min_spread : floor of the spread on the transformed scale (None: 0.5 for sqrt, the
        Poisson noise; 0.05 for log1p; 1e-6 otherwise).
    huber : an online update clips a departure at this many spreads.
    merge_gap : alarm bins of a sensor at most this far apart make one period.
    group_z : a sensor departs, for its groups, beyond this standardised score.
    min_group_sensors : a group needs this many reporting sensors, and this many departing, to alarm.
    group_col : column of the sensors table that names a sensor's group (a zone); the
        city is always a group too.
    calibration_days : days at the end of the history replayed to calibrate the threshold
        (at most half the history).
    update_every : how often the live model learns from new bins (``partial_fit``), as
        the calibration replays it and ``flag`` scores; None: never.
    max_calibration_sensors : sensors drawn at random to calibrate (the threshold is global).
    country, subdiv : public holidays (``holidays`` package; None: none).
    school_zone : French school-holiday zone ("B": Marseille; None: none).
    exclude_events : leave calendar events out of what is learnt and of the calibration.
    calendar_radius_m : an event or roadworks concerns sensors within this distance
        (all of them when either has no position).
    metric : the observations' metric to model.
    random_state : seed of the calibration sample.

    Attributes
    ----------
    sensor_ids_ : the sensors, in the row order of every per-sensor array.
    freq_ : the bin; ``slots_per_day_`` bins per local day.
    day_types_ : codes of the day types seen (0 normal, 1 school holiday, 2 public holiday).
    level_, count_ : per sensor and slot (day type seen x 7 days x slots of the day), the
        robust centre on the transformed scale (NaN: no value yet) and the values behind it.
    streak_ : per sensor and slot, the run of online departures beyond ``huber`` spreads
        (positive above, negative below).
    profile_, profile_n_ : the usual level after borrowing from wider pools, and the
        effective number of values behind it (what ``score_samples`` uses).
    noise_ : per sensor, (a, b) of the noise variance a + b c^2 at level c (transformed scale).
    spread_, spread_n_ : per sensor, day class (weekday; weekend or public holiday) and
        local hour, the factor on that noise the level does not explain, and the values behind it.
    threshold_ : |score| above which a bin alarms; ``realised_rate_`` the alarm periods per
        sensor-day it gave on the calibration days, ``calibration_sensor_days_`` their amount,
        ``calibrated_`` False when the history was too short (then the threshold is the
        Gaussian one for ``rate``).
    groups_ : group name -> sensor ids; ``group_threshold_`` group -> share of departing
        sensors above which it alarms (never below ``MIN_GROUP_SHARE``; a group not
        calibrated uses the median of the others', else 0.5); ``group_realised_rate_``
        its rate on the calibration days.
    sensor_lonlat_ : sensor positions (NaN: unknown).
    calendar_ : the calendar in use (the analyst's plus holidays), up to ``calendar_end_``.
    end_ : the end of the last bin learnt.
    """

    def __init__(self, tz: str = "Europe/Paris", rate: float = 1.0, group_rate: float | None = None,
                 transform: str = "sqrt", min_history: int = 3, memory: int = 8,
                 min_spread: float | None = None, huber: float = 3.0, merge_gap: str = "1h",
                 group_z: float = 2.0, min_group_sensors: int = 3, group_col: str | None = "zone",
                 calibration_days: int = 365, update_every: str | None = "1D",
                 max_calibration_sensors: int = 2000, country: str | None = "FR",
                 subdiv: str | None = None, school_zone: str | None = "B", exclude_events: bool = True,
                 calendar_radius_m: float = 1500.0, metric: str | None = "people_count",
                 random_state: int | None = 0):
        self.tz = tz
        self.rate = rate
        self.group_rate = group_rate
        self.transform = transform
        self.min_history = min_history
        self.memory = memory
        self.min_spread = min_spread
        self.huber = huber
        self.merge_gap = merge_gap
        self.group_z = group_z
        self.min_group_sensors = min_group_sensors
        self.group_col = group_col
        self.calibration_days = calibration_days
        self.update_every = update_every
        self.max_calibration_sensors = max_calibration_sensors
        self.country = country
        self.subdiv = subdiv
        self.school_zone = school_zone
        self.exclude_events = exclude_events
        self.calendar_radius_m = calendar_radius_m
        self.metric = metric
        self.random_state = random_state

    # ------------------------------------------------------------------ fit

    def fit(self, X: pd.DataFrame, y=None, *, calendar: pd.DataFrame | None = None,
            sensors: pd.DataFrame | None = None) -> "UsualLevel":
        """Learn the usual levels from ``X`` and calibrate the alarm thresholds.

        ``calendar``: the analyst's calendar (events, holidays, roadworks) on top of
        the public and school holidays. ``sensors``: sensor_id with lon, lat (to
        place events, anomalies and group centroids) and ``group_col`` (groups).
        """
        self._check_params()
        index, ids, Y, step = _matrix(X, self.metric)
        self._setup(index, ids, step, calendar, sensors)
        bins = self._bins_for(index)
        self.day_types_ = tuple(int(t) for t in np.unique(bins.day_type))
        self._calibrate(index, Y, bins)
        self._learn(index, Y, bins, self._event_mask(index, np.arange(len(ids))))
        return self

    def partial_fit(self, X: pd.DataFrame, y=None, *, calendar: pd.DataFrame | None = None,
                    sensors: pd.DataFrame | None = None) -> "UsualLevel":
        """Learn from new bins (a fitted model moves toward them; an unfitted one is fitted).

        New sensors are added (they get levels as their history grows). The
        threshold is kept: the calibration replayed exactly these updates.
        ``calendar`` adds rows (say, an event announced since fit).
        """
        if not hasattr(self, "level_"):
            return self.fit(X, calendar=calendar, sensors=sensors)
        index, ids, Y, _ = _matrix(X, self.metric, self.freq_)
        self._add_calendar(calendar)
        rows = self._rows(ids, add=True)
        if sensors is not None:
            self._set_sensors(sensors)
        bins = self._bins_for(index)
        self._update(index, Y, rows, bins, self._event_mask(index, rows))
        return self

    # ------------------------------------------------------------------ scores

    def score_samples(self, X: pd.DataFrame) -> pd.DataFrame:
        """Signed standardised departure of each bin from the usual level (bins x sensors; NaN: not scored).

        Positive is above the usual level. Unknown sensors, missing bins and slots
        without history are NaN.
        """
        index, ids, Y, rows, bins = self._prepare(X)
        z = np.full(Y.shape, np.nan, np.float32)
        known = np.nonzero(rows >= 0)[0]
        for part in _chunks(len(known), len(index)):
            sel = known[part]
            z[sel] = self._score(Y[sel], rows[sel], bins)[0]
        return pd.DataFrame(z.T, index=index, columns=pd.Index(ids, name="sensor_id"), copy=False)

    def expected_level(self, X: pd.DataFrame) -> pd.DataFrame:
        """The usual value of each bin of ``X`` on the original scale (bins x sensors)."""
        index, ids, Y, rows, bins = self._prepare(X)
        out = np.full(Y.shape, np.nan, np.float32)
        known = np.nonzero(rows >= 0)[0]
        for part in _chunks(len(known), len(index)):
            sel = known[part]
            out[sel] = self._inverse(self._centre(rows[sel], bins)[0])
        return pd.DataFrame(out.T, index=index, columns=pd.Index(ids, name="sensor_id"), copy=False)

    def decision_function(self, X: pd.DataFrame) -> pd.DataFrame:
        """``threshold_ - |score|``: negative where a bin alarms (scikit-learn's outlier convention)."""
        return self.threshold_ - self.score_samples(X).abs()

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per bin and sensor: -1 alarm, 1 usual, 0 not scored (scikit-learn's outlier convention, plus 0)."""
        z = self.score_samples(X)
        flags = np.where(z.isna(), 0, np.where(z.abs() > self.threshold_, -1, 1)).astype(np.int8)
        return pd.DataFrame(flags, index=z.index, columns=z.columns)

    # ------------------------------------------------------------------ alarm periods

    def flag(self, X: pd.DataFrame, *, calendar: pd.DataFrame | None = None,
             update: bool = True) -> pd.DataFrame:
        """Alarm periods of ``X`` as the periods table (module docstring), group anomalies first.

        With ``update`` the model scores ``X`` as it would live: every
        ``update_every`` it learns the bins just scored (``partial_fit``), so it
        leaves this call updated. ``calendar`` adds rows (for learning and to
        name the happenings an alarm coincides with).
        """
        check_is_fitted(self, "level_")
        index, ids, Y, _ = _matrix(X, self.metric, self.freq_)
        self._add_calendar(calendar)
        rows = self._rows(ids, add=update)
        bins = self._bins_for(index)
        z, centre, scale = self._replay(index, Y, rows, bins, update and self.update_every is not None)
        return self._periods(index, ids, Y, rows, bins, z, centre, scale)

    # ------------------------------------------------------------------ internals: set-up

    def _check_params(self) -> None:
        if self.transform not in ("sqrt", "log1p", "none"):
            raise ValueError(f"transform must be 'sqrt', 'log1p' or 'none', got {self.transform!r}")
        if not self.rate > 0:
            raise ValueError(f"rate must be positive (alarms per sensor per day), got {self.rate!r}")
        if self.group_rate is not None and not self.group_rate > 0:
            raise ValueError(f"group_rate must be positive, got {self.group_rate!r}")
        if self.min_history < 1 or self.memory < 1:
            raise ValueError("min_history and memory must be at least 1")

    def _setup(self, index, ids, step, calendar, sensors) -> None:
        self.freq_ = step
        self.slots_per_day_ = int(pd.Timedelta(days=1) / step)
        self.sensor_ids_ = np.asarray(ids, dtype=object)
        self._set_sensors(sensors)
        self.calendar_start_ = index[0] - pd.Timedelta(days=1)
        self.calendar_end_ = index[-1] + pd.Timedelta(days=HOLIDAYS_AHEAD_DAYS)
        self.calendar_ = with_holidays(calendar, self.calendar_start_, self.calendar_end_,
                                        self.tz, self.country, self.subdiv, self.school_zone)

    def _set_sensors(self, sensors: pd.DataFrame | None) -> None:
        """Positions and groups from the sensors table (kept for sensors that come later)."""
        if sensors is not None:
            check_columns(sensors, "sensors", ("sensor_id",))
            table = sensors.assign(sensor_id=sensors["sensor_id"].astype(str)).drop_duplicates("sensor_id")
            self.sensors_ = table
        table = getattr(self, "sensors_", None)
        if table is not None and {"lon", "lat"} <= set(table.columns):
            self.sensor_lonlat_ = sensor_positions(table, self.sensor_ids_)
        else:
            self.sensor_lonlat_ = np.full((len(self.sensor_ids_), 2), np.nan)
        groups: dict[str, list[str]] = {}
        if table is not None and self.group_col and self.group_col in table.columns:
            known = set(map(str, self.sensor_ids_))
            for name, members in table.dropna(subset=[self.group_col]).groupby(self.group_col)["sensor_id"]:
                members = sorted(m for m in members if m in known)
                if len(members) >= self.min_group_sensors and str(name) != CITY:
                    groups[str(name)] = members
        self.groups_ = groups

    def _add_calendar(self, calendar: pd.DataFrame | None) -> None:
        if calendar is not None and len(calendar):
            both = pd.concat([self.calendar_, validate(calendar, "calendar")], ignore_index=True)
            self.calendar_ = validate(both.drop_duplicates("calendar_id", keep="last"), "calendar")

    def _bins_for(self, index: pd.DatetimeIndex) -> _Bins:
        """Bin facts for ``index``; holidays are looked up again when it runs past those known."""
        if index[-1] >= self.calendar_end_ or index[0] < self.calendar_start_:
            self.calendar_start_ = min(index[0], self.calendar_start_) - pd.Timedelta(days=1)
            self.calendar_end_ = max(index[-1], self.calendar_end_) + pd.Timedelta(days=HOLIDAYS_AHEAD_DAYS)
            self.calendar_ = with_holidays(self.calendar_, self.calendar_start_, self.calendar_end_,
                                            self.tz, self.country, self.subdiv, self.school_zone)
        return _bins(index, self.freq_, self.tz, self.calendar_)

    def _rows(self, ids: np.ndarray, add: bool) -> np.ndarray:
        """Model rows of ``ids`` (-1: unknown); with ``add`` unknown sensors get new, empty rows."""
        where = {s: i for i, s in enumerate(self.sensor_ids_)}
        new = [s for s in ids if s not in where]
        if add and new:
            n = len(new)
            self.sensor_ids_ = np.r_[self.sensor_ids_, np.asarray(new, dtype=object)]
            grow = lambda a, fill: np.concatenate([a, np.full((n,) + a.shape[1:], fill, a.dtype)])  # noqa: E731
            self.level_ = grow(self.level_, np.nan)
            self.count_ = grow(self.count_, 0)
            self.streak_ = grow(self.streak_, 0)
            self.profile_ = grow(self.profile_, np.nan)
            self.profile_n_ = grow(self.profile_n_, 0)
            self.noise_ = grow(self.noise_, np.nan)
            self.spread_ = grow(self.spread_, 1.0)
            self.spread_n_ = grow(self.spread_n_, 0)
            self._set_sensors(None)
            where = {s: i for i, s in enumerate(self.sensor_ids_)}
        return np.array([where.get(s, -1) for s in ids], dtype=np.int64)

    def _prepare(self, X):
        check_is_fitted(self, "level_")
        index, ids, Y, _ = _matrix(X, self.metric, self.freq_)
        return index, ids, Y, self._rows(ids, add=False), self._bins_for(index)

    def _event_mask(self, index: pd.DatetimeIndex, rows: np.ndarray) -> list[tuple[slice, np.ndarray]]:
        """(bins, sensors) pairs to leave out of learning: calendar events with their arrival and departure."""
        if not self.exclude_events or self.calendar_.empty:
            return []
        before, after = pd.Timedelta(hours=EVENT_BEFORE_H), pd.Timedelta(hours=EVENT_AFTER_H)
        ev = self.calendar_[(self.calendar_["kind"] == "event") & (self.calendar_["end"] + after > index[0])
                            & (self.calendar_["start"] - before < index[-1] + self.freq_)]
        t = index.asi8
        out = []
        for row in ev.itertuples(index=False):
            lo = np.searchsorted(t, (row.start - before - self.freq_).value, side="right")
            hi = np.searchsorted(t, (row.end + after).value, side="left")
            if hi > lo:
                out.append((slice(lo, hi), self._near(row, rows)))
        return out

    def _near(self, row, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` a placed happening concerns (all when it or the sensor has no position)."""
        near = np.ones(len(rows), bool)
        if pd.isna(row.lon) or pd.isna(row.lat):
            return near
        lonlat = self.sensor_lonlat_[np.maximum(rows, 0)]
        placed = np.isfinite(lonlat).all(axis=1) & (rows >= 0)
        near[placed] = distance_m(lonlat[placed, 0], lonlat[placed, 1], row.lon, row.lat) \
            <= self.calendar_radius_m
        return near

    # ------------------------------------------------------------------ internals: transform

    def _forward(self, Y: np.ndarray) -> np.ndarray:
        if self.transform == "sqrt":
            return np.sqrt(np.maximum(Y, 0, dtype=np.float32))
        if self.transform == "log1p":
            return np.log1p(np.maximum(Y, 0, dtype=np.float32))
        return np.array(Y, dtype=np.float32, copy=True)

    def _inverse(self, Z: np.ndarray) -> np.ndarray:
        if self.transform == "sqrt":
            return np.square(np.maximum(Z, 0))
        if self.transform == "log1p":
            return np.expm1(np.maximum(Z, 0))
        return Z

    def _floor(self) -> float:
        if self.min_spread is not None:
            return float(self.min_spread)
        return {"sqrt": 0.5, "log1p": 0.05}.get(self.transform, 1e-6)

    # ------------------------------------------------------------------ internals: slots

    def _n_slots(self) -> int:
        return len(self.day_types_) * 7 * self.slots_per_day_

    def _slot_keys(self, bins: _Bins, learn: bool) -> np.ndarray:
        """Flat slot of each bin in ``level_`` (learn) or ``profile_`` (score: unseen day types stand in)."""
        pos = np.full(3, -1)
        for i, t in enumerate(self.day_types_):
            pos[t] = i
        d = pos[bins.day_type]
        dow = bins.dow.astype(np.int64)
        if not learn and (d < 0).any():
            # A day type never seen is scored on the normal day's profile (a Sunday's for a public holiday).
            base = pos[NORMAL] if pos[NORMAL] >= 0 else 0
            unseen = d < 0
            dow = np.where(unseen & (bins.day_type == PUBLIC), 6, dow)
            d = np.where(unseen, base, d)
        return ((d * 7 + dow) * self.slots_per_day_ + bins.slot).astype(np.int64)

    def _slot_noise_keys(self) -> np.ndarray:
        """The (day class, hour) noise key of every slot of ``level_``."""
        P = self.slots_per_day_
        d, dow, p = np.unravel_index(np.arange(self._n_slots()), (len(self.day_types_), 7, P))
        hour = (p * int(self.freq_.total_seconds())) // 3600
        weekend = (dow >= 5) | (np.asarray(self.day_types_)[d] == PUBLIC)
        return (weekend.astype(np.int64) * 24 + hour).astype(np.int64)

    def _add_day_types(self, bins: _Bins) -> None:
        """Make room in the per-slot arrays for day types seen for the first time."""
        new = sorted(set(np.unique(bins.day_type).tolist()) - set(self.day_types_))
        if not new:
            return
        types = tuple(sorted(self.day_types_ + tuple(new)))
        S, P = len(self.sensor_ids_), self.slots_per_day_

        def regrow(a, fill):
            out = np.full((S, len(types), 7, P), fill, a.dtype)
            old = a.reshape(S, len(self.day_types_), 7, P)
            for i, t in enumerate(self.day_types_):
                out[:, types.index(t)] = old[:, i]
            return out.reshape(S, -1)

        self.level_ = regrow(self.level_, np.nan)
        self.count_ = regrow(self.count_, 0)
        self.streak_ = regrow(self.streak_, 0)
        self.profile_ = regrow(self.profile_, np.nan)
        self.profile_n_ = regrow(self.profile_n_, 0)
        self.day_types_ = types

    # ------------------------------------------------------------------ internals: learning

    def _learn(self, index: pd.DatetimeIndex, Y: np.ndarray, bins: _Bins, masks) -> None:
        """Batch fit of levels and spreads on ``Y`` (sensors x bins, the model's rows in order)."""
        S, T = Y.shape
        key = self._slot_keys(bins, learn=True)
        n_slots = self._n_slots()
        self.level_ = np.full((S, n_slots), np.nan, np.float32)
        self.count_ = np.zeros((S, n_slots), np.uint16)
        self.streak_ = np.zeros((S, n_slots), np.int8)
        self.noise_ = np.full((S, 2), np.nan, np.float32)
        self.spread_ = np.ones((S, 48), np.float32)
        self.spread_n_ = np.zeros((S, 48), np.float32)
        span_days = (index[-1] - index[0]) / pd.Timedelta(days=1)
        lag = 7 if span_days >= 8 else 1
        partner = shift_positions(index, self.tz, lag)
        ok = partner >= 0
        safe = np.maximum(partner, 0)
        ok &= bins.day_type[safe] == bins.day_type
        if lag == 1:
            ok &= bins.weekend[safe] == bins.weekend
        pair_cols = np.nonzero(ok)[0]
        pair_key = (bins.weekend.astype(np.int64) * 24 + bins.hour)[pair_cols]
        slot_hk = self._slot_noise_keys()
        for part in _chunks(S, T):
            Z = self._forward(Y[part])
            for span, near in masks:
                Z[np.nonzero(near[part])[0][:, None], np.arange(span.start, span.stop)[None, :]] = np.nan
            if len(pair_cols):
                self.noise_[part], self.spread_[part], self.spread_n_[part] = \
                    _pair_spread(Z, pair_cols, partner, pair_key)
            level, count = _grouped_median(Z, key, n_slots, self.memory)
            # Again, with the wider pools' centre standing in for the values a slot lacks.
            _, _, parent, _ = self._pools(level, count)
            rows = np.arange(S)[part]
            clip = self.huber * self._noise(rows, parent, slot_hk)
            level, _ = _grouped_median(Z, key, n_slots, self.memory, prior=parent, k=self.min_history,
                                       clip=clip)
            self.level_[part] = level
            self.count_[part] = np.minimum(count, np.iinfo(np.uint16).max)
        self._refresh()
        self.end_ = index[-1] + self.freq_

    def _refresh(self, rows: np.ndarray | None = None) -> None:
        """Recompute ``profile_`` and ``profile_n_`` from the per-slot state (after fit or an update)."""
        if not hasattr(self, "profile_") or self.profile_.shape != self.level_.shape:
            self.profile_ = np.full(self.level_.shape, np.nan, np.float32)
            self.profile_n_ = np.zeros(self.level_.shape, np.uint8)
        idx = np.arange(len(self.sensor_ids_)) if rows is None else np.asarray(rows)
        for part in _chunks(len(idx), self._n_slots() * 4):
            sel = idx[part]
            prof, neff, _, _ = self._pools(self.level_[sel], self.count_[sel])
            self.profile_[sel] = prof
            self.profile_n_[sel] = np.minimum(np.round(neff), 255).astype(np.uint8)

    def _pools(self, level: np.ndarray, count: np.ndarray):
        """The usual level of every slot after borrowing from wider pools, for some sensors' slot state.

        Returns (profile, effective values behind it, the wider pools' centre, its values),
        each (sensors x slots). A slot with values is its own centre (shrunk toward
        the wider pools while it has few, see ``_grouped_median``); an empty one
        takes the wider pools'. For a normal day those are the same time on
        weekdays (or weekend days), then on any day, then on any day of any type.
        A pool's centre is the median of its days' levels (each day of the week
        counts once: a robust centre, and a sort of at most seven values).
        For a holiday it is the normal day's level (the same weekday for a school
        holiday, a Sunday for a public holiday) plus the holiday's own offset at
        that time of day, the median over the holiday slots seen (of the same
        weekday group first): the school run missing from school-holiday Mondays
        is missing from the Tuesday not seen yet, while a school-holiday Sunday
        stays a Sunday. Each pool is blended with the next while it has fewer
        than ``min_history`` values, an offset with zero.
        """
        D, P = len(self.day_types_), self.slots_per_day_
        n_rows = len(level)
        L = level.reshape(n_rows, D, 7, P)
        N = count.reshape(n_rows, D, 7, P).astype(np.float32)
        k = float(self.min_history)
        prof = np.full(L.shape, np.nan, np.float32)
        neff = np.zeros(L.shape, np.float32)
        parent = np.full(L.shape, np.nan, np.float32)
        parent_n = np.zeros(L.shape, np.float32)
        normal = self.day_types_.index(NORMAL) if NORMAL in self.day_types_ else None
        zero = np.zeros((n_rows, P), np.float32)

        def pooled(x, n, days):  # median of some days' levels, and their values -> (sensors, P)
            med, _ = _nanmedian(np.moveaxis(x[:, days], 1, 2))
            return med, n[:, days].sum(1)

        if D > 1:
            all_c, _ = _nanmedian(np.moveaxis(L, 3, 1).reshape(n_rows, P, D * 7))
            all_n = N.sum((1, 2))

        wk, we, week = list(range(5)), [5, 6], list(range(7))
        for i in sorted(range(D), key=lambda j: self.day_types_[j] != NORMAL):  # normal days first
            t = self.day_types_[i]
            A, nA = L[:, i], N[:, i]
            if t == NORMAL or normal is None:
                C, nC = pooled(A, nA, week)
                est, n = _blend(C, nC, all_c, all_n, k) if D > 1 else (C, nC)
                B_wk, n_wk = pooled(A, nA, wk)
                B_we, n_we = pooled(A, nA, we)
                est_wk, n1 = _blend(B_wk, n_wk, est, n, k)
                est_we, n2 = _blend(B_we, n_we, est, n, k)
                est = np.stack([est_wk] * 5 + [est_we] * 2, axis=1)
                n = np.stack([n1] * 5 + [n2] * 2, axis=1)
            else:
                if t == SCHOOL:
                    ref, nref = prof[:, normal], neff[:, normal]
                else:  # a public holiday is a Sunday, until public holidays say otherwise
                    ref = np.repeat(prof[:, normal, 6:7], 7, 1)
                    nref = np.repeat(neff[:, normal, 6:7], 7, 1)
                delta = A - ref
                d_all, n_all = pooled(delta, nA, week)
                off, _ = _blend(d_all, n_all, zero, zero, k)
                offs = []
                for days in (wk, we):
                    d_g, n_g = pooled(delta, nA, days)
                    offs.append(_blend(d_g, n_g, off, n_all, k)[0] if t == SCHOOL else off)
                est = ref + np.stack([offs[0]] * 5 + [offs[1]] * 2, axis=1)
                n = nref
            parent[:, i], parent_n[:, i] = est, n
            own = (nA > 0) & ~np.isnan(A)
            prof[:, i] = np.where(own, A, est)
            # A wider pool's centre is about this slot as good as one value of it (its
            # bias for this day and hour is unknown), as in the slot's shrunk median.
            neff[:, i] = np.where(own, nA + (nA < k), np.where(np.isnan(est), 0.0, 1.0))
        shape = (n_rows, -1)
        return prof.reshape(shape), neff.reshape(shape), parent.reshape(shape), parent_n.reshape(shape)

    def _centre(self, rows: np.ndarray, bins: _Bins):
        """Usual level (transformed scale) and score scale of each bin, for model ``rows``."""
        key = self._slot_keys(bins, learn=False)
        centre = self.profile_[rows][:, key]
        n = self.profile_n_[rows][:, key].astype(np.float32)
        centre = np.where(n > 0, centre, np.nan)
        sig = self._noise(rows, centre, bins)
        scale = sig * np.sqrt(1 + _MEDIAN_VAR / np.maximum(n, 1))
        return centre, scale

    def _noise(self, rows: np.ndarray, centre: np.ndarray, bins) -> np.ndarray:
        """A bin's noise on the transformed scale: the sensor's a + b c^2 times its hour's factor, floored.

        ``bins`` is a ``_Bins`` or directly the (day class, hour) key of each column.
        """
        a, b = self.noise_[rows, :1], self.noise_[rows, 1:]
        hk = bins if isinstance(bins, np.ndarray) else bins.weekend.astype(np.int64) * 24 + bins.hour
        factor = self.spread_[rows][:, hk]
        with np.errstate(invalid="ignore"):
            sig = np.sqrt(a + b * centre ** 2) * factor
        return np.fmax(sig, self._floor())

    def _score(self, Y: np.ndarray, rows: np.ndarray, bins: _Bins):
        centre, scale = self._centre(rows, bins)
        z = (self._forward(Y) - centre) / scale
        return z.astype(np.float32), centre, scale

    def _update(self, index, Y, rows, bins, masks) -> None:
        """Online update (``partial_fit``) of levels and spreads with new bins, in time order."""
        self._add_day_types(bins)
        Z = self._forward(Y)
        for span, near in masks:
            Z[np.nonzero(near)[0][:, None], np.arange(span.start, span.stop)[None, :]] = np.nan
        centre, scale = self._centre(rows, bins)  # the prediction before this update
        hk = bins.weekend.astype(np.int64) * 24 + bins.hour
        sig = self._noise(rows, centre, bins)
        key = self._slot_keys(bins, learn=True)
        memory, k = float(self.memory), float(self.min_history)
        # Rounds: the r-th occurrence of each slot in this call; slots within a round are distinct.
        order = np.argsort(key, kind="stable")
        first = np.r_[0, np.nonzero(np.diff(key[order]))[0] + 1]
        rank = np.empty(len(key), np.int64)
        rank[order] = np.arange(len(key)) - np.repeat(first, np.diff(np.r_[first, len(key)]))
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            cols = np.nonzero(rank == r)[0]
            f = key[cols]
            m = self.level_[rows[:, None], f[None, :]]
            n = self.count_[rows[:, None], f[None, :]].astype(np.float32)
            x = Z[:, cols]
            prior = np.where(n > 0, m, centre[:, cols])
            limit = self.huber * sig[:, cols]
            step = np.clip(x - prior, -limit, limit)
            # Weight 1/n, counting the wider pool as one more value while the slot
            # has fewer than min_history (as fit does), and no less than 1/memory.
            weight = 1.0 / np.minimum(n + 1 + (n < k), max(memory, 2.0))
            new = np.where(np.isnan(prior), x, prior + step * weight)
            ok = ~np.isnan(x)
            n_new = np.where(ok, np.minimum(n + 1, 65535), n)
            # A run of departures beyond the clip in one direction is a new normal.
            run = self.streak_[rows[:, None], f[None, :]].astype(np.int16)
            with np.errstate(invalid="ignore"):
                above, below = ok & (x - prior > limit), ok & (x - prior < -limit)
            run = np.where(above, np.maximum(run, 0) + 1, np.where(below, np.minimum(run, 0) - 1,
                                                                   np.where(ok, 0, run)))
            moved = np.abs(run) >= max(2, self.memory // 2)
            new, n_new, run = np.where(moved, x, new), np.where(moved, 1, n_new), np.where(moved, 0, run)
            self.level_[rows[:, None], f[None, :]] = np.where(ok, new, m)
            self.count_[rows[:, None], f[None, :]] = n_new
            self.streak_[rows[:, None], f[None, :]] = np.clip(run, -127, 127)
        # Noise: the hour's factor follows the prediction error (in units of the modelled
        # noise, less the centre's own share, clipped at huber), as an exponential average
        # over about ``memory`` weeks of that hour. A sensor without a noise model yet
        # (new, or too short a history) gets one from its first errors.
        self._update_noise(rows, Z, centre, scale, sig, bins, hk)
        self._refresh(np.unique(rows))
        self.end_ = max(self.end_, index[-1] + self.freq_)

    def _update_noise(self, rows, Z, centre, scale, sig, bins, hk) -> None:
        a, b = self.noise_[rows, :1], self.noise_[rows, 1:]
        model = np.sqrt(np.fmax(a + b * centre ** 2, 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = (Z - centre) / (scale / sig)  # the bin's own noise, the centre's share removed
            u2 = np.minimum((resid / model) ** 2, (self.huber * sig / model) ** 2)
        missing = np.isnan(self.noise_[rows, 0])
        if missing.any():
            # Poisson-like start: a from the quiet bins, b from the busy ones (as in fit, by pairs).
            ok = np.isfinite(Z) & np.isfinite(centre)
            r2 = np.where(ok, (Z - centre) ** 2, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                var = np.nanmedian(r2, axis=1) / 0.455  # median of chi-square(1)
            got = missing & np.isfinite(var) & (ok.sum(1) >= 3)
            sel = rows[got]
            self.noise_[sel, 0] = var[got]
            self.noise_[sel, 1] = 0.0
        per_hour = max(pd.Timedelta(hours=1) / self.freq_, 1.0)
        weekly = np.r_[np.full(24, 5 * per_hour), np.full(24, 2 * per_hour)]
        memory = float(self.memory)
        for k in np.unique(hk):
            cols = np.nonzero(hk == k)[0]
            e = u2[:, cols]
            cnt = np.isfinite(e).sum(1).astype(np.float32)
            has = cnt > 0
            if not has.any():
                continue
            mean = np.where(has, np.nansum(np.where(np.isfinite(e), e, 0), 1) / np.maximum(cnt, 1), np.nan)
            f_old = self.spread_[rows, k].astype(np.float64)
            n_old = self.spread_n_[rows, k]
            beta = 1.0 / np.minimum(n_old + 1, memory * weekly[k])
            keep = (1 - beta) ** cnt
            f2 = keep * f_old ** 2 + (1 - keep) * mean
            self.spread_[rows, k] = np.where(has & np.isfinite(f2), np.sqrt(f2), f_old)
            self.spread_n_[rows, k] = n_old + cnt

    def _replay(self, index, Y, rows, bins, update: bool):
        """Scores of every bin as a live model gives them: score a step, then learn it (``update``).

        Returns z, centre and scale (sensors x bins) for the model ``rows``.
        """
        z = np.full(Y.shape, np.nan, np.float32)
        centre = np.full(Y.shape, np.nan, np.float32)
        scale = np.full(Y.shape, np.nan, np.float32)
        steps = [slice(0, len(index))]
        if update:
            every = pd.Timedelta(self.update_every)
            local0 = index[0].tz_convert(self.tz).normalize()
            edges = pd.date_range(local0, index[-1].tz_convert(self.tz) + every, freq=every)
            cuts = np.unique(np.r_[0, np.searchsorted(index.asi8, edges.tz_convert("UTC").asi8), len(index)])
            steps = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        known = np.nonzero(rows >= 0)[0]
        for s in steps:
            sub = _Bins(index[s], bins.day_type[s], bins.dow[s], bins.slot[s], bins.hour[s],
                        bins.weekend[s], bins.day[s])
            zi, ci, si = self._score(Y[known, s], rows[known], sub)
            z[known, s], centre[known, s], scale[known, s] = zi, ci, si
            if update:
                self._update(index[s], Y[known, s], rows[known], sub, self._event_mask(index[s], rows[known]))
        return z, centre, scale

    # ------------------------------------------------------------------ internals: calibration

    def _calibrate(self, index: pd.DatetimeIndex, Y: np.ndarray, bins: _Bins) -> None:
        """Solve ``threshold_`` and the group thresholds on a replay of the last days of the history."""
        days = np.unique(bins.day)
        n_cal = min(int(self.calibration_days), len(days) // 2)
        bins_per_day = self.slots_per_day_
        group_rate = self.rate if self.group_rate is None else self.group_rate
        self.threshold_ = _gaussian_threshold(self.rate, bins_per_day)
        self.group_threshold_ = {}
        self.realised_rate_ = np.nan
        self.group_realised_rate_ = {}
        self.calibration_sensor_days_ = 0.0
        self.calibrated_ = False
        if n_cal < 1:
            return
        start = np.searchsorted(bins.day, days[-n_cal])
        rng = np.random.default_rng(self.random_state)
        S = Y.shape[0]
        sample = np.sort(rng.choice(S, size=min(S, self.max_calibration_sensors), replace=False))
        sub = _clone_params(self)
        sub._setup_from(self, sample)
        head = _Bins(index[:start], bins.day_type[:start], bins.dow[:start], bins.slot[:start],
                     bins.hour[:start], bins.weekend[:start], bins.day[:start])
        sub.day_types_ = tuple(int(t) for t in np.unique(head.day_type))
        rows = np.arange(len(sample))
        sub._learn(index[:start], Y[sample, :start], head, sub._event_mask(index[:start], rows))
        tail = _Bins(index[start:], bins.day_type[start:], bins.dow[start:], bins.slot[start:],
                     bins.hour[start:], bins.weekend[start:], bins.day[start:])
        z, _, _ = sub._replay(index[start:], Y[sample, start:], rows, tail, self.update_every is not None)
        # Known events are not normal data: they are left out of the calibration days.
        for span, near in sub._event_mask(index[start:], rows):
            z[np.nonzero(near)[0][:, None], np.arange(span.start, span.stop)[None, :]] = np.nan
        sensor_days = np.isfinite(z).sum() / bins_per_day
        if sensor_days <= 0:
            return
        gap = self._gap()
        floor = self.threshold_
        self.threshold_ = _solve(lambda t: _n_periods(z, t, gap) / sensor_days, self.rate, floor, 1000.0)
        self.realised_rate_ = _n_periods(z, self.threshold_, gap) / sensor_days
        self.calibration_sensor_days_ = float(sensor_days)
        self.calibrated_ = True
        # Groups: each on its own sampled members.
        pos = {s: i for i, s in enumerate(self.sensor_ids_[sample])}
        for name, members in self._all_groups().items():
            idx = [pos[m] for m in members if m in pos]
            if len(idx) < self.min_group_sensors:
                continue
            up, down, n_obs = _shares(z[idx], self.group_z, self.min_group_sensors)
            group_days = np.isfinite(up).sum() / bins_per_day
            if group_days <= 0:
                continue

            def rate_at(tau, up=up, down=down, group_days=group_days):
                return _group_periods(up, down, tau, gap) / group_days

            tau = _solve(rate_at, group_rate, MIN_GROUP_SHARE, 1.0)
            self.group_threshold_[name] = float(tau)
            self.group_realised_rate_[name] = float(rate_at(tau))

    def _setup_from(self, parent: "UsualLevel", sample: np.ndarray) -> None:
        """A calibration model on a sample of the parent's sensors, sharing its calendar and sensors."""
        self.freq_ = parent.freq_
        self.slots_per_day_ = parent.slots_per_day_
        self.sensor_ids_ = parent.sensor_ids_[sample]
        self.sensor_lonlat_ = parent.sensor_lonlat_[sample]
        self.groups_ = {}
        self.calendar_ = parent.calendar_
        self.calendar_start_ = parent.calendar_start_
        self.calendar_end_ = parent.calendar_end_

    def _gap(self) -> int:
        return int(pd.Timedelta(self.merge_gap) // self.freq_)

    def _all_groups(self) -> dict[str, list[str]]:
        groups = {CITY: list(map(str, self.sensor_ids_))} if len(self.sensor_ids_) >= self.min_group_sensors \
            else {}
        groups.update(self.groups_)
        return groups

    # ------------------------------------------------------------------ internals: periods

    def _periods(self, index, ids, Y, rows, bins, z, centre, scale) -> pd.DataFrame:
        """The periods table: group anomalies (city, then zones), then sensor alarms they do not explain."""
        gap = self._gap()
        thr = self.threshold_
        known = rows >= 0
        with np.errstate(invalid="ignore"):
            expected = self._inverse(centre)
            low = self._inverse(centre - thr * scale)
            high = self._inverse(centre + thr * scale)
        step = self.freq_
        pos = {s: i for i, s in enumerate(ids)}
        out: list[dict] = []
        claimed: list[tuple[int, int, int, str]] = []  # (sensor, first, last, direction) explained by a group
        fallback_tau = float(np.median(list(self.group_threshold_.values()))) if self.group_threshold_ else 0.5
        groups = self._all_groups()
        for name, members in groups.items():  # the city first, then zones
            idx = np.array([pos[m] for m in members if m in pos and known[pos[m]]], dtype=np.int64)
            if len(idx) < self.min_group_sensors:
                continue
            tau = self.group_threshold_.get(name, fallback_tau)
            up, down, n_obs = _shares(z[idx], self.group_z, self.min_group_sensors)
            for direction, share, sign in (("high", up, 1), ("low", down, -1)):
                with np.errstate(invalid="ignore"):
                    mask = share >= tau
                _, firsts, lasts = _runs(mask[None, :], gap)
                for a, b in zip(firsts, lasts):
                    if name != CITY and _overlaps(out, CITY, a, b, direction, index, step):
                        continue  # a city-wide anomaly already explains it
                    seg = slice(a, b + 1)
                    zz = z[idx, seg]
                    with np.errstate(invalid="ignore"):
                        departed = (sign * zz > self.group_z).any(axis=1)
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
                    label = _slot_label(index[peak_bin], self.tz, int(bins.day_type[peak_bin]))
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
                        "calendar": self._happenings(index[a], index[b] + step, rows[idx]),
                    })
        # Sensor alarms, unless a group anomaly of the same direction explains them.
        for direction, sign in (("high", 1), ("low", -1)):
            with np.errstate(invalid="ignore"):
                mask = sign * z > thr
            rs, firsts, lasts = _runs(mask, gap)
            for s, a, b in zip(rs, firsts, lasts):
                if any(c[0] == s and c[3] == direction and a <= c[2] and c[1] <= b for c in claimed):
                    continue
                seg = slice(a, b + 1)
                peak_bin = a + int(np.nanargmax(sign * z[s, seg]))
                both = np.isfinite(Y[s, seg]) & np.isfinite(expected[s, seg])
                obs, exp = Y[s, peak_bin], expected[s, peak_bin]
                label = _slot_label(index[peak_bin], self.tz, int(bins.day_type[peak_bin]))
                out.append({
                    "sensor_id": ids[s], "group": None, "start": index[a], "end": index[b] + step,
                    "direction": direction, "observed": float(Y[s, seg][both].mean()),
                    "expected": float(expected[s, seg][both].mean()), "low": float(low[s, seg][both].mean()),
                    "high": float(high[s, seg][both].mean()), "score": float(z[s, peak_bin]),
                    "peak": index[peak_bin], "n_sensors": 1, "sensors": json.dumps([ids[s]]),
                    "attached": json.dumps([]),
                    "explanation": f"{_ratio(obs / exp if exp > 0 else np.inf)} the usual {label} level at "
                                   f"sensor {ids[s]} ({_number(obs)} vs {_number(exp)})",
                    "calendar": self._happenings(index[a], index[b] + step, rows[[s]]),
                })
        if not out:
            return empty_periods()
        table = pd.DataFrame(out, columns=PERIOD_COLUMNS)
        table["is_group"] = table["group"].notna()
        table = table.sort_values(["start", "is_group", "sensor_id"], ascending=[True, False, True],
                                  ignore_index=True).drop(columns="is_group")
        return table

    def _happenings(self, start, end, rows) -> str | None:
        """Names of calendar events and roadworks under way near these sensors (with arrival and departure)."""
        cal = self.calendar_
        if cal.empty:
            return None
        before, after = pd.Timedelta(hours=EVENT_BEFORE_H), pd.Timedelta(hours=EVENT_AFTER_H)
        hits = cal[cal["kind"].isin(["event", "roadworks"]) & (cal["start"] - before < end)
                   & (cal["end"] + after > start)]
        names = [row.name for row in hits.itertuples(index=False) if self._near(row, rows).any()]
        return "; ".join(dict.fromkeys(names)) or None


# =========================================================================== helpers


def _clone_params(model: UsualLevel) -> UsualLevel:
    return UsualLevel(**model.get_params())


def _shares(z: np.ndarray, gz: float, min_n: int):
    """Per bin: the share of reporting sensors above +gz and below -gz (NaN with fewer than ``min_n``)."""
    with np.errstate(invalid="ignore"):
        n_obs = np.isfinite(z).sum(0)
        up_n, down_n = (z > gz).sum(0), (z < -gz).sum(0)
    ok = n_obs >= min_n
    # Fewer than min_n departing sensors is no group departure, whatever the share.
    up = np.where(ok, np.where(up_n >= min_n, up_n / np.maximum(n_obs, 1), 0.0), np.nan)
    down = np.where(ok, np.where(down_n >= min_n, down_n / np.maximum(n_obs, 1), 0.0), np.nan)
    return up, down, n_obs


def _group_periods(up: np.ndarray, down: np.ndarray, tau: float, gap: int) -> int:
    with np.errstate(invalid="ignore"):
        return int(_run_starts((up >= tau)[None, :], gap).sum() + _run_starts((down >= tau)[None, :], gap).sum())


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


# =========================================================================== events


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
