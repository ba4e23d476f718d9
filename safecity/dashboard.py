"""Dashboard state: what an operator or analyst may change, and the views derived from it.

``CityView`` works the same in a notebook cell and under ``panel serve``; the
dashboards in ``dashboards/`` only lay it out.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import holoviews as hv
import pandas as pd
import panel as pn
import param

from . import views

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
