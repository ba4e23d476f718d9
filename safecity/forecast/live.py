"""Keep a gathering forecast fresh on live data: refit nightly, forecast the next hours every hour, alert once.

``GatheringForecaster`` takes a minute or more to fit on a city's history, too
long for a request, and its forecast goes stale as the hours pass. A
``ForecastSchedule`` says what is due at a given time (``due(now)``): a refit
once a night (at ``refit_at`` local time; the engine runs ``refit`` in a
background thread, or ``start_refit`` does), and a refresh once an hour
(``refresh(now)``: the forecast table of the next ``horizon`` with its
interval, from the model and the observations received since it was fitted,
and the ``gathering_forecast`` events of ``safecity.forecast.alerts``).
Nothing reads a clock: ``now`` is the engine's.

    schedule = ForecastSchedule(GatheringForecaster(), sensors=sensors, capacity=capacities)
    if schedule.due(now) is Due.REFIT:
        schedule.start_refit(lambda: (store.read("observations"), store.read("calendar")), now)
    elif schedule.due(now) is Due.REFRESH:
        table, events = schedule.refresh(now)
    schedule.observe(new_rows)                  # on every post: the lags of the next refresh

One alert per gathering. A refresh every hour sees the same gathering again,
often with another peak hour or value, and an event row is immutable in the
store (the same id with other values is a conflict). So an alert is raised
once per zone and run of hours above capacity: its id is
``gathering_forecast-<zone>-<peak hour>`` of the first forecast that saw it,
and a later run of that zone overlapping the hours of one already raised is
the same gathering and is not raised again. The numbers of later refreshes
are in the forecast table (the page's map), not in new events. ``remember``
tells a schedule started after a restart what the store already holds.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import pandas as pd
from sklearn.base import clone

from safecity.data.counts import OBSERVATION_COLUMNS, aggregate_zones, check_columns, hourly_counts
from safecity.data.schema import empty, validate
from safecity.forecast.alerts import gathering_alerts
from safecity.forecast.model import GatheringForecaster
from safecity.forecast.table import QUANTILES, forecast_hours

KIND = "gathering_forecast"


class Due(str, Enum):
    """What a schedule asks for at a given time."""

    REFIT = "refit"
    REFRESH = "refresh"
    NOTHING = "nothing"


@dataclass(frozen=True)
class ForecastPlan:
    """When to refit and refresh, what to forecast, and when to alert.

    refit_at : local time of the nightly refit (the city's quiet hours).
    refresh_every : how often the forecast is issued again (on the clock: every hour on the hour).
    horizon : how far each forecast looks ahead (at most the model's horizon).
    by_zone : forecast each zone's total (the sensors table's ``zone``), as the
        page's map shows; False: each sensor.
    lead_time, upper : passed to ``gathering_alerts``: only hours at least this far
        ahead alert, when the ``upper`` quantile exceeds the capacity.
    quantiles : of the forecast table (the lowest and highest make the interval).
    """

    refit_at: str = "03:00"
    refresh_every: str = "1h"
    horizon: str = "24h"
    by_zone: bool = True
    lead_time: str = "6h"
    upper: str = "q90"
    quantiles: tuple[float, ...] = QUANTILES


class ForecastSchedule:
    """A ``GatheringForecaster`` kept fitted and its forecast kept fresh, with ``gathering_forecast`` alerts.

    ``template`` is the unfitted forecaster whose parameters each refit uses
    (its ``tz`` is the schedule's); ``model`` a fitted one to start with, if
    any. ``sensors`` (sensor_id, lon, lat, zone) groups sensors into zones and
    places the alerts. ``capacity``: one number, or a mapping from zone (or
    sensor) to its capacity; None raises no alert.
    """

    def __init__(self, template: GatheringForecaster | None = None, *, sensors: pd.DataFrame | None = None,
                 capacity: float | Mapping | pd.Series | None = None, plan: ForecastPlan = ForecastPlan(),
                 model: GatheringForecaster | None = None):
        self.template = template if template is not None else GatheringForecaster(horizon=plan.horizon)
        self.plan = plan
        self.capacity = capacity
        if plan.by_zone and sensors is None:
            raise ValueError("a forecast by zone needs the sensors table (sensor_id, lon, lat, zone)")
        self.sensors = sensors
        self.tz = self.template.tz
        self.model = model
        self.fitted_at = None if model is None else model.end_
        self.issued_at: pd.Timestamp | None = None
        self.last_error: BaseException | None = None
        self._table: pd.DataFrame | None = None
        self._version = 0 if model is None else 1
        self._refreshed_version = 0
        self._attempt_at = self.fitted_at  # the last refit started
        self._refitting = False
        self._recent: list[pd.DataFrame] = []
        self._raised: dict[str, list[tuple[pd.Timestamp, pd.Timestamp, str]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ what is due

    def due(self, now) -> Due:
        """``REFIT`` before the first fit (at most once per ``refresh_every`` while it fails) and
        once a night after ``refit_at``; ``REFRESH`` once per ``refresh_every`` and after a refit;
        else ``NOTHING``. A refit under way is not due again."""
        now = _utc(now)
        every = pd.Timedelta(self.plan.refresh_every)
        with self._lock:
            if not self._refitting:
                if self.model is None:
                    if self._attempt_at is None or now - self._attempt_at >= every:
                        return Due.REFIT
                elif self._attempt_at is None or self._night(now) > self._night(self._attempt_at):
                    return Due.REFIT
            if self.model is not None and (self.issued_at is None or now.floor(every) > self.issued_at.floor(every)
                                           or self._refreshed_version != self._version):
                return Due.REFRESH
        return Due.NOTHING

    def _night(self, t: pd.Timestamp) -> pd.Timestamp:
        """The last refit time (``refit_at`` local) at or before ``t``."""
        at = pd.Timedelta(f"{self.plan.refit_at}:00" if self.plan.refit_at.count(":") == 1 else self.plan.refit_at)
        local = t.tz_convert(self.tz)
        day = local.tz_localize(None).normalize()
        slot = (day + at).tz_localize(self.tz, ambiguous=True, nonexistent="shift_forward")
        if slot > local:
            slot = (day - pd.Timedelta(days=1) + at).tz_localize(self.tz, ambiguous=True,
                                                                 nonexistent="shift_forward")
        return slot.tz_convert("UTC")

    # ------------------------------------------------------------------ the jobs

    def refit(self, history: pd.DataFrame, calendar: pd.DataFrame | None = None, *,
              now=None) -> GatheringForecaster:
        """Fit a new model on ``history`` (the observations table) and swap it in; the nightly job.

        Meant for a background thread: the current model keeps serving until
        the new one is ready. ``now`` (default: the end of the history) is when
        the refit ran, for ``due``.
        """
        check_columns(history, "observations", OBSERVATION_COLUMNS)
        now = _utc(now) if now is not None else pd.to_datetime(history["ts"], utc=True).max()
        with self._lock:
            self._attempt_at = now if self._attempt_at is None else max(self._attempt_at, now)
        data, positions = self._level(history)
        model = clone(self.template).fit(data, calendar=calendar, sensors=positions)
        with self._lock:
            self.model = model
            self.fitted_at = now
            self._version += 1
            # rows before the new model's history are in it now
            self._recent = [r[r["ts"] >= model.end_ - pd.Timedelta(days=1)] for r in self._recent]
        return model

    def start_refit(self, load: Callable[[], tuple[pd.DataFrame, pd.DataFrame | None]], now) -> threading.Thread:
        """``refit`` in a daemon thread, on what ``load()`` returns (observations, calendar).

        ``due`` asks for no other refit while it runs; an error is kept in
        ``last_error`` and the refit is asked again at the next night (before the
        first fit: after ``refresh_every``).
        """
        now = _utc(now)
        with self._lock:
            self._refitting = True
            self._attempt_at = now

        def run() -> None:
            try:
                history, calendar = load()
                self.refit(history, calendar, now=now)
                self.last_error = None
            except Exception as exc:  # kept for the engine's health report; the old model serves on
                self.last_error = exc
            finally:
                with self._lock:
                    self._refitting = False

        thread = threading.Thread(target=run, name="forecast-refit", daemon=True)
        thread.start()
        return thread

    def observe(self, observations: pd.DataFrame) -> None:
        """Keep rows received since the fit: the recent lags of the next refresh."""
        if observations is None or observations.empty:
            return
        check_columns(observations, "observations", OBSERVATION_COLUMNS)
        rows = observations[observations["metric"] == self.template.metric]
        if len(rows):
            with self._lock:
                self._recent.append(rows[list(OBSERVATION_COLUMNS)].assign(ts=pd.to_datetime(rows["ts"], utc=True)))

    def refresh(self, now, observations: pd.DataFrame | None = None,
                calendar: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The forecast of the ``horizon`` from ``now`` (rounded up to the hour) and its new alerts.

        ``observations`` are added as ``observe`` would; only whole hours
        before ``now`` are read. ``calendar`` replaces the fitted one (an event
        announced since the fit). Returns ``(forecast table, events)``: the
        table has q10/q50/q90 (``plan.quantiles``) per zone (or sensor) and hour;
        events are the ``gathering_forecast`` rows not raised before.
        """
        now = _utc(now)
        self.observe(observations)
        with self._lock:
            model, version = self.model, self._version
            recent = pd.concat(self._recent, ignore_index=True) if self._recent else None
        if model is None:
            raise RuntimeError("no forecaster fitted yet: refit first (due(now) says so)")
        table = model.predict(forecast_hours(now, self.plan.horizon), quantiles=self.plan.quantiles,
                              observations=self._lags(model, recent, now), calendar=calendar)
        events = self._alerts(table, now)
        with self._lock:
            self._table, self.issued_at, self._refreshed_version = table, now, version
        return table, events

    def latest(self) -> pd.DataFrame | None:
        """The last forecast table issued (None before the first refresh)."""
        with self._lock:
            return self._table

    def remember(self, events: pd.DataFrame) -> None:
        """``gathering_forecast`` events already stored (after a restart): their gatherings are not raised again."""
        rows = events[(events["kind"] == KIND) & events["sensor_id"].notna()]
        with self._lock:
            for row in rows.itertuples(index=False):
                d = json.loads(row.details) if isinstance(row.details, str) else {}
                start = _utc(d.get("start", row.ts))
                end = _utc(d["end"]) if "end" in d else start + pd.Timedelta(hours=1)
                self._raised.setdefault(str(row.sensor_id), []).append((start, end, str(row.event_id)))

    # ------------------------------------------------------------------ internals

    def _level(self, observations: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The observations at the forecast's level (zone totals, or sensors) and their positions."""
        if not self.plan.by_zone:
            return observations, self.sensors
        return aggregate_zones(observations, self.sensors, self.template.metric)

    def _lags(self, model: GatheringForecaster, recent: pd.DataFrame | None, now: pd.Timestamp) -> pd.DataFrame:
        """The model's history with the whole hours received since (those win), as observations."""
        wide = model.history_
        if recent is not None:
            done = recent[recent["ts"] < now.floor("h")]  # the hour under way is not a count yet
            if len(done):
                newer = hourly_counts(self._level(done)[0], model.metric)
                wide = newer.combine_first(wide)
        long = wide.stack().dropna().rename("value").reset_index()
        long.columns = ["ts", "sensor_id", "value"]
        return long.assign(metric=model.metric)[list(OBSERVATION_COLUMNS)]

    def _alerts(self, table: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
        """The alerts of ``table``, once per gathering, with ids that do not depend on when they were issued."""
        if self.capacity is None or table.empty:
            return empty("events")
        positions = self._level_positions()
        alerts = gathering_alerts(table, self.capacity, now=now, lead_time=self.plan.lead_time,
                                  upper=self.plan.upper, sensors=positions)
        keep = []
        with self._lock:
            for i, row in alerts.iterrows():
                d = json.loads(row["details"])
                start, end = _utc(d["start"]), _utc(d["end"])
                event_id = f"{KIND}-{row['sensor_id']}-{row['ts']:%Y%m%dT%H%MZ}"
                seen = self._raised.setdefault(str(row["sensor_id"]), [])
                if any(event_id == old or (s < end and start < e) for s, e, old in seen):
                    continue  # the same gathering, raised by an earlier forecast
                seen.append((start, end, event_id))
                alerts.loc[i, "event_id"] = event_id
                keep.append(i)
            cutoff = now - pd.Timedelta(days=1)
            self._raised = {k: [r for r in v if r[1] >= cutoff] for k, v in self._raised.items()}
        return validate(alerts.loc[keep], "events") if keep else empty("events")

    def _level_positions(self) -> pd.DataFrame | None:
        if self.sensors is None or not {"lon", "lat"} <= set(self.sensors.columns):
            return None
        if not self.plan.by_zone:
            return self.sensors
        located = self.sensors.dropna(subset=["zone"]).astype({"zone": str})
        zones = located.groupby("zone", as_index=False)[["lon", "lat"]].mean()
        return zones.assign(sensor_id=zones["zone"])


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).as_unit("ns")
