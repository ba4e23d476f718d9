"""Learn each sensor's usual level by time of week, and flag what departs from it, alone or city-wide.

An operator wants to hear about the Saturday night four times busier than
Saturday nights usually are, or the morning when half the city's counters read
half their usual level; not about every noisy minute. ``UsualLevel`` is a
scikit-learn estimator that learns, per sensor, the usual level of every slot of
the week on the city's calendar and scores new bins as standardised departures
from it. Around it, one module per idea:

* ``safecity.baseline.replay.replay_live``: scores new bins as the live model
  would, learning each day after scoring it (an explicit ``partial_fit``);
* ``safecity.baseline.periods``: ``alarm_periods`` turns the scores into alarm
  periods (one row per sensor run, or one per group when many sensors of a
  district or of the city depart together) with a one-line explanation, and
  ``anomaly_events`` turns those into ``events`` rows;
* ``safecity.baseline.calibration``: the thresholds, solved on a replay;
* ``grid`` (bins in local time), ``robust`` (medians, noise model) and
  ``alarms`` (runs of alarm bins, group shares): the parts they share.

    model = UsualLevel(rate=1 / 7).fit(history, calendar=events, sensors=sensors)
    periods = alarm_periods(model, replay_live(model, new_counts))

How it works, and why:

* Slots. A bin's slot is (day type, day of week, time of day) in local time
  (``tz``). The day type is normal, school holiday or public holiday (from the
  ``holidays`` and ``vacances-scolaires-france`` packages and the analyst's
  calendar): a school-holiday Tuesday is compared with school-holiday Tuesdays,
  because the school run is gone, not with term-time Tuesdays.
* A robust centre on a variance-stabilising scale. Counts are Poisson-like, so
  values are square-rooted (``transform``); the noise is then of one size at
  night and at noon, and a spread learnt over an hour of the day fits all its
  days. A slot's centre is the median of its last ``memory`` values: a past
  event or a broken counter cannot move it, and missing bins are absent from
  the median, never zeros.
* Borrowing strength. A slot without values takes the level of a wider pool,
  and one with fewer than ``min_history`` counts the pool's level as one more
  value in its median (two values and the pool's: the middle one, so one
  outlier among two weeks cannot move it). For a normal day the pools are the
  same time on weekdays (or weekend days), then on any day. For a holiday it is
  the normal day's level (the same weekday for a school holiday; a Sunday for a
  public holiday, the usual stand-in when no holiday has been seen) plus the
  holiday's own offset at that time of day learnt from the holiday slots seen:
  the school run missing from school-holiday Mondays is missing from the first
  school-holiday Tuesday too. Three days of history so give a level for every
  slot of the fourth, and each week moves weight onto the exact slot. Pools
  are medians of their days' centres, so that ``partial_fit`` only keeps
  per-slot state.
* Spread. The noise is measured without the centre, on pairs: a bin and the
  same local time a week earlier (a day earlier with less than eight days of
  history) of the same day type, whose difference has twice a bin's variance.
  Per sensor, its variance is a + b c^2 at level c (on the square-root scale a
  is Poisson noise, 1/4 for plain counts, and b the overdispersion), fitted on
  the pairs' robust spread in level bins, so quiet nights and busy noons each
  get theirs from a few days of data; a factor per local hour (weekdays and
  weekend days apart), shrunk toward 1 while it has few pairs, keeps what the
  level does not explain. A score divides the departure by that noise, widened
  by √(1 + π/2 / n) when n values stand behind the centre (a median's own
  error; a wider pool counts as one), floored at ``min_spread`` (½ on the
  square-root scale: one passer-by in an empty minute is not an alarm).
* Online. ``partial_fit`` moves a slot's centre toward each new value by a Huber
  step (the departure clipped at ``huber`` spreads, weight 1/n down to
  1/``memory``; a slot's first value is averaged with the wider pool's level,
  as in fit), and each hour's noise factor toward the clipped prediction
  error: one extreme night moves a level by a fraction of a spread. A slot
  whose value departs beyond ``huber`` spreads in the same direction
  ``memory // 2`` times in a row takes the new value as its level (a street
  closed for good, a sensor moved): as the median of the last ``memory``
  values would, a new normal becomes the usual level after half the memory.
* Calibrated alarms. A bin alarms when its |score| exceeds ``threshold_``; alarm
  bins of one sensor and one direction closer than ``merge_gap`` make one alarm
  period. ``threshold_`` is solved so that alarm periods per sensor-day equal
  ``rate`` when the last ``calibration_days`` of the history are replayed as they
  would have run live (a model fitted on the days before, updated by
  ``partial_fit`` every ``update_every``); ``realised_rate_`` is the rate
  reached on those days. Known calendar events (with ``EVENT_BEFORE_H`` and
  ``EVENT_AFTER_H`` around them) are left out of what is learnt and of the
  calibration days, as they are not the usual situation; they are never left
  out of what is scored.
* Groups. At each bin, the share of a group's reporting sensors scoring above
  +``group_z`` (or below -``group_z``) is compared with a threshold calibrated
  per group in the same replay at ``group_rate``; groups are the whole city and
  each value of ``group_col`` in the sensors table (a zone, a district). A group
  alarm is one anomaly that lists the sensors that departed; their own alarms
  in it are attached to it rather than repeated, so New Year's Eve is one
  city-wide anomaly, not thirty-nine.

Tables. ``UsualLevel`` reads the ``observations`` table (ts, sensor_id, value;
rows of other metrics than ``metric`` are left out) or a wide frame (a regular
UTC DatetimeIndex by sensor, as ``safecity.data.counts.hourly_counts``
returns). The bin is the data's own step. The periods table is described in
``safecity.baseline.periods``.
"""
from __future__ import annotations

import math
import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from safecity.baseline.alarms import CITY
from safecity.baseline.calibration import calibrate
from safecity.baseline.grid import NORMAL, PUBLIC, SCHOOL, Bins, Departures, bin_facts, chunks, to_matrix
from safecity.baseline.robust import blend, grouped_median, nanmedian, pair_spread
from safecity.config.city import DEFAULT_CITY
from safecity.data.counts import check_columns, sensor_positions
from safecity.data.geo import distance_m
from safecity.data.schema import validate
from safecity.data.time_features import (EVENT_AFTER_H, EVENT_BEFORE_H, HOLIDAYS_AHEAD_DAYS, Duration, TimeZone,
                                         shift_positions, with_holidays)

#: The variance of a median of n normal values is about π/2 times the mean's (σ²/n).
_MEDIAN_VAR = math.pi / 2


class UsualLevel(BaseEstimator):
    """Usual level of each sensor by slot of the week on the city's calendar; scores and alarms.

    Parameters
    ----------
    tz : the city's time zone: slots, days of week and holidays are local.
    rate : target alarm periods per sensor per day on normal data; sets ``threshold_``.
    group_rate : target group alarm periods per group per day (None: ``rate``).
    transform : "sqrt" (counts: Poisson noise becomes uniform), "log1p" or "none".
    min_history : values a slot needs to stand alone; with fewer it borrows from wider pools.
    memory : values per slot the centre remembers (weeks, for a weekday slot); also
        the slowest weight of an online update (1/memory).
    min_spread : floor of the spread on the transformed scale (None: 0.5 for sqrt, the
        Poisson noise; 0.05 for log1p; 1e-6 otherwise).
    huber : an online update clips a departure at this many spreads.
    merge_gap : alarm bins of a sensor at most this far apart make one period.
    group_z : a sensor departs, for its groups, beyond this standardised score.
    min_group_sensors : a group needs this many reporting sensors, and this many departing, to alarm.
    group_col : column of the sensors table that names a sensor's group (a zone); the
        city is always a group too.
    calibration_days : days at the end of the history replayed to calibrate the threshold
        (at most half the history).
    update_every : how often the live model learns from new bins (``partial_fit``), as
        the calibration and ``replay_live`` replay it; None: never.
    max_calibration_sensors : sensors drawn at random to calibrate (the threshold is global).
    country, subdiv : public holidays (``holidays`` package; None: none).
    school_zone : French school-holiday zone ("B": Marseille; None: none).
    exclude_events : leave calendar events out of what is learnt and of the calibration.
    calendar_radius_m : an event or roadworks concerns sensors within this distance
        (all of them when either has no position).
    metric : the observations' metric to model.
    random_state : seed of the calibration sample.

    Attributes
    ----------
    sensor_ids_ : the sensors, in the row order of every per-sensor array.
    freq_ : the bin; ``slots_per_day_`` bins per local day.
    day_types_ : codes of the day types seen (0 normal, 1 school holiday, 2 public holiday).
    level_, count_ : per sensor and slot (day type seen x 7 days x slots of the day), the
        robust centre on the transformed scale (NaN: no value yet) and the values behind it.
    streak_ : per sensor and slot, the run of online departures beyond ``huber`` spreads
        (positive above, negative below).
    profile_, profile_n_ : the usual level after borrowing from wider pools, and the
        effective number of values behind it (what ``score_samples`` uses).
    noise_ : per sensor, (a, b) of the noise variance a + b c^2 at level c (transformed scale).
    spread_, spread_n_ : per sensor, day class (weekday; weekend or public holiday) and
        local hour, the factor on that noise the level does not explain, and the values behind it.
    threshold_ : |score| above which a bin alarms; ``realised_rate_`` the alarm periods per
        sensor-day it gave on the calibration days, ``calibration_sensor_days_`` their amount,
        ``calibrated_`` False when the history was too short (then the threshold is the
        Gaussian one for ``rate``).
    groups_ : group name -> sensor ids; ``group_threshold_`` group -> share of departing
        sensors above which it alarms (never below ``MIN_GROUP_SHARE``; a group not
        calibrated uses the median of the others', else 0.5); ``group_realised_rate_``
        its rate on the calibration days.
    sensor_lonlat_ : sensor positions (NaN: unknown).
    calendar_ : the calendar in use (the analyst's plus holidays), up to ``calendar_end_``.
    end_ : the end of the last bin learnt.
    """

    _parameter_constraints: dict = {
        "tz": [TimeZone()],
        "rate": [Interval(Real, 0, None, closed="neither")],
        "group_rate": [Interval(Real, 0, None, closed="neither"), None],
        "transform": [StrOptions({"sqrt", "log1p", "none"})],
        "min_history": [Interval(Integral, 1, None, closed="left")],
        "memory": [Interval(Integral, 1, None, closed="left")],
        "min_spread": [Interval(Real, 0, None, closed="left"), None],
        "huber": [Interval(Real, 0, None, closed="neither")],
        "merge_gap": [Duration("0s")],
        "group_z": [Interval(Real, 0, None, closed="left")],
        "min_group_sensors": [Interval(Integral, 1, None, closed="left")],
        "group_col": [str, None],
        "calibration_days": [Interval(Integral, 0, None, closed="left")],
        "update_every": [Duration("1ns"), None],
        "max_calibration_sensors": [Interval(Integral, 1, None, closed="left")],
        "country": [str, None],
        "subdiv": [str, None],
        "school_zone": [StrOptions({"A", "B", "C"}), None],
        "exclude_events": ["boolean"],
        "calendar_radius_m": [Interval(Real, 0, None, closed="left")],
        "metric": [str, None],
        "random_state": [Interval(Integral, 0, None, closed="left"), None],
    }

    def __init__(self, tz: str = DEFAULT_CITY.tz, rate: float = 1.0, group_rate: float | None = None,
                 transform: str = "sqrt", min_history: int = 3, memory: int = 8,
                 min_spread: float | None = None, huber: float = 3.0, merge_gap: str = "1h",
                 group_z: float = 2.0, min_group_sensors: int = 3, group_col: str | None = "zone",
                 calibration_days: int = 365, update_every: str | None = "1D",
                 max_calibration_sensors: int = 2000, country: str | None = DEFAULT_CITY.country,
                 subdiv: str | None = DEFAULT_CITY.subdiv,
                 school_zone: str | None = DEFAULT_CITY.school_zone, exclude_events: bool = True,
                 calendar_radius_m: float = 1500.0, metric: str | None = "people_count",
                 random_state: int | None = 0):
        self.tz = tz
        self.rate = rate
        self.group_rate = group_rate
        self.transform = transform
        self.min_history = min_history
        self.memory = memory
        self.min_spread = min_spread
        self.huber = huber
        self.merge_gap = merge_gap
        self.group_z = group_z
        self.min_group_sensors = min_group_sensors
        self.group_col = group_col
        self.calibration_days = calibration_days
        self.update_every = update_every
        self.max_calibration_sensors = max_calibration_sensors
        self.country = country
        self.subdiv = subdiv
        self.school_zone = school_zone
        self.exclude_events = exclude_events
        self.calendar_radius_m = calendar_radius_m
        self.metric = metric
        self.random_state = random_state

    # ------------------------------------------------------------------ fit

    def fit(self, X: pd.DataFrame, y=None, *, calendar: pd.DataFrame | None = None,
            sensors: pd.DataFrame | None = None) -> "UsualLevel":
        """Learn the usual levels from ``X`` and calibrate the alarm thresholds.

        ``calendar``: the analyst's calendar (events, holidays, roadworks) on top of
        the public and school holidays. ``sensors``: sensor_id with lon, lat (to
        place events, anomalies and group centroids) and ``group_col`` (groups).
        """
        self._validate_params()
        index, ids, Y, step = to_matrix(X, self.metric)
        return self.fit_matrix(index, ids, Y, step, calendar=calendar, sensors=sensors)

    def fit_matrix(self, index: pd.DatetimeIndex, ids: np.ndarray, Y: np.ndarray, step: pd.Timedelta, *,
                   calendar: pd.DataFrame | None = None, sensors: pd.DataFrame | None = None,
                   calibrate_thresholds: bool = True) -> "UsualLevel":
        """``fit`` on a grid already made (``grid.to_matrix``: UTC bins, sensor ids, sensors x bins).

        Every per-sensor array depends on that sensor's row, the grid and the
        calendar only, so a cluster fits sensors apart on the same grid; the
        thresholds are global, solved once on the calibration sample
        (``calibrate_thresholds=False`` leaves them to the caller,
        ``safecity.cluster.history``).
        """
        self._validate_params()
        self._setup(index, ids, step, calendar, sensors)
        bins = self._bins_for(index)
        self.day_types_ = tuple(int(t) for t in np.unique(bins.day_type))
        if calibrate_thresholds:
            calibrate(self, index, Y, bins)
        self._learn(index, Y, bins, self._event_mask(index, np.arange(len(ids))))
        return self

    def partial_fit(self, X: pd.DataFrame, y=None, *, calendar: pd.DataFrame | None = None,
                    sensors: pd.DataFrame | None = None) -> "UsualLevel":
        """Learn from new bins (a fitted model moves toward them; an unfitted one is fitted).

        New sensors are added (they get levels as their history grows). The
        threshold is kept: the calibration replayed exactly these updates.
        ``calendar`` adds rows (say, an event announced since fit).
        """
        if not hasattr(self, "level_"):
            return self.fit(X, calendar=calendar, sensors=sensors)
        index, ids, Y, _ = to_matrix(X, self.metric, self.freq_)
        self._add_calendar(calendar)
        rows = self._rows(ids, add=True)
        if sensors is not None:
            self._set_sensors(sensors)
        self.calendar_, self.calendar_start_, self.calendar_end_ = self._calendar_over(index)
        bins = self._bins_for(index)
        self._update(index, Y, rows, bins, self._event_mask(index, rows))
        return self

    # ------------------------------------------------------------------ scores

    def score_samples(self, X: pd.DataFrame) -> pd.DataFrame:
        """Signed standardised departure of each bin from the usual level (bins x sensors; NaN: not scored).

        Positive is above the usual level. Unknown sensors, missing bins and slots
        without history are NaN.
        """
        index, ids, Y, rows, bins = self._prepare(X)
        z = np.full(Y.shape, np.nan, np.float32)
        known = np.nonzero(rows >= 0)[0]
        for part in chunks(len(known), len(index)):
            sel = known[part]
            z[sel] = self._score(Y[sel], rows[sel], bins)[0]
        return pd.DataFrame(z.T, index=index, columns=pd.Index(ids, name="sensor_id"), copy=False)

    def expected_level(self, X: pd.DataFrame) -> pd.DataFrame:
        """The usual value of each bin of ``X`` on the original scale (bins x sensors)."""
        index, ids, Y, rows, bins = self._prepare(X)
        out = np.full(Y.shape, np.nan, np.float32)
        known = np.nonzero(rows >= 0)[0]
        for part in chunks(len(known), len(index)):
            sel = known[part]
            out[sel] = self._inverse(self._centre(rows[sel], bins)[0])
        return pd.DataFrame(out.T, index=index, columns=pd.Index(ids, name="sensor_id"), copy=False)

    def decision_function(self, X: pd.DataFrame) -> pd.DataFrame:
        """``threshold_ - |score|``: negative where a bin alarms (scikit-learn's outlier convention)."""
        return self.threshold_ - self.score_samples(X).abs()

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per bin and sensor: -1 alarm, 1 usual, 0 not scored (scikit-learn's outlier convention, plus 0)."""
        z = self.score_samples(X)
        flags = np.where(z.isna(), 0, np.where(z.abs() > self.threshold_, -1, 1)).astype(np.int8)
        return pd.DataFrame(flags, index=z.index, columns=z.columns)

    def departures(self, X: pd.DataFrame) -> Departures:
        """Scores of ``X`` with everything the periods table reads: observed values, centre, scale, day type.

        Like every scoring method, it leaves the model as it is; to score data as
        a live model would, learning as it goes, see ``safecity.baseline.replay``.
        """
        index, ids, Y, rows, bins = self._prepare(X)
        z, centre, scale = (np.full(Y.shape, np.nan, np.float32) for _ in range(3))
        known = np.nonzero(rows >= 0)[0]
        for part in chunks(len(known), len(index)):
            sel = known[part]
            z[sel], centre[sel], scale[sel] = self._score(Y[sel], rows[sel], bins)
        return Departures(index, ids, Y, z, centre, scale, bins.day_type)

    # ------------------------------------------------------------------ internals: set-up

    def _setup(self, index, ids, step, calendar, sensors) -> None:
        self.freq_ = step
        self.slots_per_day_ = int(pd.Timedelta(days=1) / step)
        self.sensor_ids_ = np.asarray(ids, dtype=object)
        self._set_sensors(sensors)
        self.calendar_start_ = index[0] - pd.Timedelta(days=1)
        self.calendar_end_ = index[-1] + pd.Timedelta(days=HOLIDAYS_AHEAD_DAYS)
        self.calendar_ = with_holidays(calendar, self.calendar_start_, self.calendar_end_,
                                        self.tz, self.country, self.subdiv, self.school_zone)

    def _set_sensors(self, sensors: pd.DataFrame | None) -> None:
        """Positions and groups from the sensors table (kept for sensors that come later)."""
        if sensors is not None:
            check_columns(sensors, "sensors", ("sensor_id",))
            table = sensors.assign(sensor_id=sensors["sensor_id"].astype(str)).drop_duplicates("sensor_id")
            self.sensors_ = table
        table = getattr(self, "sensors_", None)
        if table is not None and {"lon", "lat"} <= set(table.columns):
            self.sensor_lonlat_ = sensor_positions(table, self.sensor_ids_)
        else:
            self.sensor_lonlat_ = np.full((len(self.sensor_ids_), 2), np.nan)
        groups: dict[str, list[str]] = {}
        if table is not None and self.group_col and self.group_col in table.columns:
            known = set(map(str, self.sensor_ids_))
            for name, members in table.dropna(subset=[self.group_col]).groupby(self.group_col)["sensor_id"]:
                members = sorted(m for m in members if m in known)
                if len(members) >= self.min_group_sensors and str(name) != CITY:
                    groups[str(name)] = members
        self.groups_ = groups

    def _add_calendar(self, calendar: pd.DataFrame | None) -> None:
        if calendar is not None and len(calendar):
            both = pd.concat([self.calendar_, validate(calendar, "calendar")], ignore_index=True)
            self.calendar_ = validate(both.drop_duplicates("calendar_id", keep="last"), "calendar")

    def _bins_for(self, index: pd.DatetimeIndex) -> Bins:
        """Bin facts for ``index``; holidays are looked up again (not kept) when it runs past those known."""
        return bin_facts(index, self.freq_, self.tz, self._calendar_over(index)[0])

    def _calendar_over(self, index: pd.DatetimeIndex):
        """The calendar with the holidays of ``index``: (calendar, start, end of the holidays looked up)."""
        if index[-1] < self.calendar_end_ and index[0] >= self.calendar_start_:
            return self.calendar_, self.calendar_start_, self.calendar_end_
        start = min(index[0], self.calendar_start_) - pd.Timedelta(days=1)
        end = max(index[-1], self.calendar_end_) + pd.Timedelta(days=HOLIDAYS_AHEAD_DAYS)
        return with_holidays(self.calendar_, start, end, self.tz, self.country, self.subdiv,
                             self.school_zone), start, end

    def _rows(self, ids: np.ndarray, add: bool) -> np.ndarray:
        """Model rows of ``ids`` (-1: unknown); with ``add`` unknown sensors get new, empty rows."""
        where = {s: i for i, s in enumerate(self.sensor_ids_)}
        new = [s for s in ids if s not in where]
        if add and new:
            n = len(new)
            self.sensor_ids_ = np.r_[self.sensor_ids_, np.asarray(new, dtype=object)]
            grow = lambda a, fill: np.concatenate([a, np.full((n,) + a.shape[1:], fill, a.dtype)])  # noqa: E731
            self.level_ = grow(self.level_, np.nan)
            self.count_ = grow(self.count_, 0)
            self.streak_ = grow(self.streak_, 0)
            self.profile_ = grow(self.profile_, np.nan)
            self.profile_n_ = grow(self.profile_n_, 0)
            self.noise_ = grow(self.noise_, np.nan)
            self.spread_ = grow(self.spread_, 1.0)
            self.spread_n_ = grow(self.spread_n_, 0)
            self._set_sensors(None)
            where = {s: i for i, s in enumerate(self.sensor_ids_)}
        return np.array([where.get(s, -1) for s in ids], dtype=np.int64)

    def _prepare(self, X):
        check_is_fitted(self, "level_")
        index, ids, Y, _ = to_matrix(X, self.metric, self.freq_)
        return index, ids, Y, self._rows(ids, add=False), self._bins_for(index)

    def _event_mask(self, index: pd.DatetimeIndex, rows: np.ndarray) -> list[tuple[slice, np.ndarray]]:
        """(bins, sensors) pairs to leave out of learning: calendar events with their arrival and departure."""
        if not self.exclude_events or self.calendar_.empty:
            return []
        before, after = pd.Timedelta(hours=EVENT_BEFORE_H), pd.Timedelta(hours=EVENT_AFTER_H)
        ev = self.calendar_[(self.calendar_["kind"] == "event") & (self.calendar_["end"] + after > index[0])
                            & (self.calendar_["start"] - before < index[-1] + self.freq_)]
        t = index.asi8
        out = []
        for row in ev.itertuples(index=False):
            lo = np.searchsorted(t, (row.start - before - self.freq_).value, side="right")
            hi = np.searchsorted(t, (row.end + after).value, side="left")
            if hi > lo:
                out.append((slice(lo, hi), self._near(row, rows)))
        return out

    def _near(self, row, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` a placed happening concerns (all when it or the sensor has no position)."""
        near = np.ones(len(rows), bool)
        if pd.isna(row.lon) or pd.isna(row.lat):
            return near
        lonlat = self.sensor_lonlat_[np.maximum(rows, 0)]
        placed = np.isfinite(lonlat).all(axis=1) & (rows >= 0)
        near[placed] = distance_m(lonlat[placed, 0], lonlat[placed, 1], row.lon, row.lat) \
            <= self.calendar_radius_m
        return near

    # ------------------------------------------------------------------ internals: transform

    def _forward(self, Y: np.ndarray) -> np.ndarray:
        if self.transform == "sqrt":
            return np.sqrt(np.maximum(Y, 0, dtype=np.float32))
        if self.transform == "log1p":
            return np.log1p(np.maximum(Y, 0, dtype=np.float32))
        return np.array(Y, dtype=np.float32, copy=True)

    def _inverse(self, Z: np.ndarray) -> np.ndarray:
        if self.transform == "sqrt":
            return np.square(np.maximum(Z, 0))
        if self.transform == "log1p":
            return np.expm1(np.maximum(Z, 0))
        return Z

    def _floor(self) -> float:
        if self.min_spread is not None:
            return float(self.min_spread)
        return {"sqrt": 0.5, "log1p": 0.05}.get(self.transform, 1e-6)

    # ------------------------------------------------------------------ internals: slots

    def _n_slots(self) -> int:
        return len(self.day_types_) * 7 * self.slots_per_day_

    def _slot_keys(self, bins: Bins, learn: bool) -> np.ndarray:
        """Flat slot of each bin in ``level_`` (learn) or ``profile_`` (score: unseen day types stand in)."""
        pos = np.full(3, -1)
        for i, t in enumerate(self.day_types_):
            pos[t] = i
        d = pos[bins.day_type]
        dow = bins.dow.astype(np.int64)
        if not learn and (d < 0).any():
            # A day type never seen is scored on the normal day's profile (a Sunday's for a public holiday).
            base = pos[NORMAL] if pos[NORMAL] >= 0 else 0
            unseen = d < 0
            dow = np.where(unseen & (bins.day_type == PUBLIC), 6, dow)
            d = np.where(unseen, base, d)
        return ((d * 7 + dow) * self.slots_per_day_ + bins.slot).astype(np.int64)

    def _slot_noise_keys(self) -> np.ndarray:
        """The (day class, hour) noise key of every slot of ``level_``."""
        P = self.slots_per_day_
        d, dow, p = np.unravel_index(np.arange(self._n_slots()), (len(self.day_types_), 7, P))
        hour = (p * int(self.freq_.total_seconds())) // 3600
        weekend = (dow >= 5) | (np.asarray(self.day_types_)[d] == PUBLIC)
        return (weekend.astype(np.int64) * 24 + hour).astype(np.int64)

    def _add_day_types(self, bins: Bins) -> None:
        """Make room in the per-slot arrays for day types seen for the first time."""
        new = sorted(set(np.unique(bins.day_type).tolist()) - set(self.day_types_))
        if not new:
            return
        types = tuple(sorted(self.day_types_ + tuple(new)))
        S, P = len(self.sensor_ids_), self.slots_per_day_

        def regrow(a, fill):
            out = np.full((S, len(types), 7, P), fill, a.dtype)
            old = a.reshape(S, len(self.day_types_), 7, P)
            for i, t in enumerate(self.day_types_):
                out[:, types.index(t)] = old[:, i]
            return out.reshape(S, -1)

        self.level_ = regrow(self.level_, np.nan)
        self.count_ = regrow(self.count_, 0)
        self.streak_ = regrow(self.streak_, 0)
        self.profile_ = regrow(self.profile_, np.nan)
        self.profile_n_ = regrow(self.profile_n_, 0)
        self.day_types_ = types

    # ------------------------------------------------------------------ internals: learning

    def _learn(self, index: pd.DatetimeIndex, Y: np.ndarray, bins: Bins, masks) -> None:
        """Batch fit of levels and spreads on ``Y`` (sensors x bins, the model's rows in order)."""
        S, T = Y.shape
        key = self._slot_keys(bins, learn=True)
        n_slots = self._n_slots()
        self.level_ = np.full((S, n_slots), np.nan, np.float32)
        self.count_ = np.zeros((S, n_slots), np.uint16)
        self.streak_ = np.zeros((S, n_slots), np.int8)
        self.noise_ = np.full((S, 2), np.nan, np.float32)
        self.spread_ = np.ones((S, 48), np.float32)
        self.spread_n_ = np.zeros((S, 48), np.float32)
        span_days = (index[-1] - index[0]) / pd.Timedelta(days=1)
        lag = 7 if span_days >= 8 else 1
        partner = shift_positions(index, self.tz, lag)
        ok = partner >= 0
        safe = np.maximum(partner, 0)
        ok &= bins.day_type[safe] == bins.day_type
        if lag == 1:
            ok &= bins.weekend[safe] == bins.weekend
        pair_cols = np.nonzero(ok)[0]
        pair_key = (bins.weekend.astype(np.int64) * 24 + bins.hour)[pair_cols]
        slot_hk = self._slot_noise_keys()
        for part in chunks(S, T):
            Z = self._forward(Y[part])
            for span, near in masks:
                Z[np.nonzero(near[part])[0][:, None], np.arange(span.start, span.stop)[None, :]] = np.nan
            if len(pair_cols):
                self.noise_[part], self.spread_[part], self.spread_n_[part] = \
                    pair_spread(Z, pair_cols, partner, pair_key)
            level, count = grouped_median(Z, key, n_slots, self.memory)
            # Again, with the wider pools' centre standing in for the values a slot lacks.
            _, _, parent, _ = self._pools(level, count)
            rows = np.arange(S)[part]
            clip = self.huber * self._noise(rows, parent, slot_hk)
            level, _ = grouped_median(Z, key, n_slots, self.memory, prior=parent, k=self.min_history,
                                       clip=clip)
            self.level_[part] = level
            self.count_[part] = np.minimum(count, np.iinfo(np.uint16).max)
        self._refresh()
        self.end_ = index[-1] + self.freq_

    def _refresh(self, rows: np.ndarray | None = None) -> None:
        """Recompute ``profile_`` and ``profile_n_`` from the per-slot state (after fit or an update)."""
        if not hasattr(self, "profile_") or self.profile_.shape != self.level_.shape:
            self.profile_ = np.full(self.level_.shape, np.nan, np.float32)
            self.profile_n_ = np.zeros(self.level_.shape, np.uint8)
        idx = np.arange(len(self.sensor_ids_)) if rows is None else np.asarray(rows)
        for part in chunks(len(idx), self._n_slots() * 4):
            sel = idx[part]
            prof, neff, _, _ = self._pools(self.level_[sel], self.count_[sel])
            self.profile_[sel] = prof
            self.profile_n_[sel] = np.minimum(np.round(neff), 255).astype(np.uint8)

    def _pools(self, level: np.ndarray, count: np.ndarray):
        """The usual level of every slot after borrowing from wider pools, for some sensors' slot state.

        Returns (profile, effective values behind it, the wider pools' centre, its values),
        each (sensors x slots). A slot with values is its own centre (shrunk toward
        the wider pools while it has few, see ``grouped_median``); an empty one
        takes the wider pools'. For a normal day those are the same time on
        weekdays (or weekend days), then on any day, then on any day of any type.
        A pool's centre is the median of its days' levels (each day of the week
        counts once: a robust centre, and a sort of at most seven values).
        For a holiday it is the normal day's level (the same weekday for a school
        holiday, a Sunday for a public holiday) plus the holiday's own offset at
        that time of day, the median over the holiday slots seen (of the same
        weekday group first): the school run missing from school-holiday Mondays
        is missing from the Tuesday not seen yet, while a school-holiday Sunday
        stays a Sunday. Each pool is blended with the next while it has fewer
        than ``min_history`` values, an offset with zero.
        """
        D, P = len(self.day_types_), self.slots_per_day_
        n_rows = len(level)
        L = level.reshape(n_rows, D, 7, P)
        N = count.reshape(n_rows, D, 7, P).astype(np.float32)
        k = float(self.min_history)
        prof = np.full(L.shape, np.nan, np.float32)
        neff = np.zeros(L.shape, np.float32)
        parent = np.full(L.shape, np.nan, np.float32)
        parent_n = np.zeros(L.shape, np.float32)
        normal = self.day_types_.index(NORMAL) if NORMAL in self.day_types_ else None
        zero = np.zeros((n_rows, P), np.float32)

        def pooled(x, n, days):  # median of some days' levels, and their values -> (sensors, P)
            med, _ = nanmedian(np.moveaxis(x[:, days], 1, 2))
            return med, n[:, days].sum(1)

        if D > 1:
            all_c, _ = nanmedian(np.moveaxis(L, 3, 1).reshape(n_rows, P, D * 7))
            all_n = N.sum((1, 2))

        wk, we, week = list(range(5)), [5, 6], list(range(7))
        for i in sorted(range(D), key=lambda j: self.day_types_[j] != NORMAL):  # normal days first
            t = self.day_types_[i]
            A, nA = L[:, i], N[:, i]
            if t == NORMAL or normal is None:
                C, nC = pooled(A, nA, week)
                est, n = blend(C, nC, all_c, all_n, k) if D > 1 else (C, nC)
                B_wk, n_wk = pooled(A, nA, wk)
                B_we, n_we = pooled(A, nA, we)
                est_wk, n1 = blend(B_wk, n_wk, est, n, k)
                est_we, n2 = blend(B_we, n_we, est, n, k)
                est = np.stack([est_wk] * 5 + [est_we] * 2, axis=1)
                n = np.stack([n1] * 5 + [n2] * 2, axis=1)
            else:
                if t == SCHOOL:
                    ref, nref = prof[:, normal], neff[:, normal]
                else:  # a public holiday is a Sunday, until public holidays say otherwise
                    ref = np.repeat(prof[:, normal, 6:7], 7, 1)
                    nref = np.repeat(neff[:, normal, 6:7], 7, 1)
                delta = A - ref
                d_all, n_all = pooled(delta, nA, week)
                off, _ = blend(d_all, n_all, zero, zero, k)
                offs = []
                for days in (wk, we):
                    d_g, n_g = pooled(delta, nA, days)
                    offs.append(blend(d_g, n_g, off, n_all, k)[0] if t == SCHOOL else off)
                est = ref + np.stack([offs[0]] * 5 + [offs[1]] * 2, axis=1)
                n = nref
            parent[:, i], parent_n[:, i] = est, n
            own = (nA > 0) & ~np.isnan(A)
            prof[:, i] = np.where(own, A, est)
            # A wider pool's centre is about this slot as good as one value of it (its
            # bias for this day and hour is unknown), as in the slot's shrunk median.
            neff[:, i] = np.where(own, nA + (nA < k), np.where(np.isnan(est), 0.0, 1.0))
        shape = (n_rows, -1)
        return prof.reshape(shape), neff.reshape(shape), parent.reshape(shape), parent_n.reshape(shape)

    def _centre(self, rows: np.ndarray, bins: Bins):
        """Usual level (transformed scale) and score scale of each bin, for model ``rows``."""
        key = self._slot_keys(bins, learn=False)
        centre = self.profile_[rows][:, key]
        n = self.profile_n_[rows][:, key].astype(np.float32)
        centre = np.where(n > 0, centre, np.nan)
        sig = self._noise(rows, centre, bins)
        scale = sig * np.sqrt(1 + _MEDIAN_VAR / np.maximum(n, 1))
        return centre, scale

    def _noise(self, rows: np.ndarray, centre: np.ndarray, bins) -> np.ndarray:
        """A bin's noise on the transformed scale: the sensor's a + b c^2 times its hour's factor, floored.

        ``bins`` is a ``Bins`` or directly the (day class, hour) key of each column.
        """
        a, b = self.noise_[rows, :1], self.noise_[rows, 1:]
        hk = bins if isinstance(bins, np.ndarray) else bins.weekend.astype(np.int64) * 24 + bins.hour
        factor = self.spread_[rows][:, hk]
        with np.errstate(invalid="ignore"):
            sig = np.sqrt(a + b * centre ** 2) * factor
        return np.fmax(sig, self._floor())

    def _score(self, Y: np.ndarray, rows: np.ndarray, bins: Bins):
        centre, scale = self._centre(rows, bins)
        z = (self._forward(Y) - centre) / scale
        return z.astype(np.float32), centre, scale

    def _update(self, index, Y, rows, bins, masks) -> None:
        """Online update (``partial_fit``) of levels and spreads with new bins, in time order."""
        self._add_day_types(bins)
        Z = self._forward(Y)
        for span, near in masks:
            Z[np.nonzero(near)[0][:, None], np.arange(span.start, span.stop)[None, :]] = np.nan
        centre, scale = self._centre(rows, bins)  # the prediction before this update
        hk = bins.weekend.astype(np.int64) * 24 + bins.hour
        sig = self._noise(rows, centre, bins)
        key = self._slot_keys(bins, learn=True)
        memory, k = float(self.memory), float(self.min_history)
        # Rounds: the r-th occurrence of each slot in this call; slots within a round are distinct.
        order = np.argsort(key, kind="stable")
        first = np.r_[0, np.nonzero(np.diff(key[order]))[0] + 1]
        rank = np.empty(len(key), np.int64)
        rank[order] = np.arange(len(key)) - np.repeat(first, np.diff(np.r_[first, len(key)]))
        for r in range(int(rank.max()) + 1 if len(rank) else 0):
            cols = np.nonzero(rank == r)[0]
            f = key[cols]
            m = self.level_[rows[:, None], f[None, :]]
            n = self.count_[rows[:, None], f[None, :]].astype(np.float32)
            x = Z[:, cols]
            prior = np.where(n > 0, m, centre[:, cols])
            limit = self.huber * sig[:, cols]
            step = np.clip(x - prior, -limit, limit)
            # Weight 1/n, counting the wider pool as one more value while the slot
            # has fewer than min_history (as fit does), and no less than 1/memory.
            weight = 1.0 / np.minimum(n + 1 + (n < k), max(memory, 2.0))
            new = np.where(np.isnan(prior), x, prior + step * weight)
            ok = ~np.isnan(x)
            n_new = np.where(ok, np.minimum(n + 1, 65535), n)
            # A run of departures beyond the clip in one direction is a new normal.
            run = self.streak_[rows[:, None], f[None, :]].astype(np.int16)
            with np.errstate(invalid="ignore"):
                above, below = ok & (x - prior > limit), ok & (x - prior < -limit)
            run = np.where(above, np.maximum(run, 0) + 1, np.where(below, np.minimum(run, 0) - 1,
                                                                   np.where(ok, 0, run)))
            moved = np.abs(run) >= max(2, self.memory // 2)
            new, n_new, run = np.where(moved, x, new), np.where(moved, 1, n_new), np.where(moved, 0, run)
            self.level_[rows[:, None], f[None, :]] = np.where(ok, new, m)
            self.count_[rows[:, None], f[None, :]] = n_new
            self.streak_[rows[:, None], f[None, :]] = np.clip(run, -127, 127)
        # Noise: the hour's factor follows the prediction error (in units of the modelled
        # noise, less the centre's own share, clipped at huber), as an exponential average
        # over about ``memory`` weeks of that hour. A sensor without a noise model yet
        # (new, or too short a history) gets one from its first errors.
        self._update_noise(rows, Z, centre, scale, sig, bins, hk)
        self._refresh(np.unique(rows))
        self.end_ = max(self.end_, index[-1] + self.freq_)

    def _update_noise(self, rows, Z, centre, scale, sig, bins, hk) -> None:
        a, b = self.noise_[rows, :1], self.noise_[rows, 1:]
        model = np.sqrt(np.fmax(a + b * centre ** 2, 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = (Z - centre) / (scale / sig)  # the bin's own noise, the centre's share removed
            u2 = np.minimum((resid / model) ** 2, (self.huber * sig / model) ** 2)
        missing = np.isnan(self.noise_[rows, 0])
        if missing.any():
            # Poisson-like start: a from the quiet bins, b from the busy ones (as in fit, by pairs).
            ok = np.isfinite(Z) & np.isfinite(centre)
            r2 = np.where(ok, (Z - centre) ** 2, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                var = np.nanmedian(r2, axis=1) / 0.455  # median of chi-square(1)
            got = missing & np.isfinite(var) & (ok.sum(1) >= 3)
            sel = rows[got]
            self.noise_[sel, 0] = var[got]
            self.noise_[sel, 1] = 0.0
        per_hour = max(pd.Timedelta(hours=1) / self.freq_, 1.0)
        weekly = np.r_[np.full(24, 5 * per_hour), np.full(24, 2 * per_hour)]
        memory = float(self.memory)
        for k in np.unique(hk):
            cols = np.nonzero(hk == k)[0]
            e = u2[:, cols]
            cnt = np.isfinite(e).sum(1).astype(np.float32)
            has = cnt > 0
            if not has.any():
                continue
            mean = np.where(has, np.nansum(np.where(np.isfinite(e), e, 0), 1) / np.maximum(cnt, 1), np.nan)
            f_old = self.spread_[rows, k].astype(np.float64)
            n_old = self.spread_n_[rows, k]
            beta = 1.0 / np.minimum(n_old + 1, memory * weekly[k])
            keep = (1 - beta) ** cnt
            f2 = keep * f_old ** 2 + (1 - keep) * mean
            self.spread_[rows, k] = np.where(has & np.isfinite(f2), np.sqrt(f2), f_old)
            self.spread_n_[rows, k] = n_old + cnt


    # ------------------------------------------------------------------ internals: groups


    def _gap(self) -> int:
        return int(pd.Timedelta(self.merge_gap) // self.freq_)

    def _all_groups(self) -> dict[str, list[str]]:
        groups = {CITY: list(map(str, self.sensor_ids_))} if len(self.sensor_ids_) >= self.min_group_sensors \
            else {}
        groups.update(self.groups_)
        return groups
