"""Response times of dispatched units: how long a call waits, and for what.

Works on a ``responses`` table (see ``catalog``: one row per unit sent to a
call, with received, dispatched, response (en route) and on_scene times) and
splits the total time into the parts an operator can act on::

    dispatch_delay_s = dispatched - received   (the call centre)
    turnout_s        = response   - dispatched (the crew leaving)
    travel_s         = on_scene   - response   (the road)
    total_s          = on_scene   - received   (what the caller lives)

Each measure is cleaned on its own: a unit cancelled before arriving has no
travel time but its dispatch delay still counts. Missing, negative and
implausibly long intervals (``LIMITS_S``: clock errors, units logged on scene
hours later) are left out of that measure and counted in ``excluded``.

``summarise`` is what the dashboard and the notebook call: median, mean, 90th
percentile and a bootstrap 95% confidence interval of the median per group.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: measure -> (start column, end column)
MEASURES = {
    "dispatch_delay_s": ("received", "dispatched"),
    "turnout_s": ("dispatched", "response"),
    "travel_s": ("response", "on_scene"),
    "total_s": ("received", "on_scene"),
}
#: Longest plausible value of each measure, seconds. Generous on purpose: they
#: only remove what cannot be a real response (a unit "arriving" hours later).
LIMITS_S = {"dispatch_delay_s": 3600, "turnout_s": 1800, "travel_s": 3600, "total_s": 7200}


def response_times(responses: pd.DataFrame) -> pd.DataFrame:
    """``responses`` with the four measures in seconds (NaN where excluded).

    ``result.attrs["excluded"]`` holds, per measure, how many rows were left
    out because an end point was missing, the interval was negative, or it
    was longer than ``LIMITS_S``.
    """
    out = responses.copy()
    excluded = {}
    for measure, (start, end) in MEASURES.items():
        seconds = (out[end] - out[start]).dt.total_seconds()
        missing = seconds.isna()
        negative = seconds < 0
        too_long = seconds > LIMITS_S[measure]
        excluded[measure] = {"missing": int(missing.sum()), "negative": int(negative.sum()),
                             "implausible": int(too_long.sum())}
        out[measure] = seconds.where(~(missing | negative | too_long))
    out.attrs["excluded"] = excluded
    return out


def excluded_counts(times: pd.DataFrame) -> pd.DataFrame:
    """The exclusions of a ``response_times`` result as a table (measure x reason)."""
    return pd.DataFrame(times.attrs["excluded"]).T.rename_axis("measure")


def median_ci(values, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the median (fixed seed: reproducible)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(n_boot, len(values)), replace=True), axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(medians, [alpha, 1 - alpha])
    return float(lo), float(hi)


def summarise(responses: pd.DataFrame, by=("unit_type", "priority"),
              measures=tuple(MEASURES), n_boot: int = 1000, seed: int = 0,
              min_n: int = 1) -> pd.DataFrame:
    """One row per group and measure: n, median, mean, p90, median_lo, median_hi (seconds).

    ``responses`` may be raw (times are computed) or already a ``response_times``
    result. Groups with fewer than ``min_n`` values of a measure are left out.
    """
    times = responses if all(m in responses for m in measures) else response_times(responses)
    by = list(by)
    rows = []
    for key, group in times.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for measure in measures:
            values = group[measure].dropna().to_numpy()
            if len(values) < max(min_n, 1):
                continue
            lo, hi = median_ci(values, n_boot=n_boot, seed=seed)
            rows.append({**dict(zip(by, key)), "measure": measure, "n": len(values),
                         "median": float(np.median(values)), "mean": float(values.mean()),
                         "p90": float(np.quantile(values, 0.9)),
                         "median_lo": lo, "median_hi": hi})
    columns = by + ["measure", "n", "median", "mean", "p90", "median_lo", "median_hi"]
    return pd.DataFrame(rows, columns=columns)
