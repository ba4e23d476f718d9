"""Forecast intervals by split conformal calibration: residual quantiles binned by the predicted level.

A night hour of 5 people is relatively far less certain than a noon of
3,000, so the errors a method made on its most recent days are grouped by
the level it predicted, and each group's quantiles widen the forecasts of
that level.
"""
from __future__ import annotations

import numpy as np

LEVELS = np.linspace(0, 1, 201)



def fit_residuals(level: np.ndarray, residual: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges on the predicted (log) level and, per bin, the residuals' quantiles on a 0.5% grid."""
    ok = np.isfinite(level) & np.isfinite(residual)
    level, residual = level[ok], residual[ok]
    if len(residual) == 0:
        return np.array([]), np.zeros((1, len(LEVELS)))
    n_bins = max(1, min(n_bins, len(residual) // 200))
    edges = np.unique(np.quantile(level, np.linspace(0, 1, n_bins + 1)[1:-1]))
    which = np.searchsorted(edges, level, side="right")
    table = np.vstack([np.quantile(residual[which == b], LEVELS) if (which == b).any()
                       else np.quantile(residual, LEVELS) for b in range(len(edges) + 1)])
    return edges, table



def residual_quantiles(edges: np.ndarray, table: np.ndarray, level: np.ndarray,
                        quantiles: tuple[float, ...]) -> np.ndarray:
    """Residual quantiles (points x quantiles) for points at ``level``."""
    which = np.searchsorted(edges, level, side="right")
    per_bin = np.column_stack([[np.interp(q, LEVELS, row) for row in table] for q in quantiles])
    return per_bin[which]

