"""What counts as an alarm: runs of bins beyond a threshold, and the share of a group's sensors that depart.

Alarm bins of one sensor and one direction closer than a gap make one alarm
period; a group (the city, a zone) departs when enough of its sensors do.
Calibration counts these periods to solve thresholds; the periods table
(``safecity.baseline.periods``) lists them.
"""
from __future__ import annotations

import numpy as np

CITY = "city"
#: A group alarms only when at least this share of its sensors departs, whatever the calibration says.
MIN_GROUP_SHARE = 0.2
_NONE = -(10 ** 12)


def run_starts(mask: np.ndarray, gap: int) -> np.ndarray:
    """Alarm bins that start a period: no alarm bin in the ``gap`` bins before them."""
    T = mask.shape[-1]
    pos = np.arange(T)
    prev = np.maximum.accumulate(np.where(mask, pos, _NONE), axis=-1)
    prev = np.concatenate([np.full(mask.shape[:-1] + (1,), _NONE), prev[..., :-1]], axis=-1)
    return mask & (pos - prev > gap + 1)


def runs(mask: np.ndarray, gap: int):
    """(row, first bin, last bin) of each period of ``mask`` (rows x bins), gaps up to ``gap`` bins merged."""
    mask = np.atleast_2d(mask)
    starts = run_starts(mask, gap)
    ends = run_starts(mask[:, ::-1], gap)[:, ::-1]
    rs, cs = np.nonzero(starts)
    _, ce = np.nonzero(ends)
    return rs, cs, ce


def n_periods(z: np.ndarray, thr: float, gap: int) -> int:
    with np.errstate(invalid="ignore"):
        return int(run_starts(z > thr, gap).sum() + run_starts(z < -thr, gap).sum())


def solve_threshold(rate_at, target: float, lo: float, hi: float, steps: int = 40) -> float:
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


def gaussian_threshold(rate: float, bins_per_day: float) -> float:
    """|z| that independent normal bins exceed ``rate`` times a day: a floor for any calibration."""
    from scipy.stats import norm

    p = min(0.5, rate / (2 * bins_per_day))
    return float(norm.isf(p))


def group_shares(z: np.ndarray, gz: float, min_n: int):
    """Per bin: the share of reporting sensors above +gz and below -gz (NaN with fewer than ``min_n``)."""
    with np.errstate(invalid="ignore"):
        n_obs = np.isfinite(z).sum(0)
        up_n, down_n = (z > gz).sum(0), (z < -gz).sum(0)
    return shares_from_counts(n_obs, up_n, down_n, min_n)


def shares_from_counts(n_obs: np.ndarray, up_n: np.ndarray, down_n: np.ndarray, min_n: int):
    """``group_shares`` from the counts per bin (reporting, above, below), which add up across sensors."""
    ok = n_obs >= min_n
    # Fewer than min_n departing sensors is no group departure, whatever the share.
    up = np.where(ok, np.where(up_n >= min_n, up_n / np.maximum(n_obs, 1), 0.0), np.nan)
    down = np.where(ok, np.where(down_n >= min_n, down_n / np.maximum(n_obs, 1), 0.0), np.nan)
    return up, down, n_obs


def n_group_periods(up: np.ndarray, down: np.ndarray, tau: float, gap: int) -> int:
    with np.errstate(invalid="ignore"):
        return int(run_starts((up >= tau)[None, :], gap).sum() + run_starts((down >= tau)[None, :], gap).sum())
