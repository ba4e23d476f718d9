"""Scores as a live model gives them: score a step, then learn it.

An alarm threshold is only as good as the scores it is calibrated on: a model
scoring days it has already learnt barely sees a spike. The replay scores
each ``update_every`` step before the model learns it (``partial_fit``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from safecity.baseline.grid import Bins

if TYPE_CHECKING:
    from safecity.baseline.usual import UsualLevel


def replay(model: "UsualLevel", index, Y, rows, bins, update: bool):
    """Scores of every bin as a live model gives them: score a step, then learn it (``update``).

    Returns z, centre and scale (sensors x bins) for the model ``rows``.
    """
    z = np.full(Y.shape, np.nan, np.float32)
    centre = np.full(Y.shape, np.nan, np.float32)
    scale = np.full(Y.shape, np.nan, np.float32)
    steps = [slice(0, len(index))]
    if update:
        every = pd.Timedelta(model.update_every)
        local0 = index[0].tz_convert(model.tz).normalize()
        edges = pd.date_range(local0, index[-1].tz_convert(model.tz) + every, freq=every)
        cuts = np.unique(np.r_[0, np.searchsorted(index.asi8, edges.tz_convert("UTC").asi8), len(index)])
        steps = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
    known = np.nonzero(rows >= 0)[0]
    for s in steps:
        sub = Bins(index[s], bins.day_type[s], bins.dow[s], bins.slot[s], bins.hour[s],
                    bins.weekend[s], bins.day[s])
        zi, ci, si = model._score(Y[known, s], rows[known], sub)
        z[known, s], centre[known, s], scale[known, s] = zi, ci, si
        if update:
            model._update(index[s], Y[known, s], rows[known], sub, model._event_mask(index[s], rows[known]))
    return z, centre, scale
