"""Calibrated alarms: thresholds solved so that a replay of the last days of the history has the target rate.

``threshold_`` is solved so that alarm periods per sensor-day equal ``rate``
when the last ``calibration_days`` of the history are replayed as they would
have run live (a model fitted on the days before, on a sample of sensors,
updated by ``partial_fit`` every ``update_every``); each group's share
threshold the same way at ``group_rate``. Known calendar events are left out
of the calibration days, as they are not the usual situation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from safecity.baseline.alarms import (
    MIN_GROUP_SHARE,
    gaussian_threshold,
    group_shares,
    n_group_periods,
    n_periods,
    solve_threshold,
)
from safecity.baseline.grid import Bins
from safecity.baseline.replay import replay_live


def calibrate(model, index: pd.DatetimeIndex, Y: np.ndarray, bins: Bins) -> None:
    """Solve ``threshold_`` and the group thresholds on a replay of the last days of the history.

    The replay runs on a private model of a sample of the sensors, fitted on
    the days before: ``model`` only receives the thresholds.
    """
    start = calibration_start(model, bins)
    if start is None:
        solve_thresholds(model, None, np.array([], dtype=object))
        return
    sample = calibration_sample(model.random_state, Y.shape[0], model.max_calibration_sensors)
    z = calibration_scores(model, index, Y, bins, sample, start)
    solve_thresholds(model, z, model.sensor_ids_[sample])


def calibration_start(model, bins: Bins) -> int | None:
    """First bin of the calibration days (the last ``calibration_days``, at most half the days); None: none."""
    days = np.unique(bins.day)
    n_cal = min(int(model.calibration_days), len(days) // 2)
    if n_cal < 1:
        return None
    return int(np.searchsorted(bins.day, days[-n_cal]))


def calibration_sample(random_state, n_sensors: int, max_sensors: int) -> np.ndarray:
    """Rows (sorted) of the sensors the calibration replays: all of them, or a seeded draw of ``max_sensors``."""
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_sensors, size=min(n_sensors, max_sensors), replace=False))


def calibration_scores(model, index: pd.DatetimeIndex, Y: np.ndarray, bins: Bins, sample: np.ndarray,
                       start: int) -> np.ndarray:
    """Scores of the calibration days for ``sample`` rows of ``Y``, replayed live; known events are NaN.

    Each row's scores depend on that sensor's values, the grid and the calendar
    only: a cluster computes them where each sensor's rows are.
    """
    sub = type(model)(**model.get_params())
    _setup_from(sub, model, sample)
    head = Bins(index[:start], bins.day_type[:start], bins.dow[:start], bins.slot[:start],
                 bins.hour[:start], bins.weekend[:start], bins.day[:start])
    sub.day_types_ = tuple(int(t) for t in np.unique(head.day_type))
    rows = np.arange(len(sample))
    sub._learn(index[:start], Y[sample, :start], head, sub._event_mask(index[:start], rows))
    tail = pd.DataFrame(Y[sample, start:].T, index=index[start:], columns=sub.sensor_ids_)
    z = replay_live(sub, tail).z
    # Known events are not normal data: they are left out of the calibration days.
    for span, near in sub._event_mask(index[start:], rows):
        z[np.nonzero(near)[0][:, None], np.arange(span.start, span.stop)[None, :]] = np.nan
    return z


def solve_thresholds(model, z: np.ndarray | None, sample_ids: np.ndarray) -> None:
    """``threshold_`` and the group thresholds from the calibration scores ``z`` of ``sample_ids`` (None: none)."""
    bins_per_day = model.slots_per_day_
    group_rate = model.rate if model.group_rate is None else model.group_rate
    model.threshold_ = gaussian_threshold(model.rate, bins_per_day)
    model.group_threshold_ = {}
    model.realised_rate_ = np.nan
    model.group_realised_rate_ = {}
    model.calibration_sensor_days_ = 0.0
    model.calibrated_ = False
    if z is None:
        return
    sensor_days = np.isfinite(z).sum() / bins_per_day
    if sensor_days <= 0:
        return
    gap = model._gap()
    floor = model.threshold_
    model.threshold_ = solve_threshold(lambda t: n_periods(z, t, gap) / sensor_days, model.rate, floor, 1000.0)
    model.realised_rate_ = n_periods(z, model.threshold_, gap) / sensor_days
    model.calibration_sensor_days_ = float(sensor_days)
    model.calibrated_ = True
    # Groups: each on its own sampled members.
    pos = {s: i for i, s in enumerate(sample_ids)}
    for name, members in model._all_groups().items():
        idx = [pos[m] for m in members if m in pos]
        if len(idx) < model.min_group_sensors:
            continue
        up, down, n_obs = group_shares(z[idx], model.group_z, model.min_group_sensors)
        group_days = np.isfinite(up).sum() / bins_per_day
        if group_days <= 0:
            continue

        def rate_at(tau, up=up, down=down, group_days=group_days):
            return n_group_periods(up, down, tau, gap) / group_days

        tau = solve_threshold(rate_at, group_rate, MIN_GROUP_SHARE, 1.0)
        model.group_threshold_[name] = float(tau)
        model.group_realised_rate_[name] = float(rate_at(tau))


def _setup_from(model, parent, sample: np.ndarray) -> None:
    """A calibration model on a sample of the parent's sensors, sharing its calendar and sensors."""
    model.freq_ = parent.freq_
    model.slots_per_day_ = parent.slots_per_day_
    model.sensor_ids_ = parent.sensor_ids_[sample]
    model.sensor_lonlat_ = parent.sensor_lonlat_[sample]
    model.groups_ = {}
    model.calendar_ = parent.calendar_
    model.calendar_start_ = parent.calendar_start_
    model.calendar_end_ = parent.calendar_end_
