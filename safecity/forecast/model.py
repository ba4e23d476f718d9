"""Forecast hourly counts per sensor or zone one to seven days ahead, with intervals.

A planner needs to know on Monday that Saturday night will crowd the Vieux-Port,
and how sure we are. ``GatheringForecaster`` is a scikit-learn estimator that
learns, from the counts and the city's calendar, the next hours' counts of
every sensor (or zone) as quantiles, in the forecast table
(``safecity.forecast.table``). Its features are in ``safecity.forecast.features``;
the baselines it must beat in ``safecity.forecast.baselines``; the alerts that
turn its upper quantile into ``gathering_forecast`` events in
``safecity.forecast.alerts``; its backtest in ``safecity.evaluation.forecasts``.

How the forecaster works, and why:
* Direct model. Every feature is known for every hour of the horizon at the
  origin, so one model serves hour 1 and hour 24 alike and nothing is fed
  back (see ``safecity.forecast.features``).
* One global model for all sensors, on normalised targets: the target is
  ``log1p(count) - log1p(level)`` where the level is the median of the four
  weekly lags. Sensors a hundred times apart share what they learn (a public
  holiday halves a commuter street whatever its size), a sensor added last
  month is forecast with what the others taught, and the log makes the error
  relative. ``HistGradientBoostingRegressor`` with the absolute error (a
  median, which the MAE rewards) handles the missing lags natively.
* Events in a second stage. An hour is an event hour for a sensor when an
  event is under way near it (from ``EVENT_BEFORE_H`` before the start to
  ``EVENT_AFTER_H`` after the end, weighted by exp(-(d / event_radius_m)^2)
  of the distance to the venue; an event without lon/lat concerns every
  sensor). The usual-hour model learns from the other hours only, so on an
  event hour it says what the hour would have been without the event; a
  second, small model learns the event's excess over it from the event
  hours (attendance near the sensor, relative to the sensor's level, hours
  since the start and until the end, and every usual feature). A match
  twice a month gives a few dozen such hours: in one model they would be
  too few to earn a split, and the forecast would not move. Public holidays
  go to the second stage too (``holiday_stage``): a city has a dozen a
  year, each its own kind of day, and the calibration month rarely holds
  one, so only the second stage's out-of-fold errors give them honest
  intervals (on the Melbourne validation period, holiday hours were covered
  59% of the time by the 80% interval without it, 83% with it).
* Intervals by split conformal calibration: the usual-hour model is fitted
  on the history minus its last ``calibration_days``; its errors on those
  days, grouped by the predicted level (a night hour of 5 people is
  relatively far less certain than a noon of 3,000), give the quantiles:
  the errors of a forecast made exactly as at prediction time, on the most
  recent days, so the 80% interval covers about 80% as long as the next
  weeks resemble the last ones. Event hours get their own errors: the
  event model's out-of-fold errors (folds by local day, so by event) and
  the event hours of the calibration days, because an event is less
  predictable than a Tuesday.
* Missing hours stay missing (never zero): a lag that was not observed is
  missing for the model, the level is the median of the weekly lags that
  exist, and a sensor is only forecast while it reports (some count in
  the week before the origin: a sensor out of service is not forecast);
  without any weekly lag its level falls back to its usual value of that
  hour of the week.

Times: hours are UTC; lags are taken in local wall-clock time (``tz``) so
that "the same hour one week before" stays right across a change of clocks.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from safecity.config.city import DEFAULT_CITY
from safecity.data.counts import hourly_counts, sensor_positions
from safecity.data.time_features import HOLIDAYS_AHEAD_DAYS, Duration, TimeZone, with_holidays
from safecity.forecast.features import EVENT_FEATURES, WEEK_LAGS, hour_of_week, context, design, weekly_level
from safecity.forecast.intervals import fit_residuals, residual_quantiles
from safecity.forecast.table import (QUANTILES, HOUR, asked_hours, check_quantiles, empty_forecast,
                                     forecast_table, history_before, hour_grid, keep_asked)

#: Fewer event hours than this in the history: events are not modelled (too few to learn from).
MIN_EVENT_ROWS = 30

#: The event model is small: a few dozen event hours must not be memorised.
EVENT_MODEL = {"min_samples_leaf": 5, "max_leaf_nodes": 8, "max_iter": 100}

#: ... and learns from at most this many event hours, drawn at random (unless
#: ``max_samples`` is None). Holidays count at every sensor: 500 sensors' two years
#: hold 330,000 event and holiday hours (bench/forecast.py), and the event model's
#: six fits (five out of fold) on all of them took three times the usual-hour
#: model's. Melbourne's 21 sensors hold 25,000.
MAX_EVENT_ROWS = 50_000



NO_LEVEL = ("observations: no hour has a count one to four weeks before; "
            "at least eight days of history are needed")


@dataclass
class Split:
    """The hours the fit calibrates on (from ``calibration_start``) and learns from (from ``train_start``)."""

    calibration_start: pd.Timestamp
    train_start: pd.Timestamp | None


@dataclass
class FitRows:
    """Design rows of sampled sensor-hours, with the count, the weekly level, the hour (ns UTC), the event flag."""

    X: np.ndarray
    count: np.ndarray
    level: np.ndarray
    hour: np.ndarray
    near_event: np.ndarray
    names: list[str]


@dataclass
class SensorHours:
    """Some sensors' hours as the fit reads them: counts ``Y`` (hours x sensors), context, weekly level,
    and the candidate points (observed, with a level) in time-major order, with their event flags."""

    grid: pd.DatetimeIndex
    Y: np.ndarray
    ctx: dict
    base: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    near_event: np.ndarray

    def span(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The first and last candidate hours (None: no candidate)."""
        if not len(self.rows):
            return None
        return self.grid[self.rows.min()], self.grid[self.rows.max()]

    def kinds(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate point: is it a training hour, a calibration hour."""
        t = self.grid[self.rows]
        is_cal = t >= split.calibration_start
        is_train = ~is_cal
        if split.train_start is not None:
            is_train &= t >= split.train_start
        return np.asarray(is_train), np.asarray(is_cal)

    def rows_at(self, index: np.ndarray, day_lags) -> FitRows:
        """The design rows of the candidate points at ``index``."""
        r, c = self.rows[index], self.cols[index]
        X, names = design(self.Y, self.ctx, self.base, r, c, day_lags)
        return FitRows(X, self.Y[r, c], self.base[r, c], self.grid.asi8[r], self.near_event[index], names)


@dataclass
class ForecastPoints:
    """The sensor-hours a forecast is made for (``rows``, ``cols`` of ``grid`` x ``sensor_ids``), their
    design rows (None: no point), log levels and event flags; ``asked`` is the ``X`` of ``predict``."""

    asked: pd.DataFrame
    origin: pd.Timestamp
    grid: pd.DatetimeIndex
    sensor_ids: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    X: np.ndarray | None
    log_base: np.ndarray
    near_event: np.ndarray


class GatheringForecaster(BaseEstimator):
    """Hourly counts per sensor (or zone) for the next hours or days, as quantiles.

    Parameters
    ----------
    horizon : the longest lead the model serves ("1h" .. "7D"); lags shorter
        than it are not used, so a longer horizon gives a less sharp model.
    tz : the city's time zone (local hours, days of week, holidays).
    metric : the observations' metric to forecast.
    country, subdiv : public holidays from the ``holidays`` package (None: none).
    school_zone : French school-holiday zone ("B" is Marseille; None: none).
    event_radius_m : an event's crowd is weighted by exp(-(d / radius)^2) at a
        sensor d metres from the venue; events without lon/lat concern every sensor.
    roadworks_radius_m : the same for roadworks.
    history_days : days of history the model learns from (None: all), before
        the calibration days. All by default: each year adds its holidays and
        events, and the fit stays bounded by ``max_samples`` (its ordinary rows
        are drawn from the whole history).
    calibration_days : the most recent days, held out to calibrate the intervals.
    max_samples : ordinary rows (sensor-hours) drawn at random to fit and to
        calibrate, for speed; event hours are all kept, and the event model
        learns from at most ``MAX_EVENT_ROWS`` of them (None: every row, everywhere).
    loss, max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization :
        passed to the usual-hour ``HistGradientBoostingRegressor`` (the event
        model is a small one, ``EVENT_MODEL``).
    n_bins : number of predicted-level bins the interval widths are calibrated in.
    random_state : seed of the row sampling and of the models.
    holiday_stage : public-holiday hours are learnt by the second stage with
        the event hours (the usual-hour model learns from the other hours) and
        get the second stage's intervals.

    Attributes
    ----------
    model_ : the usual-hour model (log-ratio of the count to the weekly level).
    event_model_ : the event-excess model (events and, with ``holiday_stage``,
        public holidays), or None when the history holds fewer than
        ``MIN_EVENT_ROWS`` such hours on two days or more.
    feature_names_ : the features, in order (``n_features_in_`` their count);
        ``model_`` reads all but ``EVENT_FEATURES``, ``event_model_`` those
        at ``event_columns_``; ``unseen_features_`` marks those never observed
        in fit (set to 0).
    day_lags_ : the daily lags (days) the model uses besides the weekly ones.
    residual_edges_, residual_table_ : interval calibration of ordinary hours
        (predicted-level bins, residual quantiles on a 0.5% grid);
        ``event_residual_edges_``, ``event_residual_table_`` the same for event hours.
    profile_ : usual value per local hour of the week and sensor (168 x sensors), the fallback level.
    sensor_ids_, sensor_lonlat_ : sensors seen in fit and their positions (NaN: unknown).
    history_ : the last weeks of hourly counts, the lags of a forecast from ``end_``.
    calendar_ : the calendar used (the analyst's plus holidays).
    end_ : the hour after the last observation.
    n_train_, n_calibration_, n_event_rows_ : rows used to fit, to calibrate, and event hours in fit.
    n_event_model_rows_ : the event hours the event model learnt from (at most ``MAX_EVENT_ROWS``).
    """

    _parameter_constraints: dict = {
        "horizon": [Duration("1h", "7D")],
        "tz": [TimeZone()],
        "metric": [str],
        "country": [str, None],
        "subdiv": [str, None],
        "school_zone": [StrOptions({"A", "B", "C"}), None],
        "event_radius_m": [Interval(Real, 0, None, closed="neither")],
        "roadworks_radius_m": [Interval(Real, 0, None, closed="neither")],
        "history_days": [Interval(Integral, 1, None, closed="left"), None],
        "calibration_days": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_leaf_nodes": [Interval(Integral, 2, None, closed="left")],
        "min_samples_leaf": [Interval(Integral, 1, None, closed="left")],
        "l2_regularization": [Interval(Real, 0, None, closed="left")],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "loss": [StrOptions({"absolute_error", "squared_error", "poisson", "gamma"})],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
        "holiday_stage": ["boolean"],
    }

    def __init__(self, horizon: str = "24h", tz: str = DEFAULT_CITY.tz, metric: str = "people_count",
                 country: str | None = DEFAULT_CITY.country, subdiv: str | None = DEFAULT_CITY.subdiv,
                 school_zone: str | None = DEFAULT_CITY.school_zone,
                 event_radius_m: float = 1000.0, roadworks_radius_m: float = 300.0,
                 history_days: int | None = None, calibration_days: int = 28,
                 max_samples: int | None = 200_000, max_iter: int = 300, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 63, min_samples_leaf: int = 50, l2_regularization: float = 1.0,
                 n_bins: int = 8, loss: str = "absolute_error", random_state: int | None = 0,
                 holiday_stage: bool = True):
        self.horizon = horizon
        self.tz = tz
        self.metric = metric
        self.country = country
        self.subdiv = subdiv
        self.school_zone = school_zone
        self.event_radius_m = event_radius_m
        self.roadworks_radius_m = roadworks_radius_m
        self.history_days = history_days
        self.calibration_days = calibration_days
        self.max_samples = max_samples
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_bins = n_bins
        self.loss = loss
        self.random_state = random_state
        self.holiday_stage = holiday_stage

    # ------------------------------------------------------------------ fit

    def fit(self, X: pd.DataFrame, y=None, *, calendar: pd.DataFrame | None = None,
            sensors: pd.DataFrame | None = None) -> "GatheringForecaster":
        """Learn from the observations ``X`` (and the ``calendar``; ``sensors`` gives positions for events).

        ``sensors`` is any table with sensor_id, lon, lat (the sensors table,
        or the zones of ``aggregate_zones``); without it every event concerns
        every sensor. ``y`` is unused: the counts are the target.

        The steps are those a cluster takes block of sensors by block
        (``safecity.cluster.forecasts``): ``start_fit`` (hours, sensors,
        calendar), ``sensor_hours`` (a block's levels and candidate points),
        ``split`` and ``draw`` (the sample, over all sensors), ``SensorHours.rows``
        (the design rows drawn) and ``fit_rows`` (boosters and intervals).
        """
        self._validate_params()
        wide = hourly_counts(X, self.metric)
        if wide.shape[1] == 0 or wide.notna().sum().sum() == 0:
            raise ValueError(f"observations: no '{self.metric}' values to learn from")
        end = wide.index[-1] + HOUR
        wide = wide[wide.index >= self.window_start(end)]
        wide = wide.loc[:, wide.notna().any()]
        self.start_fit(end, wide.index, wide.columns.to_numpy(dtype=object), calendar, sensors)
        Y = wide.to_numpy(float)
        hours = self.sensor_hours(Y, wide.index, self.sensor_lonlat_)
        span = hours.span()
        if span is None:
            raise ValueError(NO_LEVEL)
        split = self.split(*span)
        is_train, is_cal = hours.kinds(split)
        near_event = hours.near_event
        # Event hours are rare and decisive: all are kept, the other hours sampled.
        ordinary_train, ordinary_cal = np.nonzero(is_train & ~near_event)[0], np.nonzero(is_cal & ~near_event)[0]
        drawn_train, drawn_cal = self.draw(len(ordinary_train), len(ordinary_cal))
        train = np.union1d(ordinary_train[drawn_train], np.nonzero(is_train & near_event)[0])
        calib = np.union1d(ordinary_cal[drawn_cal], np.nonzero(is_cal & near_event)[0])
        self.fit_rows(hours.rows_at(train, self.day_lags_), hours.rows_at(calib, self.day_lags_))
        self.profile_ = weekly_profile(Y, wide.index, self.tz)
        self.history_ = wide[wide.index >= self.history_start()]
        return self

    def window_start(self, end: pd.Timestamp) -> pd.Timestamp:
        """The first hour a fit ending at ``end`` reads: history, calibration days and the lags before them."""
        keep_days = (self.history_days or 10**5) + self.calibration_days + WEEK_LAGS[-1] + 1
        return end - pd.Timedelta(days=keep_days)

    def history_start(self) -> pd.Timestamp:
        """The first hour of ``history_``: the lags of a forecast from ``end_``."""
        return self.end_ - pd.Timedelta(days=WEEK_LAGS[-1] + 1)

    def start_fit(self, end: pd.Timestamp, grid: pd.DatetimeIndex, sensor_ids: np.ndarray,
                  calendar: pd.DataFrame | None, sensors: pd.DataFrame | None) -> None:
        """What the whole fit shares: the hours (``grid``), the sensors (sorted ids), their positions, the calendar."""
        self.end_ = end
        self.day_lags_ = tuple(d for d in range(1, 7) if pd.Timedelta(days=d) >= pd.Timedelta(self.horizon))
        self.sensor_ids_ = np.asarray(sensor_ids, dtype=object)
        self.sensor_lonlat_ = sensor_positions(sensors, self.sensor_ids_)
        self.calendar_ = with_holidays(calendar, grid[0] - pd.Timedelta(days=35),
                                        self.end_ + pd.Timedelta(days=HOLIDAYS_AHEAD_DAYS), self.tz,
                                        self.country, self.subdiv, self.school_zone)

    def sensor_hours(self, Y: np.ndarray, grid: pd.DatetimeIndex, lonlat: np.ndarray) -> SensorHours:
        """Some sensors' counts (hours x sensors on ``grid``) with their levels, context and candidate points.

        Nothing here mixes sensors: a block of sensors gives the columns the
        whole city would.
        """
        ctx = self._context(grid, self.calendar_, lonlat)
        base = self._level(Y, ctx)
        # Candidate points: observed, with a level.
        rows, cols = np.nonzero(np.isfinite(Y) & np.isfinite(base))
        near_event = self._unusual(ctx, rows, cols)
        return SensorHours(grid, Y, ctx, base, rows, cols, near_event)

    def split(self, first: pd.Timestamp, last: pd.Timestamp) -> Split:
        """Calibration and training hours, from the first and last candidate hours of all sensors."""
        span_days = (last - first) / pd.Timedelta(days=1)
        cal_days = min(float(self.calibration_days), max(1.0, span_days / 4))
        train_start = self.end_ - pd.Timedelta(days=cal_days + self.history_days) if self.history_days else None
        return Split(self.end_ - pd.Timedelta(days=cal_days), train_start)

    def draw(self, n_train: int, n_calibration: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions, among the ordinary (no event) candidate points of the training and of the
        calibration hours in time-major order (hour, then sensor in sorted id order), of those kept."""
        rng = np.random.default_rng(self.random_state)
        train = _sample(np.arange(n_train), self.max_samples, rng)
        return train, _sample(np.arange(n_calibration), self.max_samples, rng)

    def fit_rows(self, train: FitRows, calib: FitRows) -> None:
        """Fit the two models on the training rows and calibrate the intervals on the calibration rows.

        Both in time-major order (hour, then sensor in sorted id order), as the
        sample of one process: the boosters' sums depend on the rows' order.
        """
        X, names = train.X, train.names
        self.feature_names_ = names
        self.n_features_in_ = len(names)
        # A feature never observed in fit (the 28-day lag of a 3-week history) is
        # set to 0 in fit and predict alike: the model cannot learn what it never saw.
        self.unseen_features_ = np.isnan(X).all(axis=0)
        X[:, self.unseen_features_] = 0.0
        target = np.log1p(train.count) - np.log1p(train.level)
        on_event = train.near_event

        # Stage 1, the usual hour: learnt from hours without an event nearby, so
        # that on an event hour it says what the hour would have been without it.
        usual = self._columns(names, EVENT_FEATURES, keep=False)
        self.model_ = self._booster(min_samples_leaf=self.min_samples_leaf,
                                    max_leaf_nodes=self.max_leaf_nodes, max_iter=self.max_iter) \
            .fit(X[~on_event][:, usual], target[~on_event])

        # Stage 2, the event: the excess of event hours over what stage 1 says.
        # Its errors for the intervals are out of fold (folds by local day, so
        # by event): with a few events, in-sample errors would promise far too much.
        self.event_model_, self.event_columns_ = None, []
        self.n_event_model_rows_ = 0
        event_errors, event_levels = np.array([]), np.array([])
        if on_event.sum() >= MIN_EVENT_ROWS:
            event_rows = np.flatnonzero(on_event)
            if self.max_samples is not None:
                event_rows = _sample(event_rows, MAX_EVENT_ROWS, np.random.default_rng(self.random_state))
            Xe = X[event_rows]
            usual_e = self.model_.predict(Xe[:, usual])
            excess = target[event_rows] - usual_e
            # Every feature, lags included: how much an event adds depends on the
            # usual hour too. A feature missing on every event hour is left out.
            self.event_columns_ = [i for i in range(len(names)) if not np.isnan(Xe[:, i]).all()]
            uplift = self.event_columns_
            days = np.asarray(pd.to_datetime(train.hour[event_rows], utc=True).tz_convert(self.tz).normalize().asi8)
            if len(np.unique(days)) >= 2:
                from sklearn.model_selection import GroupKFold, cross_val_predict

                k = min(5, len(np.unique(days)))
                oof = cross_val_predict(self._booster(**EVENT_MODEL), Xe[:, uplift], excess,
                                        groups=days, cv=GroupKFold(n_splits=k))
                self.event_model_ = self._booster(**EVENT_MODEL).fit(Xe[:, uplift], excess)
                self.n_event_model_rows_ = len(event_rows)
                event_errors = excess - oof
                event_levels = np.log1p(train.level[event_rows]) + usual_e + oof

        Xc = calib.X
        if self.unseen_features_.any():
            Xc[:, self.unseen_features_] = 0.0
        level = self._log_forecast(Xc, np.log1p(calib.level), calib.near_event)
        residual = np.log1p(calib.count) - level
        cal_event = calib.near_event
        self.residual_edges_, self.residual_table_ = fit_residuals(
            level[~cal_event], residual[~cal_event], self.n_bins)
        if self.event_model_ is not None:
            self.event_residual_edges_, self.event_residual_table_ = fit_residuals(
                np.r_[event_levels, level[cal_event]], np.r_[event_errors, residual[cal_event]],
                self.n_bins)
        else:
            self.event_residual_edges_, self.event_residual_table_ = \
                self.residual_edges_, self.residual_table_
        self.n_train_, self.n_calibration_ = len(X), len(Xc)
        self.n_event_rows_ = int(on_event.sum())

    # ------------------------------------------------------------------ predict

    def predict(self, X: pd.DataFrame, *, quantiles=QUANTILES, observations: pd.DataFrame | None = None,
                calendar: pd.DataFrame | None = None) -> pd.DataFrame:
        """The forecast table of the hours (and sensors) of ``X``, issued at its first hour.

        ``X`` has a ``ts`` column of whole UTC hours and optionally ``sensor_id``
        (``forecast_hours(start, horizon)`` builds it; ``end_`` is the hour
        after the fitted history); its span may not exceed the model's horizon.
        ``observations`` brings newer counts than the fit (only those before the
        origin are read); ``calendar`` replaces the fitted one (say, with an
        event announced since), holidays being added again.
        """
        check_is_fitted(self, "model_")
        quantiles = check_quantiles(quantiles)
        return self.forecast_at(self.forecast_points(X, observations=observations, calendar=calendar), quantiles)

    def forecast_points(self, X: pd.DataFrame, *, observations: pd.DataFrame | None = None,
                        calendar: pd.DataFrame | None = None) -> ForecastPoints:
        """The sensor-hours ``predict`` forecasts, with their design rows (see ``predict``)."""
        check_is_fitted(self, "model_")
        asked = X  # the design matrix takes the name X below
        origin, span = asked_hours(asked)
        if span > pd.Timedelta(self.horizon):
            raise ValueError(f"X asks for {span} from its first hour, longer than the model's horizon "
                             f"({self.horizon!r}); fit a model with a longer horizon")
        lookback = WEEK_LAGS[-1] + 1
        hist = history_before(observations, self.history_, origin, lookback, self.metric)
        sensor_ids = np.array(sorted(set(self.sensor_ids_) | set(map(str, hist.columns))), dtype=object)
        grid = hour_grid(origin - pd.Timedelta(days=lookback), origin + span)
        Y = hist.reindex(index=grid, columns=sensor_ids).to_numpy(float)
        cal = self.calendar_ if calendar is None else calendar
        if calendar is not None or grid[-1] >= self.end_ + pd.Timedelta(days=HOLIDAYS_AHEAD_DAYS):
            cal = with_holidays(cal, grid[0], grid[-1] + HOUR, self.tz, self.country,
                                 self.subdiv, self.school_zone)
        lonlat = sensor_positions(None, sensor_ids, self.sensor_ids_, self.sensor_lonlat_)
        ctx = self._context(grid, cal, lonlat)
        base = self._level(Y, ctx)

        first = grid.get_loc(origin)
        # A sensor is forecast while it reports: some count in the week before the origin.
        active = np.isfinite(Y[first - 7 * 24:first]).any(axis=0)
        profile = self._profile_for(sensor_ids, hour_of_week(grid, self.tz))
        base = np.where(np.isfinite(base), base, profile)
        rows, cols = np.nonzero(np.isfinite(base[first:]) & active[None, :])
        rows = rows + first
        X = None
        if len(rows):
            X, _ = self._design(Y, ctx, base, rows, cols)
        near_event = self._unusual(ctx, rows, cols)
        return ForecastPoints(asked, origin, grid, sensor_ids, rows, cols, X, np.log1p(base[rows, cols]),
                              near_event)

    def seen_columns(self, points: ForecastPoints) -> tuple[np.ndarray, np.ndarray]:
        """Which columns each model reads are observed (not all NaN) at these points: several blocks of
        sensors forecast one hour together when their models fill the same columns (``forecast_at``)."""
        usual = self._columns(self.feature_names_, EVENT_FEATURES, keep=False)
        if points.X is None:
            return np.zeros(len(usual), bool), np.zeros(len(self.event_columns_), bool)
        near = points.X[points.near_event][:, self.event_columns_]
        return ~np.isnan(points.X[:, usual]).all(axis=0), ~np.isnan(near).all(axis=0)

    def forecast_at(self, points: ForecastPoints, quantiles=QUANTILES,
                    empty: tuple[np.ndarray, np.ndarray] | None = None) -> pd.DataFrame:
        """The forecast table of ``points``.

        Each model sets a column it reads that is missing at all the points to
        0 (as in fit); ``empty`` (usual model's, event model's) says which are
        missing at all points of a forecast made in several blocks of sensors.
        """
        quantiles = check_quantiles(quantiles)
        if points.X is None:
            return empty_forecast(quantiles)
        level = self._log_forecast(points.X, points.log_base, points.near_event, empty)
        near_event = points.near_event
        r = residual_quantiles(self.residual_edges_, self.residual_table_, level, quantiles)
        if near_event.any():
            r[near_event] = residual_quantiles(self.event_residual_edges_, self.event_residual_table_,
                                                level[near_event], quantiles)
        values = np.expm1(level[:, None] + r)
        return keep_asked(forecast_table(points.grid, points.rows, points.sensor_ids, points.cols, self.metric,
                                         points.origin, quantiles, values), points.asked)

    # ------------------------------------------------------------------ model

    def _booster(self, min_samples_leaf: int, max_leaf_nodes: int, max_iter: int):
        # A feature missing everywhere (no venue, no roadworks in a small city) would
        # crash scikit-learn's binning (1.9): it carries nothing, so it becomes a constant.
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer

        return make_pipeline(FunctionTransformer(_fill_empty_columns), HistGradientBoostingRegressor(
            loss=self.loss, max_iter=max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=max_leaf_nodes, min_samples_leaf=min_samples_leaf,
            l2_regularization=self.l2_regularization, early_stopping=False,
            random_state=self.random_state))

    @staticmethod
    def _columns(names: list[str], which: Sequence[str], keep: bool = True) -> list[int]:
        return [i for i, n in enumerate(names) if (n in which) == keep]

    def _log_forecast(self, X: np.ndarray, log_base: np.ndarray, near_event: np.ndarray,
                      empty: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """log1p of the median forecast: the usual hour, plus the event's excess near an event."""
        names = self.feature_names_
        usual = X[:, self._columns(names, EVENT_FEATURES, keep=False)]
        level = log_base + _predict(self.model_, usual, None if empty is None else empty[0])
        if self.event_model_ is not None and near_event.any():
            level[near_event] += _predict(self.event_model_, X[near_event][:, self.event_columns_],
                                          None if empty is None else empty[1])
        return level

    # ------------------------------------------------------------------ features

    def _context(self, grid: pd.DatetimeIndex, calendar: pd.DataFrame, lonlat: np.ndarray) -> dict:
        return context(grid, calendar, lonlat, tz=self.tz, day_lags=self.day_lags_,
                       event_radius_m=self.event_radius_m, roadworks_radius_m=self.roadworks_radius_m)

    def _unusual(self, ctx: dict, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The points of the second stage: near an event, and on a public holiday with ``holiday_stage``."""
        out = np.zeros(len(rows), bool) if ctx["ev_n"] is None else ctx["ev_n"][rows, cols] > 0
        if self.holiday_stage:
            out |= ctx["public_holiday"][rows] > 0
        return out

    def _level(self, Y: np.ndarray, ctx: dict) -> np.ndarray:
        return weekly_level(Y, ctx)

    def _design(self, Y, ctx, base, rows, cols) -> tuple[np.ndarray, list[str]]:
        return design(Y, ctx, base, rows, cols, self.day_lags_, getattr(self, "unseen_features_", None))

    def _profile_for(self, sensor_ids: np.ndarray, how: np.ndarray) -> np.ndarray:
        known = {s: i for i, s in enumerate(self.sensor_ids_)}
        out = np.full((len(how), len(sensor_ids)), np.nan)
        for j, s in enumerate(sensor_ids):
            if s in known:
                out[:, j] = self.profile_[how, known[s]]
        return out



def _predict(model, X: np.ndarray, empty: np.ndarray | None) -> np.ndarray:
    """``model.predict(X)``; with ``empty``, those columns are the ones set to 0 (``_fill_empty_columns``)."""
    if empty is None:
        return model.predict(X)
    X = np.array(X, dtype=float)
    X[:, empty] = 0.0
    return model[-1].predict(X)



def weekly_profile(Y: np.ndarray, grid: pd.DatetimeIndex, tz: str) -> np.ndarray:
    """Each sensor's median count per local hour of the week (168 x sensors): the level a sensor falls back on."""
    how = hour_of_week(grid, tz)
    return pd.DataFrame(Y, index=how).groupby(level=0).median().reindex(range(168)).to_numpy()



def _sample(index: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or len(index) <= n:
        return index
    return np.sort(rng.choice(index, size=n, replace=False))



def _fill_empty_columns(X: np.ndarray) -> np.ndarray:
    """``X`` with every all-NaN column set to 0 (a copy only when there is one)."""
    X = np.asarray(X, dtype=float)
    empty = np.isnan(X).all(axis=0) if len(X) else np.zeros(X.shape[1], bool)
    if not empty.any():
        return X
    X = X.copy()
    X[:, empty] = 0.0
    return X

