"""Plots shared by the dashboards and the notebooks: data-model tables in, HoloViews out.

The operator's dashboard and the analyst's notebook call the same functions, so
what an analyst tunes is what an operator sees. Maps are drawn in plain lon/lat
from local data (no tile server), so they work offline.
"""
from __future__ import annotations

import datashader as ds
import holoviews as hv
import numpy as np
import pandas as pd
import shapely
from holoviews.operation.datashader import rasterize, spread

UNIT_COLORS = {"police": "#1f4e9c", "fire": "#d62728", "ambulance": "#2ca02c"}
UNIT_MARKERS = {"available": "circle", "dispatched": "triangle", "en_route": "triangle",
                "on_scene": "square", "returning": "diamond", "out_of_service": "x"}
_MAP_OPTS = dict(data_aspect=1, responsive=True, min_height=420, xlabel="lon", ylabel="lat",
                 tools=["hover"], active_tools=["wheel_zoom"])


def zone_polygons(zones: pd.DataFrame) -> hv.Polygons:
    """Zone outlines (one polygon per zone; multi-part zones keep every part)."""
    paths = []
    for row in zones.itertuples(index=False):
        geoms = getattr(row.geometry, "geoms", [row.geometry])
        for geom in geoms:
            x, y = geom.exterior.coords.xy
            paths.append({"x": np.asarray(x), "y": np.asarray(y),
                          "zone": str(row.name), "zone_id": str(row.zone_id)})
    return hv.Polygons(paths, kdims=["x", "y"], vdims=["zone", "zone_id"]).opts(
        fill_alpha=0.04, line_color="#555555", line_width=0.6, color="#cccccc",
        hover_tooltips=[("zone", "@zone")])


def sensor_levels(observations: pd.DataFrame, sensors: pd.DataFrame,
                  metric: str = "people_count") -> pd.DataFrame:
    """Mean level of ``metric`` per sensor over the rows given, with the sensors' positions."""
    obs = observations[observations["metric"] == metric]
    level = obs.groupby("sensor_id", observed=True)["value"].mean().rename("value")
    return sensors.merge(level, left_on="sensor_id", right_index=True)[
        ["sensor_id", "kind", "zone", "lon", "lat", "value"]]


def level_heatmap(levels: pd.DataFrame, bounds: tuple[float, float, float, float],
                  label: str = "people per bin", spread_px: int = 12) -> hv.Image:
    """A datashader heatmap of sensor levels over ``bounds`` (lon0, lat0, lon1, lat1).

    Aggregated on the server and sent as one image, whatever the number of sensors.
    """
    points = hv.Points(levels, kdims=["lon", "lat"], vdims=["value", "sensor_id"])
    image = spread(rasterize(points, aggregator=ds.max("value"), dynamic=False,
                             x_range=(bounds[0], bounds[2]), y_range=(bounds[1], bounds[3]),
                             width=400, height=400), px=spread_px, shape="circle")
    return image.opts(cmap="inferno", colorbar=True, clabel=label, alpha=0.85, tools=["hover"])


def time_of_week_heatmap(observations: pd.DataFrame, sensors: pd.DataFrame,
                         metric: str = "people_count") -> hv.HeatMap:
    """Mean level per zone and hour of the week: the usual situation at a glance."""
    obs = observations[observations["metric"] == metric].merge(
        sensors[["sensor_id", "zone"]], on="sensor_id")
    ts = obs["ts"].dt.tz_convert("Europe/Paris")
    obs = obs.assign(hour_of_week=ts.dt.dayofweek * 24 + ts.dt.hour,
                     zone=obs["zone"].fillna("(no zone)").astype(str))
    table = obs.groupby(["hour_of_week", "zone"], observed=True)["value"].mean().reset_index()
    return hv.HeatMap(table, kdims=["hour_of_week", "zone"], vdims=["value"]).opts(
        cmap="viridis", colorbar=True, responsive=True, min_height=300, tools=["hover"],
        xlabel="hour of week (Mon 00h = 0, local time)", ylabel="zone",
        xticks=[(d * 24, n) for d, n in enumerate(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])])


def latest_units(units: pd.DataFrame, at=None) -> pd.DataFrame:
    """Each unit's last reported position and status at time ``at`` (default: the end)."""
    if at is not None:
        units = units[units["ts"] <= pd.Timestamp(at)]
    return units.sort_values("ts").drop_duplicates("unit_id", keep="last").reset_index(drop=True)


def unit_markers(units: pd.DataFrame) -> hv.Points:
    """Units as markers: colour by kind, shape by status."""
    units = units.assign(color=units["kind"].map(UNIT_COLORS).fillna("black"),
                         marker=units["status"].map(UNIT_MARKERS).fillna("circle"),
                         time=units["ts"].dt.strftime("%Y-%m-%d %H:%M"))
    return hv.Points(units, kdims=["lon", "lat"],
                     vdims=["unit_id", "kind", "status", "time", "color", "marker"]).opts(
        color="color", marker="marker", size=11, line_color="white",
        hover_tooltips=[("unit", "@unit_id"), ("kind", "@kind"), ("status", "@status"),
                        ("at", "@time")])


def city_map(zones: pd.DataFrame, levels: pd.DataFrame, units: pd.DataFrame,
             title: str = "") -> hv.Overlay:
    """Zones, the sensor-level heatmap and the units on one offline map."""
    bounds = shapely.total_bounds(zones["geometry"].to_numpy())
    return (zone_polygons(zones) * level_heatmap(levels, bounds) * unit_markers(units)).opts(
        hv.opts.Overlay(title=title, **_MAP_OPTS))


def response_time_bars(summary: pd.DataFrame, measure: str = "total_s",
                       group: str = "unit_type", split: str = "priority") -> hv.Overlay:
    """Median response time (minutes) per group with its 95% CI, from ``response.summarise``.

    One bar per ``group`` and ``split`` value; the error bars are the bootstrap
    interval of the median, so a difference whose intervals overlap is not one.
    """
    rows = summary[summary["measure"] == measure].copy()
    for c in ("median", "median_lo", "median_hi", "p90"):
        rows[c] = rows[c] / 60
    # one categorical axis ("ENGINE p3"): bokeh cannot put error bars on nested factors
    rows["group"] = rows[group].astype(str) + " p" + rows[split].astype(str)
    label = measure.removesuffix("_s").replace("_", " ")
    bars = hv.Bars(rows, kdims=["group"], vdims=["median", "n", "p90", split]).opts(
        tools=["hover"], ylabel=f"median {label} (min)", xlabel=f"{group}, {split}",
        xrotation=45, responsive=True, min_height=380, color=split, cmap="Category10")
    errors = hv.ErrorBars(
        (rows["group"].tolist(), rows["median"].to_numpy(),
         (rows["median"] - rows["median_lo"]).to_numpy(),
         (rows["median_hi"] - rows["median"]).to_numpy()),
        kdims=["group"], vdims=["median", "neg", "pos"])
    return (bars * errors).opts(title=f"{label.capitalize()}: median and 95% CI")
