"""Forecast hourly counts per sensor or zone one to seven days ahead, with intervals, and warn of gatherings.

A planner needs to know on Monday that Saturday night will crowd the Vieux-Port,
and how sure we are. ``GatheringForecaster`` is a scikit-learn estimator that
learns, from the counts and the city's calendar, the next hours' counts of
every sensor (or zone) as quantiles; ``gathering_alerts`` turns the upper
quantile into ``gathering_forecast`` events where it crosses a zone's capacity
or an analyst's threshold; ``backtest`` scores the forecaster against two
baselines (``SeasonalNaive``: the same hour one week before;
``TimeOfWeekProfile``: the usual value of that hour of the week) on a rolling
origin, as an analyst would run it before trusting it.

The forecast table (every method returns it, so that the backtest and the
dashboards treat them alike), one row per sensor and hour:
    ts (UTC start of the hour), sensor_id, metric, origin (when the forecast
    was issued: it uses no observation at or after it), and one column per
    quantile, named ``q`` + the percentile: ``q10``, ``q50``, ``q90`` (``q2.5``
    for 0.025). Quantile columns never cross (they are sorted per row).

How the forecaster works, and why:
* Direct model. Every feature is known for every hour of the horizon at the
  origin, so one model serves hour 1 and hour 24 alike and nothing is fed
  back: the counts at the same local hour 7, 14, 21 and 28 days before, and
  1 to 6 days before when the horizon allows it (a lag is only used when it
  is at least as long as the horizon); the local hour and day of the week;
  public and school holidays at the hour and at the lags (so a holiday a week
  ago does not pass for a quiet week); events at the lags (last Saturday's
  match is not this Saturday's level) and nearby roadworks.
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
  too few to earn a split, and the forecast would not move.
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

import json
import time as _time
import warnings
from collections.abc import Callable, Mapping, Sequence
from importlib import resources

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted

from safecity.data.geo import distance_m
from safecity.data.schema import validate

QUANTILES = (0.1, 0.5, 0.9)
SOURCE = "safecity.forecast.model"
WEEK_LAGS = (7, 14, 21, 28)
#: Hours before an event's start and after its end when its crowd is on the streets.
EVENT_BEFORE_H, EVENT_AFTER_H = 3.0, 2.0
#: Hours since / until an event where none is near: a number, not NaN, because a
#: feature missing everywhere (a calendar without events) breaks the model's binning.
NO_EVENT_H = -99.0
_REQUIRED = ("ts", "sensor_id", "metric", "value")
#: Features of the event at the hour: left out of the usual-hour model, read by the event model.
EVENT_FEATURES = ("ev_n", "ev_att", "ev_since", "ev_until", "ev_rel")
#: Fewer event hours than this in the history: events are not modelled (too few to learn from).
MIN_EVENT_ROWS = 30
#: The event model is small: a few dozen event hours must not be memorised.
EVENT_MODEL = {"min_samples_leaf": 5, "max_leaf_nodes": 8, "max_iter": 100}
#: Holidays are looked up once in fit for this long after the history.
HOLIDAYS_AHEAD_DAYS = 400
_H = pd.Timedelta(hours=1)


# =========================================================================== data shaping


def hourly_counts(observations: pd.DataFrame, metric: str = "people_count") -> pd.DataFrame:
    """One metric as a wide frame: a complete hourly UTC index by sensor, NaN where not observed.

    Sub-hourly bins are summed into their hour; an hour with fewer bins than
    the sensor usually has per hour is incomplete and left missing, so a
    half-reported hour never reads as a quiet one.
    """
    check_columns(observations, "observations", _REQUIRED)
    obs = observations[observations["metric"] == metric]
    if obs.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="ts"), dtype=float)
    ts = pd.DatetimeIndex(pd.to_datetime(obs["ts"], utc=True))
    hour = ts.floor("h")
    sid = obs["sensor_id"].astype(str).to_numpy()
    frame = pd.DataFrame({"ts": hour, "sensor_id": sid, "value": obs["value"].to_numpy(float)})
    if (hour == ts).all() and not frame.duplicated(["ts", "sensor_id"]).any():
        wide = frame.pivot(index="ts", columns="sensor_id", values="value")
    else:
        g = frame.groupby(["ts", "sensor_id"])["value"].agg(["sum", "count"])
        usual = g["count"].groupby(level="sensor_id").transform(lambda c: c.mode().iloc[-1])
        wide = g.loc[g["count"] >= usual, "sum"].unstack("sensor_id")
    full = pd.date_range(wide.index.min(), wide.index.max(), freq="h", name="ts").as_unit("ns")
    wide = wide.reindex(full)
    wide.columns = wide.columns.astype(str)
    wide.columns.name = "sensor_id"
    return wide.sort_index(axis=1)


def aggregate_zones(observations: pd.DataFrame, sensors: pd.DataFrame,
                    metric: str = "people_count") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hourly counts per zone, and a sensors-like table of the zones, to forecast zones like sensors.

    A zone's hour is the sum of its sensors, kept only when every sensor of
    the zone that is in service then (between its first and last report)
    reported: a missing sensor would otherwise read as a drop in the crowd.
    Returns ``(observations, zones)``; zones has sensor_id (the zone), lon,
    lat (the mean of its sensors) and zone.
    """
    check_columns(sensors, "sensors", ("sensor_id", "zone"))
    wide = hourly_counts(observations, metric)
    zone_of = sensors.dropna(subset=["zone"]).set_index("sensor_id")["zone"].astype(str)
    cols = [c for c in wide.columns if c in zone_of.index]
    values = wide[cols].to_numpy()
    seen = ~np.isnan(values)
    first = np.argmax(seen, axis=0)
    last = len(values) - 1 - np.argmax(seen[::-1], axis=0)
    rows = np.arange(len(values))[:, None]
    in_service = (rows >= first) & (rows <= last)
    frames = []
    for zone, members in pd.Series(cols).groupby(zone_of.reindex(cols).to_numpy()):
        idx = members.index.to_numpy()
        total = np.nansum(values[:, idx], axis=1)
        complete = ~((in_service[:, idx]) & ~seen[:, idx]).any(axis=1) & in_service[:, idx].any(axis=1)
        frames.append(pd.DataFrame({"ts": wide.index[complete], "sensor_id": str(zone),
                                    "metric": metric, "value": total[complete]}))
    obs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(_REQUIRED))
    located = sensors.dropna(subset=["zone"]).astype({"zone": str})
    zones = located.groupby("zone", as_index=False)[["lon", "lat"]].mean()
    zones = zones.assign(sensor_id=zones["zone"])[["sensor_id", "lon", "lat", "zone"]]
    return validate(obs, "observations"), zones


def check_columns(df: pd.DataFrame, table: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{table}: missing column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)} (has {', '.join(map(str, df.columns))})")


def _wide_before(observations: pd.DataFrame | None, fallback: pd.DataFrame | None, origin: pd.Timestamp,
                 days: int, metric: str) -> pd.DataFrame:
    """The hourly history strictly before ``origin`` (the last ``days`` days)."""
    if observations is None:
        wide = fallback if fallback is not None else pd.DataFrame()
    else:
        check_columns(observations, "observations", _REQUIRED)
        ts = pd.to_datetime(observations["ts"], utc=True)
        keep = (ts < origin) & (ts >= origin - pd.Timedelta(days=days + 1))
        wide = hourly_counts(observations[keep], metric)
    if len(wide):
        wide = wide[(wide.index < origin) & (wide.index >= origin - pd.Timedelta(days=days + 1))]
    return wide


def _grid(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="h", inclusive="left", name="ts").as_unit("ns")


def _origin(start, default: pd.Timestamp | None) -> pd.Timestamp:
    if start is None:
        if default is None:
            raise ValueError("give start: the estimator has no history to start after")
        return default
    t = pd.Timestamp(start)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.ceil("h")


def shift_positions(grid: pd.DatetimeIndex, tz: str, days: int) -> np.ndarray:
    """For each hour of ``grid``, the position of the same local wall-clock hour ``days`` before (-1: outside)."""
    local = grid.tz_convert(tz).tz_localize(None) - pd.Timedelta(days=days)
    back = local.tz_localize(tz, ambiguous=np.ones(len(local), bool), nonexistent="shift_forward")
    return grid.get_indexer(back.tz_convert("UTC"))


def _pad(matrix: np.ndarray) -> np.ndarray:
    """Append a row of NaN so that position -1 reads as missing."""
    return np.vstack([matrix, np.full((1,) + matrix.shape[1:], np.nan, dtype=matrix.dtype)])


def _qname(q: float) -> str:
    return f"q{100 * q:g}"


def _check_quantiles(quantiles) -> tuple[float, ...]:
    qs = tuple(float(q) for q in quantiles)
    if not qs or any(not 0 < q < 1 for q in qs):
        raise ValueError(f"quantiles must be in (0, 1), got {quantiles!r}")
    return qs


def _table(grid: pd.DatetimeIndex, rows: np.ndarray, sensor_ids: np.ndarray, cols: np.ndarray,
           metric: str, origin: pd.Timestamp, quantiles: tuple[float, ...],
           values: np.ndarray) -> pd.DataFrame:
    """The forecast table from per-point quantile values (points x quantiles), sorted per row."""
    order = np.argsort(quantiles)
    values = np.clip(values, 0, None)
    values[:, order] = np.sort(values[:, order], axis=1)  # quantiles never cross
    out = pd.DataFrame({"ts": grid[rows], "sensor_id": np.asarray(sensor_ids, dtype=object)[cols],
                        "metric": metric, "origin": origin})
    for j, q in enumerate(quantiles):
        out[_qname(q)] = values[:, j]
    return out.sort_values(["ts", "sensor_id"], ignore_index=True)


def _empty_forecast(quantiles) -> pd.DataFrame:
    cols = {"ts": pd.Series(dtype="datetime64[ns, UTC]"), "sensor_id": pd.Series(dtype=object),
            "metric": pd.Series(dtype=object), "origin": pd.Series(dtype="datetime64[ns, UTC]")}
    cols.update({_qname(q): pd.Series(dtype=float) for q in quantiles})
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------- residual quantiles

_LEVELS = np.linspace(0, 1, 201)


def _fit_residuals(level: np.ndarray, residual: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges on the predicted (log) level and, per bin, the residuals' quantiles on a 0.5% grid."""
    ok = np.isfinite(level) & np.isfinite(residual)
    level, residual = level[ok], residual[ok]
    if len(residual) == 0:
        return np.array([]), np.zeros((1, len(_LEVELS)))
    n_bins = max(1, min(n_bins, len(residual) // 200))
    edges = np.unique(np.quantile(level, np.linspace(0, 1, n_bins + 1)[1:-1]))
    which = np.searchsorted(edges, level, side="right")
    table = np.vstack([np.quantile(residual[which == b], _LEVELS) if (which == b).any()
                       else np.quantile(residual, _LEVELS) for b in range(len(edges) + 1)])
    return edges, table


def _residual_quantiles(edges: np.ndarray, table: np.ndarray, level: np.ndarray,
                        quantiles: tuple[float, ...]) -> np.ndarray:
    """Residual quantiles (points x quantiles) for points at ``level``."""
    which = np.searchsorted(edges, level, side="right")
    per_bin = np.column_stack([[np.interp(q, _LEVELS, row) for row in table] for q in quantiles])
    return per_bin[which]


# =========================================================================== calendar features


def with_holidays(calendar: pd.DataFrame | None, start: pd.Timestamp, end: pd.Timestamp, tz: str,
                   country: str | None, subdiv: str | None, school_zone: str | None) -> pd.DataFrame:
    """The analyst's calendar plus the public and school holidays of ``[start, end)``."""
    from safecity.data import calendars as cal

    frames = [] if calendar is None else [validate(calendar, "calendar")]
    if country:
        frames.append(cal.public_holidays(start, end, country=country, subdiv=subdiv, tz=tz))
    if school_zone:
        frames.append(cal.school_holidays(start, end, zone=school_zone, tz=tz))
    frames = [f for f in frames if len(f)]
    if not frames:
        from safecity.data.schema import empty
        return empty("calendar")
    both = pd.concat(frames, ignore_index=True).drop_duplicates("calendar_id")
    return validate(both, "calendar")


def _weights(row, lonlat: np.ndarray, radius_m: float) -> np.ndarray:
    """How much a dated happening concerns each sensor: a Gaussian of the distance; 1 when unplaced."""
    w = np.ones(len(lonlat))
    if pd.isna(row.lon) or pd.isna(row.lat):
        return w
    placed = np.isfinite(lonlat).all(axis=1)
    d = distance_m(lonlat[placed, 0], lonlat[placed, 1], row.lon, row.lat)
    w[placed] = np.exp(-(d / radius_m) ** 2)
    # Beyond about two radii a happening is none of the sensor's business; a
    # tiny weight times a stadium's crowd would still read as an event.
    w[w < 0.01] = 0.0
    return w


def _span(t_ns: np.ndarray, start: pd.Timestamp, end: pd.Timestamp) -> slice:
    """Rows of the hourly grid whose hour overlaps ``[start, end)``."""
    lo = np.searchsorted(t_ns, start.value - _H.value, side="right")
    hi = np.searchsorted(t_ns, end.value, side="left")
    return slice(lo, max(lo, hi))


def _happenings(calendar: pd.DataFrame, grid: pd.DatetimeIndex, lonlat: np.ndarray,
                event_radius_m: float, roadworks_radius_m: float) -> dict[str, np.ndarray | None]:
    """Per hour and sensor: events (weighted count, attendance, hours since start / until end) and roadworks.

    ``None`` for a feature no row of the calendar touches, so years of hours
    by hundreds of sensors cost nothing when the calendar has no events.
    """
    T, S = len(grid), len(lonlat)
    t_ns = grid.as_unit("ns").asi8
    t_h = (t_ns - (t_ns[0] if T else 0)) / 3.6e12
    out = {"ev_n": None, "ev_att": None, "ev_since": None, "ev_until": None, "roadworks": None}
    if T == 0 or calendar is None or calendar.empty:
        return out
    before, after = pd.Timedelta(hours=EVENT_BEFORE_H), pd.Timedelta(hours=EVENT_AFTER_H)
    events = calendar[(calendar["kind"] == "event") & (calendar["end"] + after > grid[0])
                      & (calendar["start"] - before < grid[-1] + _H)]
    if len(events):
        n, att, best = (np.zeros((T, S), np.float32) for _ in range(3))
        since, until = (np.full((T, S), NO_EVENT_H, np.float32) for _ in range(2))
        for row in events.itertuples(index=False):
            span = _span(t_ns, row.start - before, row.end + after)
            if span.stop <= span.start:
                continue
            w = _weights(row, lonlat, event_radius_m).astype(np.float32)
            a = float(row.expected_attendance) if pd.notna(row.expected_attendance) else np.nan
            n[span] += w
            if np.isfinite(a):
                att[span] += a * w
            strength = w * (a if np.isfinite(a) and a > 1 else 1.0)
            wins = (strength[None, :] > best[span]) & (w[None, :] > 0.01)
            s0 = (row.start.value - t_ns[0]) / 3.6e12
            e0 = (row.end.value - t_ns[0]) / 3.6e12
            hours = t_h[span][:, None].astype(np.float32)
            best[span] = np.where(wins, strength[None, :], best[span])
            since[span] = np.where(wins, hours - s0, since[span])
            until[span] = np.where(wins, e0 - hours, until[span])
        out.update(ev_n=n, ev_att=np.log1p(att), ev_since=since, ev_until=until)
    works = calendar[(calendar["kind"] == "roadworks") & (calendar["end"] > grid[0])
                     & (calendar["start"] < grid[-1] + _H)]
    if len(works):
        rw = np.zeros((T, S), np.float32)
        for row in works.itertuples(index=False):
            span = _span(t_ns, row.start, row.end)
            rw[span] = np.maximum(rw[span], _weights(row, lonlat, roadworks_radius_m)[None, :])
        out["roadworks"] = rw
    return out


# =========================================================================== the forecaster


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
        the calibration days; a year sees every season once and keeps fits fast.
    calibration_days : the most recent days, held out to calibrate the intervals.
    max_samples : ordinary rows (sensor-hours) drawn at random to fit and to
        calibrate, for speed; event hours are always all kept.
    loss, max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization :
        passed to the usual-hour ``HistGradientBoostingRegressor`` (the event
        model is a small one, ``EVENT_MODEL``).
    n_bins : number of predicted-level bins the interval widths are calibrated in.
    random_state : seed of the row sampling and of the models.

    Attributes
    ----------
    model_ : the usual-hour model (log-ratio of the count to the weekly level).
    event_model_ : the event-excess model, or None when the history holds fewer
        than ``MIN_EVENT_ROWS`` event hours on two days or more.
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
    """

    def __init__(self, horizon: str = "24h", tz: str = "Europe/Paris", metric: str = "people_count",
                 country: str | None = "FR", subdiv: str | None = None, school_zone: str | None = "B",
                 event_radius_m: float = 1000.0, roadworks_radius_m: float = 300.0,
                 history_days: int | None = 365, calibration_days: int = 28,
                 max_samples: int | None = 200_000, max_iter: int = 300, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 31, min_samples_leaf: int = 20, l2_regularization: float = 1.0,
                 n_bins: int = 8, loss: str = "absolute_error", random_state: int | None = 0):
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

    # ------------------------------------------------------------------ fit

    def fit(self, observations: pd.DataFrame, calendar: pd.DataFrame | None = None,
            sensors: pd.DataFrame | None = None) -> "GatheringForecaster":
        """Learn from ``observations`` (and the ``calendar``; ``sensors`` gives positions for events).

        ``sensors`` is any table with sensor_id, lon, lat (the sensors table,
        or the zones of ``aggregate_zones``); without it every event concerns
        every sensor.
        """
        horizon = pd.Timedelta(self.horizon)
        if not _H <= horizon <= pd.Timedelta(days=7):
            raise ValueError(f"horizon must be between 1 hour and 7 days, got {self.horizon!r}")
        wide = hourly_counts(observations, self.metric)
        if wide.shape[1] == 0 or wide.notna().sum().sum() == 0:
            raise ValueError(f"observations: no '{self.metric}' values to learn from")
        self.end_ = wide.index[-1] + _H
        keep_days = (self.history_days or 10**5) + self.calibration_days + WEEK_LAGS[-1] + 1
        wide = wide[wide.index >= self.end_ - pd.Timedelta(days=keep_days)]
        wide = wide.loc[:, wide.notna().any()]
        self.day_lags_ = tuple(d for d in range(1, 7) if pd.Timedelta(days=d) >= horizon)
        self.sensor_ids_ = wide.columns.to_numpy(dtype=object)
        self.sensor_lonlat_ = sensor_positions(sensors, self.sensor_ids_)
        grid = wide.index
        self.calendar_ = with_holidays(calendar, grid[0] - pd.Timedelta(days=35),
                                        self.end_ + pd.Timedelta(days=HOLIDAYS_AHEAD_DAYS), self.tz,
                                        self.country, self.subdiv, self.school_zone)
        Y = wide.to_numpy(float)
        ctx = self._context(grid, self.calendar_, self.sensor_lonlat_)
        base = self._level(Y, ctx)

        # Candidate rows: observed, with a level; the last calibration days are held out.
        rows, cols = np.nonzero(np.isfinite(Y) & np.isfinite(base))
        if len(rows) == 0:
            raise ValueError("observations: no hour has a count one to four weeks before; "
                             "at least eight days of history are needed")
        t = grid[rows]
        span_days = (t.max() - t.min()) / pd.Timedelta(days=1)
        cal_days = min(float(self.calibration_days), max(1.0, span_days / 4))
        is_cal = t >= self.end_ - pd.Timedelta(days=cal_days)
        is_train = ~is_cal
        if self.history_days:
            is_train &= t >= self.end_ - pd.Timedelta(days=cal_days + self.history_days)
        # Event hours are rare and decisive: all are kept, the other hours sampled.
        near_event = np.zeros(len(rows), bool) if ctx["ev_n"] is None else ctx["ev_n"][rows, cols] > 0
        rng = np.random.default_rng(self.random_state)
        train = np.union1d(_sample(np.nonzero(is_train & ~near_event)[0], self.max_samples, rng),
                           np.nonzero(is_train & near_event)[0])
        calib = np.union1d(_sample(np.nonzero(is_cal & ~near_event)[0], self.max_samples, rng),
                           np.nonzero(is_cal & near_event)[0])

        X, names = self._design(Y, ctx, base, rows[train], cols[train])
        self.feature_names_ = names
        self.n_features_in_ = len(names)
        # A feature never observed in fit (the 28-day lag of a 3-week history) is
        # set to 0 in fit and predict alike: the model cannot learn what it never saw.
        self.unseen_features_ = np.isnan(X).all(axis=0)
        X[:, self.unseen_features_] = 0.0
        target = np.log1p(Y[rows[train], cols[train]]) - np.log1p(base[rows[train], cols[train]])
        on_event = near_event[train]

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
        event_errors, event_levels = np.array([]), np.array([])
        if on_event.sum() >= MIN_EVENT_ROWS:
            Xe = X[on_event]
            usual_e = self.model_.predict(Xe[:, usual])
            excess = target[on_event] - usual_e
            # Every feature, lags included: how much an event adds depends on the
            # usual hour too. A feature missing on every event hour is left out.
            self.event_columns_ = [i for i in range(len(names)) if not np.isnan(Xe[:, i]).all()]
            uplift = self.event_columns_
            days = np.asarray(grid[rows[train][on_event]].tz_convert(self.tz).normalize().asi8)
            if len(np.unique(days)) >= 2:
                from sklearn.model_selection import GroupKFold, cross_val_predict

                k = min(5, len(np.unique(days)))
                oof = cross_val_predict(self._booster(**EVENT_MODEL), Xe[:, uplift], excess,
                                        groups=days, cv=GroupKFold(n_splits=k))
                self.event_model_ = self._booster(**EVENT_MODEL).fit(Xe[:, uplift], excess)
                event_errors = excess - oof
                event_levels = np.log1p(base[rows[train], cols[train]][on_event]) + usual_e + oof

        Xc, _ = self._design(Y, ctx, base, rows[calib], cols[calib])
        level = self._log_forecast(Xc, np.log1p(base[rows[calib], cols[calib]]), near_event[calib])
        residual = np.log1p(Y[rows[calib], cols[calib]]) - level
        cal_event = near_event[calib]
        self.residual_edges_, self.residual_table_ = _fit_residuals(
            level[~cal_event], residual[~cal_event], self.n_bins)
        if self.event_model_ is not None:
            self.event_residual_edges_, self.event_residual_table_ = _fit_residuals(
                np.r_[event_levels, level[cal_event]], np.r_[event_errors, residual[cal_event]],
                self.n_bins)
        else:
            self.event_residual_edges_, self.event_residual_table_ = \
                self.residual_edges_, self.residual_table_
        self.n_train_, self.n_calibration_ = len(train), len(calib)
        self.n_event_rows_ = int(on_event.sum())

        how = _hour_of_week(grid, self.tz)
        self.profile_ = pd.DataFrame(Y, index=how).groupby(level=0).median() \
            .reindex(range(168)).to_numpy()
        self.history_ = wide[wide.index >= self.end_ - pd.Timedelta(days=WEEK_LAGS[-1] + 1)]
        return self

    # ------------------------------------------------------------------ predict

    def predict(self, start=None, horizon: str | None = None, quantiles=QUANTILES,
                observations: pd.DataFrame | None = None,
                calendar: pd.DataFrame | None = None) -> pd.DataFrame:
        """The forecast table for ``[start, start + horizon)``, issued at ``start``.

        ``start`` defaults to the hour after the fitted history (and is
        rounded up to the hour); ``horizon`` to the model's and may not exceed
        it. ``observations`` brings newer counts than the fit (only those
        before ``start`` are read); ``calendar`` replaces the fitted one (say,
        with an event announced since), holidays being added again.
        """
        check_is_fitted(self, "model_")
        quantiles = _check_quantiles(quantiles)
        origin = _origin(start, self.end_)
        span = pd.Timedelta(horizon or self.horizon)
        if span > pd.Timedelta(self.horizon):
            raise ValueError(f"horizon {horizon!r} is longer than the model's ({self.horizon!r}); "
                             "fit a model with a longer horizon")
        lookback = WEEK_LAGS[-1] + 1
        hist = _wide_before(observations, self.history_, origin, lookback, self.metric)
        sensor_ids = np.array(sorted(set(self.sensor_ids_) | set(map(str, hist.columns))), dtype=object)
        grid = _grid(origin - pd.Timedelta(days=lookback), origin + span)
        Y = hist.reindex(index=grid, columns=sensor_ids).to_numpy(float)
        cal = self.calendar_ if calendar is None else calendar
        if calendar is not None or grid[-1] >= self.end_ + pd.Timedelta(days=HOLIDAYS_AHEAD_DAYS):
            cal = with_holidays(cal, grid[0], grid[-1] + _H, self.tz, self.country,
                                 self.subdiv, self.school_zone)
        lonlat = sensor_positions(None, sensor_ids, self.sensor_ids_, self.sensor_lonlat_)
        ctx = self._context(grid, cal, lonlat)
        base = self._level(Y, ctx)

        first = grid.get_loc(origin)
        # A sensor is forecast while it reports: some count in the week before the origin.
        active = np.isfinite(Y[first - 7 * 24:first]).any(axis=0)
        profile = self._profile_for(sensor_ids, _hour_of_week(grid, self.tz))
        base = np.where(np.isfinite(base), base, profile)
        rows, cols = np.nonzero(np.isfinite(base[first:]) & active[None, :])
        rows = rows + first
        if len(rows) == 0:
            return _empty_forecast(quantiles)
        X, _ = self._design(Y, ctx, base, rows, cols)
        near_event = np.zeros(len(rows), bool) if ctx["ev_n"] is None else ctx["ev_n"][rows, cols] > 0
        level = self._log_forecast(X, np.log1p(base[rows, cols]), near_event)
        r = _residual_quantiles(self.residual_edges_, self.residual_table_, level, quantiles)
        if near_event.any():
            r[near_event] = _residual_quantiles(self.event_residual_edges_, self.event_residual_table_,
                                                level[near_event], quantiles)
        values = np.expm1(level[:, None] + r)
        return _table(grid, rows, sensor_ids, cols, self.metric, origin, quantiles, values)

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

    def _log_forecast(self, X: np.ndarray, log_base: np.ndarray, near_event: np.ndarray) -> np.ndarray:
        """log1p of the median forecast: the usual hour, plus the event's excess near an event."""
        names = self.feature_names_
        level = log_base + self.model_.predict(X[:, self._columns(names, EVENT_FEATURES, keep=False)])
        if self.event_model_ is not None and near_event.any():
            level[near_event] += self.event_model_.predict(X[near_event][:, self.event_columns_])
        return level

    # ------------------------------------------------------------------ features

    def _context(self, grid: pd.DatetimeIndex, calendar: pd.DataFrame, lonlat: np.ndarray) -> dict:
        """Everything per hour (and per sensor) the design matrix reads."""
        from safecity.data.calendars import calendar_flags

        local = grid.tz_convert(self.tz)
        flags = calendar_flags(calendar, grid, tz=self.tz)
        ctx = {
            "hour": np.asarray(local.hour, np.float32),
            "dow": np.asarray(local.day_of_week, np.float32),
            "public_holiday": flags["public_holiday"].to_numpy(np.float32),
            "school_holiday": flags["school_holiday"].to_numpy(np.float32),
            "pos": {d: shift_positions(grid, self.tz, d) for d in (1, *self.day_lags_, *WEEK_LAGS)},
        }
        ctx.update(_happenings(calendar, grid, lonlat, self.event_radius_m, self.roadworks_radius_m))
        return ctx

    def _level(self, Y: np.ndarray, ctx: dict) -> np.ndarray:
        """The weekly level: median of the same local hour 7, 14, 21 and 28 days before."""
        P = _pad(Y)
        lags = np.stack([P[ctx["pos"][d]] for d in WEEK_LAGS])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all four missing: expected, stays NaN
            return np.nanmedian(lags, axis=0)

    def _design(self, Y, ctx, base, rows, cols) -> tuple[np.ndarray, list[str]]:
        P = _pad(Y)
        log_base = np.log1p(base[rows, cols])
        feats: dict[str, np.ndarray] = {
            "hour": ctx["hour"][rows], "dow": ctx["dow"][rows], "log_level": log_base,
        }
        for d in (*self.day_lags_, *WEEK_LAGS):
            feats[f"lag_{d}d"] = np.log1p(P[ctx["pos"][d][rows], cols]) - log_base

        def at(values, d=None):
            """A per-hour (or per hour and sensor) feature at the rows, or ``d`` days before them."""
            if d is None:
                return values[rows] if values.ndim == 1 else values[rows, cols]
            r = ctx["pos"][d][rows]
            out = values[r] if values.ndim == 1 else values[r, cols]
            return np.where(r >= 0, out, np.nan)

        for name in ("public_holiday", "school_holiday"):
            feats[name] = at(ctx[name])
            feats[f"{name}_7d"] = at(ctx[name], 7)
        feats["public_holiday_1d"] = at(ctx["public_holiday"], 1)
        for name in ("ev_n", "ev_att", "ev_since", "ev_until", "roadworks"):
            m = ctx[name]
            fill = NO_EVENT_H if name in ("ev_since", "ev_until") else 0.0
            feats[name] = np.full(len(rows), fill, np.float32) if m is None else at(m)
        # The event's expected crowd relative to the sensor's usual level: the same
        # feature for a stadium by a quiet street and a concert by a busy one.
        feats["ev_rel"] = feats["ev_att"] - log_base
        for d in (1, 7):
            m = ctx["ev_att"]
            feats[f"ev_att_{d}d"] = np.zeros(len(rows), np.float32) if m is None else \
                np.nan_to_num(at(m, d), nan=0.0)
        names = list(feats)
        X = np.column_stack([feats[n].astype(np.float32) for n in names])
        unseen = getattr(self, "unseen_features_", None)
        if unseen is not None and unseen.any():
            X[:, unseen] = 0.0
        return X, names

    def _profile_for(self, sensor_ids: np.ndarray, how: np.ndarray) -> np.ndarray:
        known = {s: i for i, s in enumerate(self.sensor_ids_)}
        out = np.full((len(how), len(sensor_ids)), np.nan)
        for j, s in enumerate(sensor_ids):
            if s in known:
                out[:, j] = self.profile_[how, known[s]]
        return out


def _sample(index: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or len(index) <= n:
        return index
    return np.sort(rng.choice(index, size=n, replace=False))


def sensor_positions(sensors: pd.DataFrame | None, sensor_ids: np.ndarray, known_ids=None,
               known_lonlat=None) -> np.ndarray:
    """lon/lat per sensor id (NaN where unknown), from a table or from what fit learned."""
    out = np.full((len(sensor_ids), 2), np.nan)
    if sensors is not None:
        check_columns(sensors, "sensors", ("sensor_id", "lon", "lat"))
        table = sensors.assign(sensor_id=sensors["sensor_id"].astype(str)) \
            .drop_duplicates("sensor_id").set_index("sensor_id")
        return table.reindex(list(sensor_ids))[["lon", "lat"]].to_numpy(float)
    if known_ids is not None:
        index = {s: i for i, s in enumerate(known_ids)}
        for j, s in enumerate(sensor_ids):
            if s in index:
                out[j] = known_lonlat[index[s]]
    return out


def _hour_of_week(grid: pd.DatetimeIndex, tz: str) -> np.ndarray:
    local = grid.tz_convert(tz)
    return np.asarray(local.day_of_week * 24 + local.hour, int)


# =========================================================================== baselines


class SeasonalNaive(BaseEstimator):
    """The same local hour one week before: the forecast every other method must beat.

    Its median is exactly last week's count. Its other quantiles add the
    log-ratio errors it made over the last ``calibration_days`` of the fit
    (binned by level, as for the forecaster), so that its intervals can be
    compared too. Forecasts beyond seven days ahead are not made.
    """

    def __init__(self, tz: str = "Europe/Paris", metric: str = "people_count",
                 calibration_days: int = 28, n_bins: int = 8):
        self.tz = tz
        self.metric = metric
        self.calibration_days = calibration_days
        self.n_bins = n_bins

    def fit(self, observations: pd.DataFrame, calendar=None, sensors=None) -> "SeasonalNaive":
        """Learn the spread of last week's errors (``calendar`` and ``sensors`` are ignored)."""
        wide = hourly_counts(observations, self.metric)
        if wide.shape[1] == 0:
            raise ValueError(f"observations: no '{self.metric}' values")
        self.end_ = wide.index[-1] + _H
        wide = wide[wide.index >= self.end_ - pd.Timedelta(days=self.calibration_days + 8)]
        Y = wide.to_numpy(float)
        lag = _pad(Y)[shift_positions(wide.index, self.tz, 7)]
        recent = (wide.index >= self.end_ - pd.Timedelta(days=self.calibration_days))[:, None]
        ok = recent & np.isfinite(Y) & np.isfinite(lag)
        self.residual_edges_, self.residual_table_ = _fit_residuals(
            np.log1p(lag[ok]), np.log1p(Y[ok]) - np.log1p(lag[ok]), self.n_bins)
        self.history_ = wide[wide.index >= self.end_ - pd.Timedelta(days=8)]
        return self

    def predict(self, start=None, horizon: str = "24h", quantiles=QUANTILES,
                observations: pd.DataFrame | None = None, calendar=None) -> pd.DataFrame:
        """The forecast table: q50 is the count one week before; hours without it are left out."""
        check_is_fitted(self, "residual_table_")
        quantiles = _check_quantiles(quantiles)
        origin = _origin(start, self.end_)
        hist = _wide_before(observations, self.history_, origin, 8, self.metric)
        grid = _grid(origin - pd.Timedelta(days=8), origin + pd.Timedelta(horizon))
        sensor_ids = hist.columns.to_numpy(dtype=object)
        lag = _pad(hist.reindex(grid).to_numpy(float))[shift_positions(grid, self.tz, 7)]
        first = grid.get_loc(origin)
        rows, cols = np.nonzero(np.isfinite(lag[first:]))
        rows = rows + first
        if len(rows) == 0:
            return _empty_forecast(quantiles)
        point = lag[rows, cols]
        r = _residual_quantiles(self.residual_edges_, self.residual_table_, np.log1p(point), quantiles)
        values = np.expm1(np.log1p(point)[:, None] + r)
        for j, q in enumerate(quantiles):  # the median is last week's count, exactly
            values[:, j] = point if q == 0.5 else \
                np.minimum(values[:, j], point) if q < 0.5 else np.maximum(values[:, j], point)
        return _table(grid, rows, sensor_ids, cols, self.metric, origin, quantiles, values)


class TimeOfWeekProfile(BaseEstimator):
    """The usual count of each local hour of the week: quantiles of that hour over the history.

    ``weeks`` limits the history to the most recent weeks (None: all of it).
    The quantiles are those of the observed counts themselves, so the 80%
    interval is the range of eight usual weeks in ten.
    """

    def __init__(self, tz: str = "Europe/Paris", metric: str = "people_count", weeks: int | None = None):
        self.tz = tz
        self.metric = metric
        self.weeks = weeks

    def fit(self, observations: pd.DataFrame, calendar=None, sensors=None) -> "TimeOfWeekProfile":
        """Tabulate each sensor's counts by local hour of the week."""
        wide = hourly_counts(observations, self.metric)
        if wide.shape[1] == 0:
            raise ValueError(f"observations: no '{self.metric}' values")
        self.end_ = wide.index[-1] + _H
        if self.weeks:
            wide = wide[wide.index >= self.end_ - pd.Timedelta(weeks=self.weeks)]
        how = _hour_of_week(wide.index, self.tz)
        Y = wide.to_numpy(float)
        self.sensor_ids_ = wide.columns.to_numpy(dtype=object)
        table = np.full((168, len(_LEVELS), Y.shape[1]), np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a sensor never seen at that hour
            for h in range(168):
                block = Y[how == h]
                if len(block):
                    table[h] = np.nanquantile(block, _LEVELS, axis=0)
        self.table_ = table
        return self

    def predict(self, start=None, horizon: str = "24h", quantiles=QUANTILES,
                observations=None, calendar=None) -> pd.DataFrame:
        """The forecast table (``observations`` and ``calendar`` are ignored: the profile is fixed)."""
        check_is_fitted(self, "table_")
        quantiles = _check_quantiles(quantiles)
        origin = _origin(start, self.end_)
        grid = _grid(origin, origin + pd.Timedelta(horizon))
        how = _hour_of_week(grid, self.tz)
        table = self.table_[how]  # hours x levels x sensors
        per_q = []
        for q in quantiles:
            k = q * (len(_LEVELS) - 1)
            lo, frac = int(np.floor(k)), k - np.floor(k)
            hi = min(lo + 1, len(_LEVELS) - 1)
            per_q.append(table[:, lo, :] * (1 - frac) + table[:, hi, :] * frac)
        values = np.stack(per_q, axis=-1)  # hours x sensors x quantiles
        rows, cols = np.nonzero(np.isfinite(values).all(axis=-1))
        if len(rows) == 0:
            return _empty_forecast(quantiles)
        return _table(grid, rows, self.sensor_ids_, cols, self.metric, origin, quantiles,
                      values[rows, cols])


def seasonal_naive(history: pd.DataFrame, start, horizon: str = "24h", quantiles=QUANTILES,
                   tz: str = "Europe/Paris", metric: str = "people_count") -> pd.DataFrame:
    """Forecast table of the same local hour one week before (see ``SeasonalNaive``)."""
    past = history[pd.to_datetime(history["ts"], utc=True) < _origin(start, None)]
    return SeasonalNaive(tz=tz, metric=metric).fit(past).predict(start, horizon, quantiles)


def time_of_week_profile(history: pd.DataFrame, start, horizon: str = "24h", quantiles=QUANTILES,
                         tz: str = "Europe/Paris", metric: str = "people_count",
                         weeks: int | None = None) -> pd.DataFrame:
    """Forecast table of the usual value of each hour of the week (see ``TimeOfWeekProfile``)."""
    past = history[pd.to_datetime(history["ts"], utc=True) < _origin(start, None)]
    return TimeOfWeekProfile(tz=tz, metric=metric, weeks=weeks).fit(past).predict(start, horizon, quantiles)


# =========================================================================== backtest


def backtest(observations: pd.DataFrame, calendar: pd.DataFrame | None = None, horizon: str = "24h",
             folds: int = 6, test_days: int = 183, test_start=None,
             estimator: GatheringForecaster | None = None, sensors: pd.DataFrame | None = None,
             progress: Callable[[int], None] | None = None) -> dict:
    """Rolling-origin backtest of the forecaster against the two baselines; a JSON-ready dict.

    The test period is the last ``test_days`` whole local days of the data
    (or from ``test_start``). An origin is every local midnight in it; each
    forecasts the next ``horizon``. The origins are cut into ``folds``
    contiguous blocks; at the first origin of a block the forecaster (a clone
    of ``estimator`` with this ``horizon``, default ``GatheringForecaster()``) and the
    profile are refitted on the data before it; every origin then forecasts
    from the counts before it only. The seasonal naive uses the week before
    each origin. ``progress(i)`` is called after each fold.

    All methods are scored on the same points: hours with an observed count
    and a forecast from all three. Metrics per method:
    ``mae``; ``mape`` (mean of |error| / count over hours whose count is not
    zero, in %: zero-count hours are left out, not counted as infinite);
    ``wape`` (sum of |error| / sum of counts, in %); ``coverage_80`` (share of
    counts within [q10, q90]); ``n``. The same on the local days touched by
    an ``event`` of the calendar (``event_days``), and per event (``events``).
    """
    est = GatheringForecaster() if estimator is None else clone(estimator)
    est.set_params(horizon=horizon)  # the horizon under test is the model's
    tz = est.tz
    wide = hourly_counts(observations, est.metric)
    if wide.empty:
        raise ValueError(f"observations: no '{est.metric}' values")
    span = pd.Timedelta(horizon)
    last = wide.index[-1] + _H
    days = pd.date_range(wide.index[0].tz_convert(tz).normalize(), last.tz_convert(tz).normalize(),
                         freq="D")
    origins = pd.DatetimeIndex([d.tz_convert("UTC") for d in days])
    origins = origins[origins + span <= last]
    if test_start is not None:
        origins = origins[origins >= _origin(test_start, None)]
    else:
        origins = origins[-test_days:]
    if len(origins) < folds:
        raise ValueError(f"the test period has {len(origins)} origins, fewer than {folds} folds")
    blocks = np.array_split(np.arange(len(origins)), folds)
    ts_obs = pd.to_datetime(observations["ts"], utc=True)
    methods = ("forecaster", "seasonal_naive", "time_of_week_profile")
    tables: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
    fit_s, predict_s = 0.0, 0.0
    for i, block in enumerate(blocks):
        fold_start = origins[block[0]]
        past = observations[ts_obs < fold_start]
        t0 = _time.perf_counter()
        model = clone(est).fit(past, calendar, sensors)
        profile = TimeOfWeekProfile(tz=tz, metric=est.metric).fit(past)
        fit_s += _time.perf_counter() - t0
        recent = observations[(ts_obs >= fold_start - pd.Timedelta(days=WEEK_LAGS[-1] + 2))
                              & (ts_obs < origins[block[-1]])]
        naive = SeasonalNaive(tz=tz, metric=est.metric).fit(past)
        for k in block:
            origin = origins[k]
            t0 = _time.perf_counter()
            tables["forecaster"].append(model.predict(origin, horizon, observations=recent))
            predict_s += _time.perf_counter() - t0
            tables["seasonal_naive"].append(naive.predict(origin, horizon, observations=recent))
            tables["time_of_week_profile"].append(profile.predict(origin, horizon))
        if progress is not None:
            progress(i + 1)

    actual = wide.stack().dropna().rename("actual").reset_index()
    actual["sensor_id"] = actual["sensor_id"].astype(str)
    keys = ["origin", "ts", "sensor_id"]
    scored = None
    for m in methods:
        f = pd.concat(tables[m], ignore_index=True)[keys + ["q10", "q50", "q90"]]
        f = f.rename(columns={"q10": f"{m}_q10", "q50": f"{m}_q50", "q90": f"{m}_q90"})
        scored = f if scored is None else scored.merge(f, on=keys, how="inner")
    scored = scored.merge(actual, on=["ts", "sensor_id"], how="inner")

    event_rows = _event_rows(calendar, tz)
    local_day = scored["ts"].dt.tz_convert(tz).dt.normalize().dt.tz_localize(None)
    on_event_day = local_day.isin(set(event_rows["day"])) if len(event_rows) else \
        pd.Series(False, index=scored.index)
    result = {
        "horizon": str(horizon), "folds": int(folds), "origins": int(len(origins)), "tz": tz,
        "test_start": origins[0].isoformat(), "test_end": (origins[-1] + span).isoformat(),
        "n": int(len(scored)),
        "methods": {m: _scores(scored, m) for m in methods},
    }
    result["mae_ratio_to_seasonal_naive"] = _ratio(result["methods"]["forecaster"]["mae"],
                                                   result["methods"]["seasonal_naive"]["mae"])
    result["coverage_80"] = result["methods"]["forecaster"]["coverage_80"]
    result["event_days"] = {
        "days": sorted({d.date().isoformat() for d in local_day[on_event_day]}),
        "n": int(on_event_day.sum()),
        "methods": {m: _scores(scored[on_event_day.to_numpy()], m) for m in methods},
    }
    per_event = []
    for name, group in event_rows.groupby(["name", "start"], sort=True):
        mask = local_day.isin(set(group["day"])).to_numpy()
        if mask.any():
            per_event.append({"name": name[0], "start": name[1].isoformat(),
                              "days": sorted(d.date().isoformat() for d in group["day"]),
                              "n": int(mask.sum()),
                              "mae": {m: _scores(scored[mask], m)["mae"] for m in methods}})
    result["events"] = per_event
    result["seconds"] = {"fit": round(fit_s, 2), "predict_forecaster": round(predict_s, 2)}
    return result


def _event_rows(calendar: pd.DataFrame | None, tz: str) -> pd.DataFrame:
    """One row per (event, local day it touches)."""
    if calendar is None or calendar.empty:
        return pd.DataFrame(columns=["name", "start", "day"])
    ev = calendar[calendar["kind"] == "event"]
    rows = []
    for row in ev.itertuples(index=False):
        first = row.start.tz_convert(tz).normalize().tz_localize(None)
        last = (max(row.end, row.start + pd.Timedelta(seconds=1)) - pd.Timedelta(seconds=1)) \
            .tz_convert(tz).normalize().tz_localize(None)
        for day in pd.date_range(first, last, freq="D"):
            rows.append({"name": row.name, "start": row.start, "day": day})
    return pd.DataFrame(rows, columns=["name", "start", "day"])


def _scores(scored: pd.DataFrame, method: str) -> dict:
    y = scored["actual"].to_numpy(float)
    p = scored[f"{method}_q50"].to_numpy(float)
    lo, hi = scored[f"{method}_q10"].to_numpy(float), scored[f"{method}_q90"].to_numpy(float)
    if len(y) == 0:
        return {"mae": None, "mape": None, "wape": None, "coverage_80": None, "n": 0}
    err = np.abs(y - p)
    nz = y > 0
    return {
        "mae": round(float(err.mean()), 3),
        "mape": round(float(100 * (err[nz] / y[nz]).mean()), 2) if nz.any() else None,
        "wape": round(float(100 * err.sum() / y.sum()), 2) if y.sum() > 0 else None,
        "coverage_80": round(float(((y >= lo) & (y <= hi)).mean()), 4),
        "n": int(len(y)),
    }


def _ratio(a, b):
    return None if a is None or not b else round(a / b, 4)


# =========================================================================== alerts


def gathering_alerts(forecast: pd.DataFrame, threshold, now=None, lead_time: str = "6h",
                     upper: str = "q90", sensors: pd.DataFrame | None = None) -> pd.DataFrame:
    """``gathering_forecast`` events where the upper forecast of a sensor or zone crosses its threshold.

    ``threshold``: one number for all, or a mapping / Series from sensor_id
    (or zone) to its capacity or the analyst's threshold (others get no alert).
    Only hours at least ``lead_time`` after ``now`` count: an alert is useful
    when there is still time to plan, so a crowd expected sooner is left to
    the live detectors. ``now`` defaults to the forecast's origin (the data
    carries its own time; no clock is read). Each contiguous run of hours
    above the threshold gives one event: ts is the hour where ``upper`` peaks,
    score is ``upper / threshold`` there, details hold the expected peak (the
    median) and its interval at that hour, the run's start and end, the
    threshold and the lead time in hours. ``sensors`` (sensor_id, lon, lat)
    places the events.
    """
    from safecity.data.schema import empty

    check_columns(forecast, "forecast", ("ts", "sensor_id", upper))
    if forecast.empty:
        return empty("events")
    table = forecast.copy()
    table["ts"] = pd.to_datetime(table["ts"], utc=True)
    if now is None:
        if "origin" not in table:
            raise ValueError("give now: the forecast has no origin column")
        now = pd.to_datetime(table["origin"], utc=True).max()
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    lead = pd.Timedelta(lead_time)
    if isinstance(threshold, (Mapping, pd.Series)):
        limits = pd.Series(threshold, dtype=float)
        limits.index = limits.index.astype(str)
        table["threshold"] = table["sensor_id"].astype(str).map(limits)
    else:
        table["threshold"] = float(threshold)
    table = table[(table["ts"] >= now + lead) & table["threshold"].notna()]
    table = table.sort_values(["sensor_id", "ts"])
    lonlat = None
    if sensors is not None:
        lonlat = sensors.assign(sensor_id=sensors["sensor_id"].astype(str)) \
            .drop_duplicates("sensor_id").set_index("sensor_id")[["lon", "lat"]]
    mid = "q50" if "q50" in table else upper
    lo = "q10" if "q10" in table else None
    rows = []
    for sid, g in table.groupby("sensor_id", sort=True):
        over = (g[upper] > g["threshold"]).to_numpy()
        if not over.any():
            continue
        step = g["ts"].diff().ne(_H).to_numpy()  # a gap in the hours breaks a run
        run_id = np.cumsum(step | np.r_[True, over[1:] != over[:-1]])
        for _, run in g[over].groupby(run_id[over]):
            peak = run.loc[run[upper].idxmax()]
            limit = float(peak["threshold"])
            details = {
                "metric": str(peak["metric"]) if "metric" in run else None,
                "issued_at": now.isoformat(), "peak_time": peak["ts"].isoformat(),
                "expected_peak": round(float(peak[mid]), 1),
                "interval": {k: round(float(peak[k]), 1) for k in (lo, mid, upper) if k},
                "upper_quantile": upper, "threshold": limit,
                "start": run["ts"].min().isoformat(), "end": (run["ts"].max() + _H).isoformat(),
                "lead_time_h": round((peak["ts"] - now) / _H, 2),
                "min_lead_time_h": round(lead / _H, 2),
            }
            lon = lat = np.nan
            if lonlat is not None and str(sid) in lonlat.index:
                lon, lat = lonlat.loc[str(sid), ["lon", "lat"]].astype(float)
            rows.append({
                "event_id": f"gathering_forecast-{sid}-{peak['ts']:%Y%m%dT%H%MZ}-at-{now:%Y%m%dT%H%MZ}",
                "ts": peak["ts"], "kind": "gathering_forecast", "sensor_id": str(sid),
                "lon": lon, "lat": lat, "score": round(float(peak[upper]) / limit, 3) if limit else np.inf,
                "source": SOURCE, "details": json.dumps(details, ensure_ascii=False)})
    if not rows:
        return empty("events")
    return validate(pd.DataFrame(rows).sort_values(["ts", "sensor_id"], ignore_index=True), "events")


# =========================================================================== known events


def melbourne_events() -> pd.DataFrame:
    """Known mass events in central Melbourne, 2012-2015, as a ``calendar`` table.

    Hand-compiled for the backtest on the City of Melbourne pedestrian counts
    (``safecity/data/melbourne_events.csv``; each row's public source is in its
    ``source`` column). Dates are those the sources state, or fixed by rule
    (the Grand Final parade is the day before the AFL Grand Final; Moomba is
    the Labour Day long weekend; the Melbourne Cup is the first Tuesday of
    November; the Boxing Day Test starts on 26 December). Times are local
    (AEST/AEDT) with their offset. Attendance is an order of magnitude from
    organisers or press ("approx" in the source column: taken from a
    neighbouring year or a typical figure), left empty where none was found;
    events without lon/lat cover the whole centre.
    """
    from safecity.data.calendars import read_calendar

    path = resources.files("safecity") / "data" / "melbourne_events.csv"
    with resources.as_file(path) as p:
        return read_calendar(p, tz="Australia/Melbourne")


def _fill_empty_columns(X: np.ndarray) -> np.ndarray:
    """``X`` with every all-NaN column set to 0 (a copy only when there is one)."""
    X = np.asarray(X, dtype=float)
    empty = np.isnan(X).all(axis=0) if len(X) else np.zeros(X.shape[1], bool)
    if not empty.any():
        return X
    X = X.copy()
    X[:, empty] = 0.0
    return X
