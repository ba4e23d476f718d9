"""The uncertainty of a measured figure: the intervals every evaluation reports.

Few episodes, few false alarms and few forecast days are the rule here, so the
intervals are the ones that stay honest for small samples: Wilson for a
proportion, exact (Garwood) for a Poisson count, and bootstraps that resample
whole days or blocks of frames, since neighbouring hours and frames err together.
All intervals are 95% unless ``level`` (or ``z``) says otherwise.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Interval of a proportion ``k / n`` that stays inside [0, 1] and sensible for small ``n``.

    ``z`` is the normal quantile of the level (1.96: 95%). ``(nan, nan)`` when
    ``n`` is 0: nothing was measured.
    """
    if n == 0:
        return (np.nan, np.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def poisson_interval(k: int, level: float = 0.95) -> tuple[float, float]:
    """Exact interval of the mean of a Poisson count ``k`` (e.g. false alarms in an hour of footage)."""
    alpha = 1 - level
    low = stats.chi2.ppf(alpha / 2, 2 * k) / 2 if k else 0.0
    return (low, stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2)


def quantile_interval(draws, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap draws."""
    tail = round((1 - level) / 2, 10)  # 0.025 exactly, not 0.025000000000000022
    low, high = np.quantile(np.asarray(draws, dtype=float), [tail, 1 - tail])
    return (float(low), float(high))


def day_bootstrap_mae(error_sums: pd.DataFrame, counts: pd.DataFrame, n_boot: int = 2000,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """Each column's mean absolute error recomputed on days drawn with replacement.

    ``error_sums`` and ``counts`` have one row per forecast day and one column
    per method (the day's summed absolute error and its number of scored
    hours). Every method is scored on the same drawn days, so the ratio of two
    methods' draws is a paired bootstrap of their ratio.
    """
    draws = np.random.default_rng(seed).integers(0, len(error_sums), size=(n_boot, len(error_sums)))
    return {m: error_sums[m].to_numpy()[draws].sum(1) / counts[m].to_numpy()[draws].sum(1)
            for m in error_sums}


def block_bootstrap_auc(y_true, scores, block: int = 20, n_boot: int = 500, seed: int = 0) -> np.ndarray:
    """ROC AUC of frame scores recomputed on blocks of ``block`` consecutive frames drawn with replacement.

    Neighbouring frames are not independent, so frames are resampled in
    blocks; a draw holding only one class has no AUC and is left out.
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    blocks = np.array_split(np.arange(len(scores)), len(scores) // block)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = np.concatenate([blocks[i] for i in rng.integers(0, len(blocks), len(blocks))])
        if 0 < y_true[idx].sum() < len(idx):
            draws.append(roc_auc_score(y_true[idx], scores[idx]))
    return np.array(draws)
