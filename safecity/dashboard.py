"""Dashboard state: what an operator or analyst may change, and the views derived from it.

``CityView`` works the same in a notebook cell and under ``panel serve``; the
dashboards in ``dashboards/`` only lay it out.
"""
from __future__ import annotations

import html
from pathlib import Path
from types import SimpleNamespace

import holoviews as hv
import pandas as pd
import panel as pn
import param

from . import access, fusion, views

hv.extension("bokeh", logo=False)


def load_city(data_dir: str | Path) -> SimpleNamespace:
    """The tables a dashboard shows, read from a data directory written by ``safecity simulate``."""
    from .simulate import read_city

    data_dir = Path(data_dir)
    if not (data_dir / "history").is_dir():
        raise FileNotFoundError(
            f"no safecity data in {data_dir}: create the demo data with "
            f"'safecity simulate --out {data_dir}' or set SAFECITY_DATA_DIR")
    city = read_city(data_dir)
    return SimpleNamespace(sensors=city.sensors, observations=city.observations,
                           units=city.units, zones=city.zones, events=city.events)


class CityView(param.Parameterized):
    """The city at one moment: crowd levels over a trailing window, and the units."""

    time = param.Date(doc="The moment shown; the map covers the window before it.")
    window_hours = param.Integer(default=3, bounds=(1, 48), doc="Hours of data in the heatmap.")
    metric = param.Selector(default="people_count", objects=["people_count"])

    def __init__(self, city, **params):
        self.city = city
        ts = city.observations["ts"]
        start, end = ts.min().tz_convert(None), ts.max().tz_convert(None)
        self.param.time.bounds = (start.to_pydatetime(), end.to_pydatetime())
        self.param.metric.objects = sorted(city.observations["metric"].unique())
        params.setdefault("time", (start + (end - start) * 0.6).floor("h").to_pydatetime())
        super().__init__(**params)

    def _window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        end = pd.Timestamp(self.time, tz="UTC")
        return end - pd.Timedelta(hours=self.window_hours), end

    @param.depends("time", "window_hours", "metric")
    def map(self) -> hv.Overlay:
        start, end = self._window()
        obs = self.city.observations
        obs = obs[(obs["ts"] > start) & (obs["ts"] <= end)]
        levels = views.sensor_levels(obs, self.city.sensors, self.metric)
        units = views.latest_units(self.city.units, at=end)
        title = f"{self.metric}, {start:%a %d %b %H:%M} – {end:%H:%M} UTC"
        return views.city_map(self.city.zones, levels, units, title=title)

    @param.depends("metric")
    def usual_week(self) -> hv.HeatMap:
        return views.time_of_week_heatmap(self.city.observations, self.city.sensors,
                                          self.metric).opts(title="Usual week by zone")

    @param.depends("time")
    def unit_table(self) -> pn.widgets.Tabulator:
        _, end = self._window()
        units = views.latest_units(self.city.units, at=end)
        return pn.widgets.Tabulator(units[["unit_id", "kind", "status", "station", "ts"]],
                                    disabled=True, show_index=False, height=300)

    def controls(self) -> pn.Param:
        return pn.Param(self.param, widgets={
            "time": pn.widgets.DatetimeSlider,
        }, show_name=False)

    def layout(self) -> pn.Column:
        return pn.Column(
            pn.pane.HoloViews(self.map, sizing_mode="stretch_width", min_height=450),
            pn.Row(pn.pane.HoloViews(self.usual_week, sizing_mode="stretch_width"),
                   pn.Column("### Units", self.unit_table)),
        )


def _table_html(df: pd.DataFrame, css: str) -> str:
    """A small table as HTML; ``to_html`` escapes every cell, so text stays text."""
    return df.to_html(index=False, escape=True, classes=css, border=0, na_rep="")


class LiveView(param.Parameterized):
    """One browser session's view of the shared engine: it reads the engine, never runs it.

    ``refresh`` (called every second by the session) copies what changed into
    the panes; ``dispatch`` is the one thing a session asks the engine to do.
    """

    incident = param.Selector(default=None, objects=[], doc="The incident to send a unit to.")
    unit = param.Selector(default=None, objects=[], doc="The unit to send.")
    actor = param.String(default="operator", doc="Who is dispatching (written to the audit log).")
    role = param.String(default=None, allow_None=True, constant=True,
                        doc="The session's role (safecity.access); only an operator may dispatch.")

    def __init__(self, engine, **params):
        # under an authenticated server, the logged-in user and their role; else the local defaults
        params.setdefault("role", access.current_role())
        params.setdefault("actor", access.current_user() or "operator")
        super().__init__(**params)
        self.engine = engine
        self._seen_version = -1
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
                               f'sim time {pd.Timestamp(e.now):%Y-%m-%d %H:%M:%S} UTC')
        if e.version == self._seen_version:
            return
        self._seen_version = e.version
        queue = e.incident_queue()
        self.queue.object = "".join(fusion.incident_html(r) for _, r in queue.iterrows()) \
            or "<p>No incidents yet.</p>"
        open_ = queue[queue["status"].isin(["open", "dispatched"])]
        options = {f"{r.incident_id} · {r.kind} · {r.status}": r.incident_id
                   for r in open_.itertuples()}
        self.param.incident.objects = options
        if self.incident not in options.values():
            self.incident = next(iter(options.values()), None)
        self._update_units()
        self.units.object = _table_html(e.unit_status()[["unit_id", "kind", "status", "ts"]],
                                        "unit-status")
        self.audit_log.object = _table_html(
            e.audit(10)[["ts", "actor", "action", "target", "details"]], "audit-rows")

    @param.depends("incident", watch=True)
    def _update_units(self) -> None:
        if self.incident is None:
            rec = self.engine.unit_status().query("status == 'available'")
        else:
            rec = self.engine.recommended(self.incident)
        ids = [u for u, ok in zip(rec["unit_id"], rec.get("reachable", [True] * len(rec))) if ok]
        shown = rec[[c for c in ("unit_id", "kind", "travel_time_s", "distance_m") if c in rec]]
        self.recommendation.object = _table_html(shown.round(0), "recommended") if len(shown) \
            else html.escape(rec.attrs.get("reason", "no available unit"))
        self.param.unit.objects = ids
        if self.unit not in ids:
            self.unit = ids[0] if ids else None

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
