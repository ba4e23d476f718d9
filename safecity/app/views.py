"""Plots shared by the dashboards and the notebooks: data-model tables in, HoloViews out.

The operator's dashboard and the analyst's notebook call the same functions, so
what an analyst tunes is what an operator sees. Maps are drawn in plain lon/lat
from local data (no tile server), so they work offline. When a city serves its
own map tiles (``$SAFECITY_TILES_URL``), the tables are projected once to Web
Mercator (``to_web_mercator``), which holoviews' ``Tiles`` need, and the same
functions draw on the tiles.
"""
from __future__ import annotations

import datashader as ds
import holoviews as hv
import numpy as np
import pandas as pd
import shapely
from holoviews.operation.datashader import rasterize, spread

from safecity.config.city import DEFAULT_CITY

UNIT_COLORS = {"police": "#1f4e9c", "fire": "#d62728", "ambulance": "#2ca02c"}
UNIT_MARKERS = {"available": "circle", "dispatched": "triangle", "en_route": "triangle",
                "on_scene": "square", "returning": "diamond", "out_of_service": "x"}
EVENT_COLORS = {"anomaly": "#ff7f0e", "gunshot": "#d62728", "panic": "#9467bd", "call": "#7f7f7f",
                "fire": "#8c564b", "crowd_movement": "#17becf", "excessive_density": "#e377c2"}
_MAP_OPTS = dict(data_aspect=1, responsive=True, min_height=420, xlabel="lon", ylabel="lat",
                 tools=["hover"], active_tools=["wheel_zoom"])
_TILE_MAP_OPTS = {**_MAP_OPTS, "xlabel": "easting (m)", "ylabel": "northing (m)", "xaxis": None,
                  "yaxis": None}


def map_opts(tiles: str | None = None) -> dict:
    """Overlay options of every map: lon/lat axes offline, none over tiles (they are metres)."""
    return _TILE_MAP_OPTS if tiles else _MAP_OPTS


def to_web_mercator(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose ``lon``/``lat`` (and ``geometry``) are Web Mercator metres, for ``hv.Tiles``.

    Only done when tiles are drawn: offline maps stay in lon/lat, which an
    analyst reads at once.
    """
    out = df.copy()
    if "lon" in out and "lat" in out:
        x, y = hv.util.transform.lon_lat_to_easting_northing(out["lon"].to_numpy(float),
                                                             out["lat"].to_numpy(float))
        out["lon"], out["lat"] = x, y
    if "geometry" in out:
        def project(coords: np.ndarray) -> np.ndarray:
            x, y = hv.util.transform.lon_lat_to_easting_northing(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])
        out["geometry"] = shapely.transform(out["geometry"].to_numpy(), project)
    return out


def tile_layer(url: str) -> hv.Tiles:
    """The city's own XYZ tiles (``.../{Z}/{X}/{Y}.png``) under the zones."""
    return hv.Tiles(url, name="tiles").opts(alpha=0.6)


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


def zone_outlines(zones: pd.DataFrame) -> hv.Path:
    """Every zone's outline as one path broken by NaNs: drawn as one glyph, five times
    faster than ``zone_polygons`` on the 111 Marseille quartiers (no hover per zone)."""
    parts = []
    for geometry in zones["geometry"]:
        for geom in getattr(geometry, "geoms", [geometry]):
            parts += [np.asarray(geom.exterior.coords)[:, :2], np.full((1, 2), np.nan)]
    return hv.Path([np.vstack(parts)] if parts else []).opts(color="#555555", line_width=0.6)


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
                         metric: str = "people_count", tz: str = DEFAULT_CITY.tz) -> hv.HeatMap:
    """Mean level per zone and hour of the week in the city's time ``tz``: the usual situation at a glance."""
    obs = observations[observations["metric"] == metric].merge(
        sensors[["sensor_id", "zone"]], on="sensor_id")
    ts = obs["ts"].dt.tz_convert(tz)
    obs = obs.assign(hour_of_week=ts.dt.day_of_week * 24 + ts.dt.hour,
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
             title: str = "", tiles: str | None = None) -> hv.Overlay:
    """Zones, the sensor-level heatmap and the units on one offline map (on ``tiles`` if given)."""
    bounds = shapely.total_bounds(zones["geometry"].to_numpy())
    return on_zone_map(zones, level_heatmap(levels, bounds) * unit_markers(units), title, tiles)


def on_zone_map(zones: pd.DataFrame, layers, title: str = "", tiles: str | None = None):
    """``layers`` over the zones (and the tiles), with the map options of every map."""
    under = zone_outlines(zones) if tiles is None else tile_layer(tiles) * zone_outlines(zones)
    return (under * layers).opts(hv.opts.Overlay(title=title, **map_opts(tiles)))


def sensor_anomaly(scores: pd.DataFrame, sensors: pd.DataFrame, start, end) -> pd.DataFrame:
    """Largest |standardised departure| per sensor in ``(start, end]``, with positions.

    ``scores`` is ``UsualLevel.score_samples`` (bins x sensors); a sensor whose
    bins were never scored in the window is left out, never shown as calm.
    """
    window = scores[(scores.index > pd.Timestamp(start)) & (scores.index <= pd.Timestamp(end))]
    peak = window.abs().max().dropna().rename("value")
    peak.index = peak.index.astype(str)
    return sensors.merge(peak, left_on="sensor_id", right_index=True)[
        ["sensor_id", "kind", "zone", "lon", "lat", "value"]]


def events_between(events: pd.DataFrame, start, end) -> pd.DataFrame:
    """The located events with ``start < ts <= end``."""
    inside = (events["ts"] > pd.Timestamp(start)) & (events["ts"] <= pd.Timestamp(end))
    return events[inside].dropna(subset=["lon", "lat"]).reset_index(drop=True)


def event_markers(events: pd.DataFrame) -> hv.Points:
    """Events as small markers coloured by kind, their score in the hover."""
    events = events.assign(color=events["kind"].map(EVENT_COLORS).fillna("#bcbd22"),
                           time=events["ts"].dt.strftime("%a %H:%M"),
                           score=events["score"].astype(float).round(2))
    return hv.Points(events, kdims=["lon", "lat"],
                     vdims=["kind", "score", "time", "source", "color"]).opts(
        color="color", size=7, marker="diamond", line_color="black", line_width=0.5,
        hover_tooltips=[("event", "@kind"), ("score", "@score"), ("at", "@time"),
                        ("source", "@source")])


def anomaly_map(zones: pd.DataFrame, anomaly: pd.DataFrame, events: pd.DataFrame,
                title: str = "", tiles: str | None = None) -> hv.Overlay:
    """Datashader heatmap of the sensors' anomaly scores, and the window's events on top."""
    bounds = shapely.total_bounds(zones["geometry"].to_numpy())
    heat = level_heatmap(anomaly, bounds, label="largest |score| (usual-level departures)")
    return on_zone_map(zones, heat.opts(cmap="fire") * event_markers(events), title, tiles)


def zone_forecast_map(zones: pd.DataFrame, peak: pd.DataFrame, title: str = "",
                      tiles: str | None = None,
                      label: str = "expected people per hour (peak, median)") -> hv.Overlay:
    """Zones filled by the forecast's expected peak (q50) of people per hour.

    ``peak`` has ``zone`` (a zone_id, as in the sensors table) and ``value``,
    and the interval at that hour in ``low`` and ``high`` when the forecast has
    one (``forecast_peaks``); zones without a forecast stay empty rather than
    reading as zero.
    """
    peak = peak.set_index("zone")
    interval = {"low", "high"} <= set(peak.columns)
    paths = []
    for row in zones.itertuples(index=False):
        if str(row.zone_id) not in peak.index:
            continue
        p = peak.loc[str(row.zone_id)]
        for geom in getattr(row.geometry, "geoms", [row.geometry]):
            x, y = geom.exterior.coords.xy
            paths.append({"x": np.asarray(x), "y": np.asarray(y), "zone": str(row.name),
                          "value": float(p["value"]),
                          **({"low": float(p["low"]), "high": float(p["high"])} if interval else {})})
    vdims = ["value", "zone"] + (["low", "high"] if interval else [])
    tooltips = [("zone", "@zone"), ("expected peak", "@value{0,0}")]
    if interval:
        tooltips.append(("interval", "@low{0,0} – @high{0,0}"))
    filled = hv.Polygons(paths, kdims=["x", "y"], vdims=vdims).opts(
        color="value", cmap="viridis", colorbar=True, clabel=label,
        line_color="white", line_width=0.5, alpha=0.85, hover_tooltips=tooltips)
    return on_zone_map(zones, filled, title, tiles)


def forecast_peaks(forecast: pd.DataFrame, low: str = "q10", mid: str = "q50",
                   high: str = "q90") -> pd.DataFrame:
    """Per zone (the forecast's ``sensor_id``), the hour of its highest median and the interval then.

    Columns zone, ts, value (the median), low, high: what ``zone_forecast_map`` draws.
    """
    if forecast.empty:
        return pd.DataFrame({"zone": pd.Series(dtype=object), "ts": pd.Series(dtype="datetime64[ns, UTC]"),
                             **{c: pd.Series(dtype=float) for c in ("value", "low", "high")}})
    top = forecast.loc[forecast.groupby("sensor_id")[mid].idxmax()]
    return pd.DataFrame({"zone": top["sensor_id"].astype(str).to_numpy(), "ts": top["ts"].to_numpy(),
                         "value": top[mid].to_numpy(float), "low": top[low].to_numpy(float),
                         "high": top[high].to_numpy(float)})


def forecast_band(forecast: pd.DataFrame, name: str, low: str = "q10", mid: str = "q50",
                  high: str = "q90") -> hv.Overlay:
    """One sensor's (or zone's) forecast: the median line inside its interval."""
    rows = forecast[forecast["sensor_id"] == name].sort_values("ts")
    rows = rows.assign(ts=rows["ts"].dt.tz_convert(None))
    band = hv.Area(rows, kdims=["ts"], vdims=[low, high], label=f"{low}-{high}").opts(
        alpha=0.3, color="#1f77b4", line_alpha=0)
    line = hv.Curve(rows, kdims=["ts"], vdims=[mid], label="median").opts(color="#1f4e9c",
                                                                         line_width=2)
    return (band * line).opts(responsive=True, min_height=280, xlabel="UTC", ylabel="people per hour",
                              legend_position="top_left", title=f"Forecast for {name}")


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
