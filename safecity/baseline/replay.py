"""Scores as a live model gives them: score a step, then learn it.

An alarm threshold is only as good as the scores it is calibrated on, and a
model scoring days it has already learnt barely sees a spike. ``replay_live``
scores each ``update_every`` step of local time (a day by default) before the
model learns it with an explicit ``partial_fit``: the model leaves the call
updated, as the live model would be. Scoring alone (``UsualLevel.departures``,
``score_samples``) never changes the model.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from safecity.baseline.grid import Departures, to_matrix



def replay_live(model, X: pd.DataFrame) -> Departures:
    """The departures of ``X`` scored step by step, the model learning each step after scoring it.

    ``X`` is the observations table or a wide frame (as ``UsualLevel.fit``
    reads). With ``model.update_every`` None, ``X`` is scored once and
    nothing is learnt.
    """
    check_is_fitted(model, "level_")
    index, ids, Y, _ = to_matrix(X, model.metric, model.freq_)
    parts = []
    for step in live_steps(index, model.update_every, model.tz):
        frame = pd.DataFrame(Y[:, step].T, index=index[step], columns=ids)
        parts.append(model.departures(frame))
        if model.update_every is not None:
            model.partial_fit(frame)
    return Departures.concat(parts)


def live_steps(index: pd.DatetimeIndex, every: str | None, tz: str) -> list[slice]:
    """Slices of ``index`` cut at every ``every`` from its first local midnight (None: one slice)."""
    if every is None:
        return [slice(0, len(index))]
    every = pd.Timedelta(every)
    local0 = index[0].tz_convert(tz).normalize()
    edges = pd.date_range(local0, index[-1].tz_convert(tz) + every, freq=every)
    cuts = np.unique(np.r_[0, np.searchsorted(index.asi8, edges.tz_convert("UTC").asi8), len(index)])
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
