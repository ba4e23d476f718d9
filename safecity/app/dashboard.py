"""Dashboard state: what an operator or analyst may change, and the views derived from it.

``CityView`` works the same in a notebook cell and under ``panel serve``; the
dashboards in ``dashboards/`` only lay it out.
"""
from __future__ import annotations

import contextlib
import functools
import html
import logging
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from safecity.app import access
from safecity.app.heatmap import EventDensity, SortedEvents
from safecity.incidents import fusion
from safecity.app import views

hv.extension("bokeh", logo=False)
log = logging.getLogger(__name__)


def load_city(data_dir: str | Path) -> SimpleNamespace:
    """The tables a dashboard shows, and the city's config, read from a city directory (``data.citydir``).

    Read once per server process: every session shares the same tables (and
    the models ``city_models`` fits on them).
    """
    return _load_city(str(Path(data_dir).resolve()))


@functools.lru_cache(maxsize=4)
def _load_city(data_dir: str) -> SimpleNamespace:
    from safecity.data.citydir import read_city

    data_dir = Path(data_dir)
    if not (data_dir / "history").is_dir():
        raise FileNotFoundError(
            f"no safecity data in {data_dir}: create the demo data with "
            f"'safecity simulate --out {data_dir}' or set SAFECITY_DATA_DIR")
    log.info("reading the city in %s", data_dir)  # once per process: the warm-up's test counts these
    city = read_city(data_dir)
    return SimpleNamespace(sensors=city.sensors, observations=city.observations,
                           units=city.units, zones=city.zones, events=city.events,
                           calendar=city.calendar, config=city.config)


_MODELS_LOCK = threading.Lock()


def city_models(city: SimpleNamespace) -> SimpleNamespace:
    """Anomaly scores and the zones' forecaster, fitted once per city and process.

    Sessions share them (a second browser never refits). ``scores`` are
    ``UsualLevel`` departures of every people-count bin, ``forecaster`` a
    ``TimeOfWeekProfile`` of each zone's hourly total: the gradient-boosted
    ``GatheringForecaster`` needs eight days of history and took 65 s to fit
    on a 21-day city here, too slow for a page's start-up.
    """
    with _MODELS_LOCK:
        if getattr(city, "models", None) is None:
            city.models = _fit_models(city)
    return city.models


def _fit_models(city: SimpleNamespace) -> SimpleNamespace:
    from safecity.data.counts import aggregate_zones
    from safecity.forecast.baselines import TimeOfWeekProfile

    counts = city.observations[city.observations["metric"] == "people_count"]
    log.info("fitting the city's models (UsualLevel, TimeOfWeekProfile) on %d counts", len(counts))
    usual, scores = replay_scores(counts, getattr(city, "calendar", None), city.sensors)
    zone_counts, zone_table = aggregate_zones(counts, city.sensors)
    return SimpleNamespace(usual=usual, scores=scores,
                           forecaster=TimeOfWeekProfile().fit(zone_counts), zone_table=zone_table)


def replay_scores(counts: pd.DataFrame, calendar: pd.DataFrame | None, sensors: pd.DataFrame,
                  warm_days: int = 3):
    """``UsualLevel`` scores of every bin as the model would have given them live.

    Fitted on the first ``warm_days`` (fewer on a short history), then each
    later day is scored before the model learns it: a model scoring the days
    it learnt from barely sees an injected spike (on the 7-day demo city, the
    spiked or dropped sensor was its window's top score for 4 of 10 injected
    anomalies scored in sample; for 3 of the 4 after the warm-up days scored
    this way, the fourth second). The warm-up days are scored in sample.
    """
    from safecity.baseline.usual import UsualLevel

    day = counts["ts"].dt.floor("D")
    days = np.sort(day.unique())
    warm = days[max(1, min(warm_days, len(days) // 2)) - 1]  # at least half the days replayed
    first = counts[day <= warm]
    model = UsualLevel(rate=0.1).fit(first, calendar=calendar, sensors=sensors)
    parts = [model.score_samples(first)]
    for d in days[days > warm]:
        today = counts[day == d]
        parts.append(model.score_samples(today))
        model.partial_fit(today)
    return model, pd.concat(parts).sort_index()


def shown_forecast(live: pd.DataFrame | None, fallback, hours: int) -> tuple[pd.DataFrame, bool]:
    """What the forecast map and line show: (table, True) from the live model, else (``fallback()``, False).

    ``live`` is the model's latest forecast table (``ForecastSchedule.latest()``:
    the next hours from its origin, with q10 and q90); its first ``hours`` are
    shown. Before the model's first forecast (None, or empty) the page shows the
    zones' usual week (``fallback``, a time-of-week profile), and says so.
    """
    if live is not None and len(live):
        first = live["ts"].min()
        return live[live["ts"] < first + pd.Timedelta(hours=hours)].reset_index(drop=True), True
    return fallback(), False


def forecast_label(table: pd.DataFrame, from_model: bool) -> str:
    """Where the forecast shown comes from, for the titles."""
    if not from_model:
        return "usual week (time-of-week profile): no model forecast yet"
    issued = pd.Timestamp(table["origin"].max()) if "origin" in table and len(table) else None
    return "GatheringForecaster" + (f", issued {issued:%a %H:%M} UTC" if issued is not None else "")


def projected(city: SimpleNamespace, tiles: str | None) -> SimpleNamespace:
    """The map tables in the coordinates the map draws: lon/lat, or Web Mercator under tiles."""
    tables = ("zones", "sensors", "units", "events")
    if not tiles:
        return SimpleNamespace(**{t: getattr(city, t) for t in tables})
    with _MODELS_LOCK:
        if getattr(city, "mercator", None) is None:
            city.mercator = SimpleNamespace(**{t: views.to_web_mercator(getattr(city, t))
                                               for t in tables})
    return city.mercator


def sorted_events(city: SimpleNamespace, tiles: str | None) -> SortedEvents:
    """The city's located events sorted by time, once per city, process and projection.

    Every session's ``EventDensity`` reads these (one ``EventDensity`` shared by
    sessions kept the server busy redrawing for all of them, ``bench/heatmap.py``).
    """
    key = "mercator" if tiles else "lonlat"
    with _MODELS_LOCK:
        shared = getattr(city, "sorted_events", None)
        if shared is None:
            shared = city.sorted_events = {}
        if key not in shared:
            located = city.events.dropna(subset=["lon", "lat"])
            shared[key] = SortedEvents(located, tiles=tiles)
    return shared[key]


class CityView(param.Parameterized):
    """The city over a time window: crowd levels, anomalies and events, the forecast after it, the units.

    The window is the ``window_hours`` before ``time``; the forecast covers
    the ``forecast_hours`` after it. Models are fitted once per process
    (``city_models``), so a session only selects and draws.
    """

    time = param.Date(doc="The end of the window shown; the forecast starts here.")
    window_hours = param.Integer(default=3, bounds=(1, 48), doc="Hours of data in the heatmaps.")
    metric = param.Selector(default="people_count", objects=["people_count"])
    forecast_hours = param.Integer(default=6, bounds=(1, 24), doc="Hours ahead the forecast covers.")
    zone = param.Selector(default=None, objects=[], doc="The zone whose forecast is drawn as a line.")
    tiles_url = param.String(default=None, allow_None=True, constant=True,
                             doc="XYZ tile template ($SAFECITY_TILES_URL); None: no tiles, "
                                 "nothing is fetched from outside.")
    max_event_markers = param.Integer(default=5000, bounds=(0, None), doc=(
        "More events than this in the window: the anomaly map marks none (the browser "
        "would stall on them) and the events density shows where they are."))
    forecasts = param.Parameter(default=None, doc=(
        "The live forecast: an object whose latest() is the zones' forecast table "
        "(safecity.forecast.live.ForecastSchedule). None, or before its first forecast: "
        "each zone's usual week (a time-of-week profile), labelled as such."))

    def __init__(self, city, **params):
        self.city = city
        ts = city.observations["ts"]
        start, end = ts.min().tz_convert(None), ts.max().tz_convert(None)
        self.param.time.bounds = (start.to_pydatetime(), end.to_pydatetime())
        self.param.metric.objects = sorted(city.observations["metric"].unique())
        params.setdefault("time", (start + (end - start) * 0.6).floor("h").to_pydatetime())
        params.setdefault("tiles_url", os.environ.get("SAFECITY_TILES_URL") or None)
        self.models = city_models(city)
        names = city.zones.set_index("zone_id")["name"].astype(str)
        zones = {names.get(z, z): z for z in self.models.zone_table["sensor_id"]}
        self.param.zone.objects = dict(sorted(zones.items()))
        if zones:
            busiest = np.nanargmax(np.nanmean(self.models.forecaster.table_, axis=(0, 1)))
            params.setdefault("zone", self.models.forecaster.sensor_ids_[busiest])
        super().__init__(**params)
        self.geo = projected(city, self.tiles_url)
        # this session's window over the events shared by every session
        self.density = EventDensity(sorted_events(city, self.tiles_url))
        self._follow_window()

    def _window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        end = pd.Timestamp(self.time, tz="UTC")
        return end - pd.Timedelta(hours=self.window_hours), end

    @param.depends("time", "window_hours", "metric")
    def map(self) -> hv.Overlay:
        start, end = self._window()
        obs = self.city.observations
        obs = obs[(obs["ts"] > start) & (obs["ts"] <= end)]
        levels = views.sensor_levels(obs, self.geo.sensors, self.metric)
        units = views.latest_units(self.geo.units, at=end)
        title = f"Crowd: {self.metric}, {start:%a %d %b %H:%M} – {end:%H:%M} UTC"
        return views.city_map(self.geo.zones, levels, units, title=title, tiles=self.tiles_url)

    @param.depends("time", "window_hours")
    def anomaly_map(self) -> hv.Overlay:
        start, end = self._window()
        anomaly = views.sensor_anomaly(self.models.scores, self.geo.sensors, start, end)
        events = views.events_between(self.geo.events, start, end)
        title = f"Anomalies and {len(events)} events, {start:%a %d %b %H:%M} – {end:%H:%M} UTC"
        if len(events) > self.max_event_markers:
            events, title = events.iloc[:0], title + " (too many to mark: see the events density)"
        return views.anomaly_map(self.geo.zones, anomaly, events, title=title, tiles=self.tiles_url)

    @param.depends("time", "window_hours", watch=True)
    def _follow_window(self) -> None:
        """The events density shows the maps' window: the ``window_hours`` before ``time``."""
        self.density.param.update(end=self._window()[1].tz_localize(None).to_pydatetime(),
                                  hours=self.window_hours)

    def density_map(self) -> hv.DynamicMap:
        """Where the window's events happened, counted per pixel on the server (``EventDensity``).

        Drawn once per session: a window change, a zoom or a pan sends only a new image,
        whatever the number of events (markers do not scale to a city's millions of events).
        """
        title = "Events density (events per pixel, the window's events)"
        heat = self.density.plot(title=title)  # the tiles under it, when the maps have tiles
        return (heat * views.zone_outlines(self.geo.zones)).opts(
            hv.opts.Overlay(**{**views.map_opts(self.tiles_url), "title": title, "tools": []}))

    @param.depends("time", "window_hours")
    def density_note(self) -> str:
        """The density map's window and number of events."""
        start, end = self._window()
        return (f"**Events density**: {len(self.density.window()):,} located events, "
                f"{start:%a %d %b %H:%M} – {end:%H:%M} UTC")

    def forecast(self) -> pd.DataFrame:
        """The zones' hourly forecast for the next ``forecast_hours`` (q10, q50, q90); see ``forecast_source``."""
        return self.forecast_source()[0]

    def forecast_source(self) -> tuple[pd.DataFrame, bool]:
        """(forecast table, from the model?): the live model's latest forecast, else the profile after ``time``."""
        def profile() -> pd.DataFrame:
            from safecity.forecast.table import forecast_hours

            _, end = self._window()
            return self.models.forecaster.predict(forecast_hours(end, f"{self.forecast_hours}h"))

        live = self.forecasts.latest() if self.forecasts is not None else None
        return shown_forecast(live, profile, self.forecast_hours)

    @param.depends("time", "forecast_hours", "forecasts")
    def forecast_map(self) -> hv.Overlay:
        fc, from_model = self.forecast_source()
        start = fc["ts"].min() if len(fc) else self._window()[1]
        title = (f"Forecast: peak per zone, next {self.forecast_hours} h from {start:%a %H:%M} UTC · "
                 f"{forecast_label(fc, from_model)}")
        label = "expected people per hour (peak, median)" if from_model else \
            "usual people per hour (peak, profile median)"
        return views.zone_forecast_map(self.geo.zones, views.forecast_peaks(fc), title=title,
                                       tiles=self.tiles_url, label=label)

    @param.depends("time", "forecast_hours", "zone", "forecasts")
    def forecast_line(self) -> hv.Overlay:
        names = {v: k for k, v in self.param.zone.objects.items()}
        fc, from_model = self.forecast_source()
        return views.forecast_band(fc, self.zone).opts(
            title=f"Forecast for {names.get(self.zone, self.zone)}: median and 80% interval · "
                  f"{forecast_label(fc, from_model)}")

    @param.depends("metric")
    def usual_week(self) -> hv.HeatMap:
        return views.time_of_week_heatmap(self.city.observations, self.city.sensors, self.metric,
                                          tz=self.city.config.tz).opts(title="Usual week by zone")

    @param.depends("time")
    def unit_table(self) -> pn.widgets.Tabulator:
        _, end = self._window()
        units = views.latest_units(self.city.units, at=end)
        return pn.widgets.Tabulator(units[["unit_id", "kind", "status", "station", "ts"]],
                                    disabled=True, show_index=False, height=300)

    def controls(self) -> pn.Param:
        return pn.Param(self.param, parameters=["time", "window_hours", "metric", "forecast_hours",
                                                "zone"],
                        widgets={"time": pn.widgets.DatetimeSlider}, show_name=False)

    def layout(self) -> pn.Column:
        """The maps, each drawn in its own turn of the server's loop, the anomaly heatmap first.

        Built when the City maps tab opens, after the page loaded, ``defer_load`` no longer
        defers: the five plots were drawn in one callback (4 s here) before the tab showed
        anything. Each slot now shows a spinner until its plot is sent on its own.
        """
        def plot(method) -> pn.param.ParamMethod:
            return pn.param.ParamMethod(method, sizing_mode="stretch_width", min_height=450)

        makers = [lambda: plot(self.anomaly_map), lambda: plot(self.map),
                  lambda: plot(self.forecast_map), lambda: plot(self.forecast_line),
                  lambda: plot(self.usual_week), lambda: pn.param.ParamMethod(self.unit_table),
                  lambda: pn.Column(pn.param.ParamMethod(self.density_note),
                                    pn.pane.HoloViews(self.density_map(), sizing_mode="stretch_width",
                                                      min_height=450))]
        slots = [pn.Column(sizing_mode="stretch_width", min_height=450, loading=True)
                 for _ in makers]
        fill_in_turns(list(zip(slots, makers)))
        return pn.Column(pn.Row(slots[0], slots[1]), pn.Row(slots[2], slots[3]),
                         pn.Row(slots[4], slots[6]), pn.Column("### Units", slots[5]))


def fill_in_turns(pending: list) -> None:
    """Fill each (slot, make) in turn, one per turn of the session's loop, so that each part
    is sent to the browser as soon as it is drawn; in a notebook, all at once."""
    def fill(rest) -> None:
        slot, make = rest[0]
        slot[:] = [make()]
        slot.loading = False
        if rest[1:]:
            pn.state.execute(functools.partial(fill, rest[1:]), schedule=True)

    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        for slot, make in pending:
            slot[:] = [make()]
            slot.loading = False
    elif pending:
        pn.state.execute(functools.partial(fill, pending), schedule=True)


class LiveUnitMap:
    """The units on the zone map, moved every second to their positions in the shared engine.

    ``refresh`` (the session's periodic callback) pushes only the markers
    through a ``Pipe`` when a unit moved or changed status: the zones, and the
    zoom the operator chose, stay as they are. Positions are the engine's
    replayed reports (``engine.positions()``), read once per simulated moment
    for all sessions.
    """

    def __init__(self, engine, zones: pd.DataFrame, tiles: str | None = None):
        self.engine = engine
        self.tiles = tiles
        self.zones = views.to_web_mercator(zones) if tiles else zones
        self._shown = self._positions()
        self.pipe = hv.streams.Pipe(data=self._shown)

    def _positions(self) -> pd.DataFrame:
        return _positions_at(self.engine, self.engine.version, bool(self.tiles))

    def refresh(self) -> None:
        now = self._positions()
        if now is self._shown:
            return
        cols = ["unit_id", "lon", "lat", "status"]
        if not now[cols].equals(self._shown[cols]):
            self.pipe.send(now)
        self._shown = now

    def plot(self) -> hv.DynamicMap:
        markers = hv.DynamicMap(lambda data: views.unit_markers(data), streams=[self.pipe])
        return views.on_zone_map(self.zones, markers, title="Units now",
                                 tiles=self.tiles)

    def layout(self) -> pn.pane.HoloViews:
        return pn.pane.HoloViews(self.plot(), sizing_mode="stretch_width", min_height=450,
                                 css_classes=["live-units"])


def follow_engine(engine, *views, period_ms: int = 1000) -> None:
    """Refresh ``views`` (each has ``refresh()``) in this session every ``period_ms``, and at
    once when the engine changes (a new incident, a dispatch), not up to a second later.

    Everything the callbacks use is bound here, not read from the served script:
    Bokeh empties a script's module when its session ends, and callbacks reading
    its globals then raised ``NameError`` on every later engine change, for
    everyone. The watcher is removed when the session ends, and removes itself
    if it ever outlives its document.
    """
    def refresh() -> None:  # this session reads the engine; it never steps it
        for view in views:
            view.refresh()

    pn.state.add_periodic_callback(refresh, period=period_ms)
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        return  # a notebook: the periodic callback is enough
    watcher = None

    def stop(*_) -> None:
        with contextlib.suppress(ValueError, KeyError):
            engine.param.unwatch(watcher)

    def changed(_) -> None:
        if doc.session_context is None:  # the session ended without telling us
            stop()
            return
        try:
            doc.add_next_tick_callback(refresh)
        except Exception:  # a document being torn down refuses callbacks
            stop()

    watcher = engine.param.watch(changed, "version")
    pn.state.on_session_destroyed(stop)


@functools.lru_cache(maxsize=4)
def _positions_at(engine, version: int, mercator: bool) -> pd.DataFrame:
    """The engine's unit positions at one version of its state, shared by every session."""
    pos = engine.positions()
    return views.to_web_mercator(pos) if mercator else pos


def clock_name(engine) -> str:
    """What the engine's clock is, for the page: a replay's simulated time, or the server's time."""
    return "sim time" if "speed" in engine.param else "server time"


def _table_html(df: pd.DataFrame, css: str) -> str:
    """A small table as HTML; ``to_html`` escapes every cell, so text stays text."""
    return df.to_html(index=False, escape=True, classes=css, border=0, na_rep="")


#: Incidents the live queue shows: the newest, most urgent first.
QUEUE_SHOWN = 200


@functools.lru_cache(maxsize=8)
def _live_snapshot(engine, version: int) -> SimpleNamespace:
    """What every session shows of the engine at one version, read and rendered once.

    Twenty sessions each reading the store and rendering the queue made one new
    incident cost twenty times the work on the server's one event loop
    (``bench/dashboard.py``); keyed by the engine's version, they share it.
    """
    queue = engine.incident_queue()  # most urgent first, then newest
    # a live city's queue never ends: the newest QUEUE_SHOWN, still most urgent first
    shown = queue[queue.index.isin(queue["ts"].nlargest(QUEUE_SHOWN).index)]
    open_ = shown[shown["status"].isin(["open", "acknowledged", "dispatched"])]
    more = len(queue) - len(shown)
    return SimpleNamespace(
        queue_html="".join(fusion.incident_html(r) for _, r in shown.iterrows())
        + (f"<p class='queue-more'>{more} older incidents not shown</p>" if more else "")
        or "<p>No incidents yet.</p>",
        options={f"{r.incident_id} · {r.kind} · {r.status}": r.incident_id
                 for r in open_.itertuples()},
        units_html=_table_html(engine.unit_status()[["unit_id", "kind", "status", "ts"]],
                               "unit-status"),
        audit_html=_table_html(engine.audit(10)[["ts", "actor", "action", "target", "details"]],
                               "audit-rows"),
    )


@functools.lru_cache(maxsize=64)
def _recommendation(engine, version: int, incident_id: str | None) -> tuple[pd.DataFrame, str]:
    """The units to propose for an incident (fastest first) and their table, shared by sessions."""
    if incident_id is None:
        rec = engine.unit_status().query("status == 'available'")
    else:
        rec = engine.recommended(incident_id)
    shown = rec[[c for c in ("unit_id", "kind", "travel_time_s", "distance_m") if c in rec]]
    html_ = _table_html(shown.round(0), "recommended") if len(shown) \
        else html.escape(rec.attrs.get("reason", "no available unit"))
    return rec, html_


class LiveView(param.Parameterized):
    """One browser session's view of the shared engine: it reads the engine, never runs it.

    ``refresh`` (called every second by the session) copies what changed into
    the panes; ``dispatch`` is the one thing a session asks the engine to do.
    """

    incident = param.Selector(default=None, objects=[], doc="The incident to send a unit to.")
    unit = param.Selector(default=None, objects=[], doc="The unit to send.")
    actor = param.String(default="operator", doc="Who is dispatching (written to the audit log).")
    role = param.String(default=None, allow_None=True, constant=True,
                        doc="The session's role (safecity.app.access); only an operator may dispatch.")

    def __init__(self, engine, **params):
        # under an authenticated server, the logged-in user and their role; else the local defaults
        params.setdefault("role", access.current_role())
        params.setdefault("actor", access.current_user() or "operator")
        super().__init__(**params)
        self.engine = engine
        self._seen_version = -1
        self._unit_for = None  # the incident the unit was chosen for
        self.counter = pn.pane.HTML("", css_classes=["live-tick"], name="live-tick")
        self.queue = pn.pane.HTML("", css_classes=["incident-queue"], max_height=420,
                                  styles={"overflow-y": "auto"})
        self.units = pn.pane.HTML("", css_classes=["unit-status"])
        self.audit_log = pn.pane.HTML("", css_classes=["audit-log"])
        self.message = pn.pane.HTML("", css_classes=["dispatch-message"])
        self.recommendation = pn.pane.HTML("", css_classes=["recommended-units"])
        self.button = pn.widgets.Button(name="Dispatch", button_type="primary",
                                        disabled=not access.can_dispatch(self.role))
        self.button.on_click(lambda _: self.dispatch())
        if self.button.disabled:  # say why, rather than leave a grey button
            self.message.object = (f'<p class="role-note">'
                                   f'{html.escape(access.session_note(self.role, "dispatch"))}</p>')
        self.refresh()

    def refresh(self) -> None:
        e = self.engine
        self.counter.object = (f'<span class="live-counter">updates: {e.tick}</span> · '
                               f'{clock_name(e)} {pd.Timestamp(e.now):%Y-%m-%d %H:%M:%S} UTC')
        if e.version == self._seen_version:
            return
        self._seen_version = e.version
        shown = _live_snapshot(e, e.version)
        self.queue.object = shown.queue_html
        self.param.incident.objects = shown.options
        if self.incident not in shown.options.values():
            self.incident = next(iter(shown.options.values()), None)
        self._update_units()
        self.units.object = shown.units_html
        self.audit_log.object = shown.audit_html

    @param.depends("incident", watch=True)
    def _update_units(self) -> None:
        rec, shown_html = _recommendation(self.engine, self.engine.version, self.incident)
        self.recommendation.object = shown_html
        ids = [u for u, ok in zip(rec["unit_id"], rec.get("reachable", [True] * len(rec))) if ok]
        self.param.unit.objects = ids
        # another incident: its fastest unit, not the one chosen for the previous incident
        if self.unit not in ids or self.incident != self._unit_for:
            self.unit = ids[0] if ids else None
        self._unit_for = self.incident

    def dispatch(self) -> None:
        if not access.can_dispatch(self.role):
            self.message.object = (f"<p>Not dispatched: role {html.escape(str(self.role))} "
                                   f"may not dispatch units.</p>")
            return
        if self.incident is None or self.unit is None:
            self.message.object = "<p>Choose an incident and a unit first.</p>"
            return
        try:
            self.engine.dispatch(self.unit, self.incident, self.actor)
        except (ValueError, KeyError) as exc:
            self.message.object = f"<p>Not dispatched: {html.escape(str(exc))}</p>"
            return
        self.message.object = (f'<p class="dispatch-done" data-unit="{html.escape(self.unit)}">'
                               f"{html.escape(self.unit)} dispatched to "
                               f"{html.escape(self.incident)}</p>")
        self.refresh()

    def layout(self) -> pn.Column:
        controls = pn.Param(self.param, parameters=["incident", "unit"], show_name=False,
                            widgets={"incident": pn.widgets.Select, "unit": pn.widgets.Select})
        return pn.Column(
            "### Live", self.counter,
            pn.Row(pn.Column("#### Incident queue", self.queue),
                   pn.Column("#### Dispatch", controls, "Recommended (fastest first)", self.recommendation,
                             self.button, self.message,
                             "#### Units", self.units, width=520, sizing_mode="fixed")),
            "#### Audit log (latest)", self.audit_log,
        )
