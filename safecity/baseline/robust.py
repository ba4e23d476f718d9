"""Robust statistics of the usual level: fast medians of short axes, shrunk pools, and the noise model.

Medians, not means, so that a past event or a broken counter cannot move a
usual level; the noise is measured on pairs of bins a week (or a day) apart,
so that it needs no centre.
"""
from __future__ import annotations

import warnings

import numpy as np

#: MAD to standard deviation for normal noise.
_MAD = 1.4826
#: Pairs of an hour's own spread factor that weigh as much as the prior factor 1.
_SPREAD_PRIOR = 10.0
#: Median of |N(0, 1)|.
_HALF_NORMAL_MEDIAN = 0.6745
#: Axes up to this long are sorted by a compare-exchange network in ``nanmedian``.
_NETWORK_MAX = 9
#: Pairs per sensor that fit its noise model (evenly spread over the history).
_NOISE_PAIRS = 4096


def nanmedian(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def grouped_median(values: np.ndarray, key: np.ndarray, n_keys: int, memory: int | None = None,
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
        m, _ = nanmedian(block)
        if prior is not None and k > 1 and one.any():
            m = np.where(one & np.isfinite(p), lone, m)
        med[:, keys[g]] = m
        cnt[:, keys[g]] = n
    return med, cnt


def blend(x, nx, fallback, nf, k: float):
    """Shrink a pool's centre toward the wider pool's in proportion to the values it lacks (of ``k``)."""
    have_x, have_f = ~np.isnan(x), ~np.isnan(fallback)
    w = np.where(have_x, np.minimum(nx / k, 1.0), 0.0)
    w = np.where(have_f, w, have_x.astype(np.float32))
    with np.errstate(invalid="ignore"):
        est = np.where(w >= 1, x, np.where(w <= 0, fallback,
                                           w * np.nan_to_num(x) + (1 - w) * np.nan_to_num(fallback)))
        n = w * np.nan_to_num(nx) + (1 - w) * np.nan_to_num(nf)
    return est.astype(np.float32), n.astype(np.float32)


def pair_spread(Z: np.ndarray, cols: np.ndarray, partner: np.ndarray, key: np.ndarray,
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
    ab = fit_noise(d[:, some], lev[:, some], n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = d / np.sqrt(2 * (ab[:, :1] + ab[:, 1:] * lev ** 2))
    med, n = grouped_median(u.astype(np.float32), key, 48)
    n = n.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_f = np.log(med / _HALF_NORMAL_MEDIAN)
    log_f = np.where(np.isfinite(log_f), log_f * n / (n + _SPREAD_PRIOR), 0.0)
    return ab, np.exp(log_f).astype(np.float32), n


def fit_noise(d: np.ndarray, lev: np.ndarray, n_bins: int) -> np.ndarray:
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
    # The padding is set by the number of pairs, not by the rows' counts: a row's nanmean
    # (its summation order) must not depend on which other sensors share the call.
    width = int(np.ceil(n_pairs / n_bins)) + 1
    rows = np.broadcast_to(np.arange(S)[:, None], d.shape)
    dd = np.full((S, n_bins, width), np.nan, np.float32)
    ll = np.full((S, n_bins, width), np.nan, np.float32)
    dd[rows[ok], bins[ok], within[ok]] = d[ok]
    ll[rows[ok], bins[ok], within[ok]] = lev[ok] ** 2
    med, cnt = nanmedian(dd)
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
