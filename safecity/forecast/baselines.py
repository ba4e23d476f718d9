"""The two forecasts every other method must beat: the same hour a week before, and the usual hour of the week.

``SeasonalNaive`` and ``TimeOfWeekProfile`` return the forecast table (see
``safecity.forecast.table``) like ``GatheringForecaster``, so the backtest
and the dashboards treat them alike.
"""
from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from safecity.config.city import DEFAULT_CITY
from safecity.data.counts import hourly_counts
from safecity.data.time_features import TimeZone, shift_positions
from safecity.forecast.features import hour_of_week, pad_missing
from safecity.forecast.intervals import LEVELS, fit_residuals, residual_quantiles
from safecity.forecast.table import (QUANTILES, HOUR, asked_hours, check_quantiles, empty_forecast,
                                     forecast_hours, forecast_table, history_before, hour_grid, keep_asked,
                                     origin_of)



class SeasonalNaive(BaseEstimator):
    """The same local hour one week before: the forecast every other method must beat.

    Its median is exactly last week's count. Its other quantiles add the
    log-ratio errors it made over the last ``calibration_days`` of the fit
    (binned by level, as for the forecaster), so that its intervals can be
    compared too. Forecasts beyond seven days ahead are not made.
    """

    _parameter_constraints: dict = {
        "tz": [TimeZone()],
        "metric": [str],
        "calibration_days": [Interval(Integral, 1, None, closed="left")],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, tz: str = DEFAULT_CITY.tz, metric: str = "people_count",
                 calibration_days: int = 28, n_bins: int = 8):
        self.tz = tz
        self.metric = metric
        self.calibration_days = calibration_days
        self.n_bins = n_bins

    def fit(self, X: pd.DataFrame, y=None, *, calendar=None, sensors=None) -> "SeasonalNaive":
        """Learn the spread of last week's errors from the observations ``X`` (``calendar``, ``sensors`` unused)."""
        self._validate_params()
        wide = hourly_counts(X, self.metric)
        if wide.shape[1] == 0:
            raise ValueError(f"observations: no '{self.metric}' values")
        self.end_ = wide.index[-1] + HOUR
        wide = wide[wide.index >= self.end_ - pd.Timedelta(days=self.calibration_days + 8)]
        Y = wide.to_numpy(float)
        lag = pad_missing(Y)[shift_positions(wide.index, self.tz, 7)]
        recent = (wide.index >= self.end_ - pd.Timedelta(days=self.calibration_days))[:, None]
        ok = recent & np.isfinite(Y) & np.isfinite(lag)
        self.residual_edges_, self.residual_table_ = fit_residuals(
            np.log1p(lag[ok]), np.log1p(Y[ok]) - np.log1p(lag[ok]), self.n_bins)
        self.history_ = wide[wide.index >= self.end_ - pd.Timedelta(days=8)]
        return self

    def predict(self, X: pd.DataFrame, *, quantiles=QUANTILES, observations: pd.DataFrame | None = None,
                calendar=None) -> pd.DataFrame:
        """The forecast table of the hours of ``X``: q50 is the count one week before; hours without it are left out.

        ``observations`` brings newer counts than the fit (``calendar`` is unused).
        """
        check_is_fitted(self, "residual_table_")
        quantiles = check_quantiles(quantiles)
        origin, span = asked_hours(X)
        hist = history_before(observations, self.history_, origin, 8, self.metric)
        grid = hour_grid(origin - pd.Timedelta(days=8), origin + span)
        sensor_ids = hist.columns.to_numpy(dtype=object)
        lag = pad_missing(hist.reindex(grid).to_numpy(float))[shift_positions(grid, self.tz, 7)]
        first = grid.get_loc(origin)
        rows, cols = np.nonzero(np.isfinite(lag[first:]))
        rows = rows + first
        if len(rows) == 0:
            return empty_forecast(quantiles)
        point = lag[rows, cols]
        r = residual_quantiles(self.residual_edges_, self.residual_table_, np.log1p(point), quantiles)
        values = np.expm1(np.log1p(point)[:, None] + r)
        for j, q in enumerate(quantiles):  # the median is last week's count, exactly
            values[:, j] = point if q == 0.5 else \
                np.minimum(values[:, j], point) if q < 0.5 else np.maximum(values[:, j], point)
        return keep_asked(forecast_table(grid, rows, sensor_ids, cols, self.metric, origin, quantiles, values), X)



class TimeOfWeekProfile(BaseEstimator):
    """The usual count of each local hour of the week: quantiles of that hour over the history.

    ``weeks`` limits the history to the most recent weeks (None: all of it).
    The quantiles are those of the observed counts themselves, so the 80%
    interval is the range of eight usual weeks in ten.
    """

    _parameter_constraints: dict = {
        "tz": [TimeZone()],
        "metric": [str],
        "weeks": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, tz: str = DEFAULT_CITY.tz, metric: str = "people_count", weeks: int | None = None):
        self.tz = tz
        self.metric = metric
        self.weeks = weeks

    def fit(self, X: pd.DataFrame, y=None, *, calendar=None, sensors=None) -> "TimeOfWeekProfile":
        """Tabulate each sensor's counts in the observations ``X`` by local hour of the week."""
        self._validate_params()
        wide = hourly_counts(X, self.metric)
        if wide.shape[1] == 0:
            raise ValueError(f"observations: no '{self.metric}' values")
        self.end_ = wide.index[-1] + HOUR
        if self.weeks:
            wide = wide[wide.index >= self.end_ - pd.Timedelta(weeks=self.weeks)]
        how = hour_of_week(wide.index, self.tz)
        Y = wide.to_numpy(float)
        self.sensor_ids_ = wide.columns.to_numpy(dtype=object)
        table = np.full((168, len(LEVELS), Y.shape[1]), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sensor never seen at that hour
            for h in range(168):
                block = Y[how == h]
                if len(block):
                    table[h] = np.nanquantile(block, LEVELS, axis=0)
        self.table_ = table
        return self

    def predict(self, X: pd.DataFrame, *, quantiles=QUANTILES, observations=None, calendar=None) -> pd.DataFrame:
        """The forecast table of the hours of ``X`` (``observations``, ``calendar`` unused: the profile is fixed)."""
        check_is_fitted(self, "table_")
        quantiles = check_quantiles(quantiles)
        origin, span = asked_hours(X)
        grid = hour_grid(origin, origin + span)
        how = hour_of_week(grid, self.tz)
        table = self.table_[how]  # hours x levels x sensors
        per_q = []
        for q in quantiles:
            k = q * (len(LEVELS) - 1)
            lo, frac = int(np.floor(k)), k - np.floor(k)
            hi = min(lo + 1, len(LEVELS) - 1)
            per_q.append(table[:, lo, :] * (1 - frac) + table[:, hi, :] * frac)
        values = np.stack(per_q, axis=-1)  # hours x sensors x quantiles
        rows, cols = np.nonzero(np.isfinite(values).all(axis=-1))
        if len(rows) == 0:
            return empty_forecast(quantiles)
        return keep_asked(forecast_table(grid, rows, self.sensor_ids_, cols, self.metric, origin, quantiles,
                                         values[rows, cols]), X)



def seasonal_naive(history: pd.DataFrame, start, horizon: str = "24h", quantiles=QUANTILES,
                   tz: str = DEFAULT_CITY.tz, metric: str = "people_count") -> pd.DataFrame:
    """Forecast table of the same local hour one week before (see ``SeasonalNaive``)."""
    past = history[pd.to_datetime(history["ts"], utc=True) < origin_of(start, None)]
    return SeasonalNaive(tz=tz, metric=metric).fit(past).predict(forecast_hours(start, horizon),
                                                                 quantiles=quantiles)



def time_of_week_profile(history: pd.DataFrame, start, horizon: str = "24h", quantiles=QUANTILES,
                         tz: str = DEFAULT_CITY.tz, metric: str = "people_count",
                         weeks: int | None = None) -> pd.DataFrame:
    """Forecast table of the usual value of each hour of the week (see ``TimeOfWeekProfile``)."""
    past = history[pd.to_datetime(history["ts"], utc=True) < origin_of(start, None)]
    return TimeOfWeekProfile(tz=tz, metric=metric, weeks=weeks).fit(past).predict(
        forecast_hours(start, horizon), quantiles=quantiles)

