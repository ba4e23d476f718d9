"""Plots shared by the dashboards and the notebooks: data-model tables in, HoloViews out.

The operator's dashboard and the analyst's notebook call the same functions, so
what an analyst tunes is what an operator sees. Maps are drawn in plain lon/lat
from local data (no tile server), so they work offline. When a city serves its
own map tiles (``$SAFECITY_TILES_URL``), the tables are projected once to Web
Mercator (``to_web_mercator``), which holoviews' ``Tiles`` need, and the same
functions draw on the tiles.
"""
from __future__ import annotations

import json

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
    """A copy whose ``lon``/``lat`` (and ``geometry``, and ``path``: lists of (lon, lat)) are
    Web Mercator metres, for ``hv.Tiles``.

    Only done when tiles are drawn: offline maps stay in lon/lat, which an
    analyst reads at once.
    """
    out = df.copy()
    if "lon" in out and "lat" in out:
        x, y = hv.util.transform.lon_lat_to_easting_northing(out["lon"].to_numpy(float),
                                                             out["lat"].to_numpy(float))
        out["lon"], out["lat"] = x, y

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = hv.util.transform.lon_lat_to_easting_northing(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    if "geometry" in out:
        out["geometry"] = shapely.transform(out["geometry"].to_numpy(), project)
    if "path" in out:
        out["path"] = [[tuple(p) for p in project(np.asarray(path, float).reshape(-1, 2))]
                       for path in out["path"]]
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


# =========================================================================== the operator's map
# Incidents, cameras' fields of view and routes: layers the console overlays on the zones.

#: Incident colour by priority, 1 (most urgent) to 5: fixed, so an operator learns it once.
PRIORITY_COLORS = {1: "#d62728", 2: "#ff7f0e", 3: "#e6b800", 4: "#1f77b4", 5: "#8c8c8c"}
#: Incident marker by kind; any other kind is a circle.
INCIDENT_MARKERS = {"gunshot": "star", "fire": "triangle", "panic": "diamond", "assault": "square",
                    "medical": "plus", "person_on_ground": "plus", "traffic_accident": "hex",
                    "abandoned_object": "square_pin", "forbidden_zone": "inverted_triangle",
                    "crowd_movement": "circle_dot", "excessive_density": "circle_dot",
                    "wrong_way": "triangle_pin"}
CAMERA_COLOR = "#6a3d9a"
#: Marker size grows with the number of sources behind an incident, up to this many.
MAX_SOURCES_SHOWN = 5
#: An incident's marker fades over this long, down to ``MIN_ALPHA``: the new stand out.
FADE_S, MIN_ALPHA = 3600.0, 0.35


def _utc(ts) -> pd.Timestamp:
    """A UTC timestamp; naive ones are UTC (the engine's clock is naive UTC)."""
    ts = pd.Timestamp(ts)
    return ts if ts is pd.NaT else (ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC"))


def duration_text(seconds: float) -> str:
    """A duration as an operator says it: "42 s", "4 min 10 s", "2 h 5 min", "3 d 2 h"."""
    s = round(abs(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min {r} s" if r else f"{m} min"
    if s < 86_400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def age_text(ts, now) -> str:
    """How long ago ``ts`` was at ``now``: "just now", "42 s ago", "3 min ago", "2 h 5 min ago".

    Minutes are whole (an age is read at a glance, not timed); a time ahead of
    ``now`` by more than a few seconds (a source's clock ahead) says "in ...".
    Naive times are UTC; an unknown time gives "".
    """
    ts, now = _utc(ts), _utc(now)
    if ts is pd.NaT or now is pd.NaT:
        return ""
    age = (now - ts).total_seconds()
    if abs(age) < 5:
        return "just now"
    s = int(abs(age))
    text = duration_text(s if s < 60 else (s // 60 * 60 if s < 3600 else s))
    return f"{text} ago" if age > 0 else f"in {text}"


def local_time(ts, tz: str, now=None) -> str:
    """``ts`` on the city's clock, to the second: "14:03:27", or "2026-06-01 14:03:27" when it is
    not today there (today at ``now``, default the wall clock). Naive times are UTC."""
    ts = _utc(ts)
    if ts is pd.NaT:
        return ""
    local = ts.tz_convert(tz).round("s")
    today = _utc(pd.Timestamp.now(tz="UTC") if now is None else now).tz_convert(tz).date()
    return local.strftime("%H:%M:%S" if local.date() == today else "%Y-%m-%d %H:%M:%S")


def _source_count(event_ids) -> int:
    """How many events an incident gathers (its ``event_ids``, a JSON list); 0 when unreadable."""
    if isinstance(event_ids, (list, tuple)):
        return len(event_ids)
    try:
        ids = json.loads(event_ids)
    except (TypeError, ValueError):
        return 0
    return len(ids) if isinstance(ids, list) else 0


def incident_markers(incidents: pd.DataFrame, now) -> hv.Points:
    """Incidents on the map: shape by kind, colour by priority, size by sources, fading with age.

    ``incidents`` as the engine's queue (incident_id, kind, priority, status,
    lon, lat, ts, event_ids); ``now`` is the engine's clock. Incidents without
    a place are left out (the queue still lists them).
    """
    cols = ["lon", "lat", "incident_id", "kind", "priority", "status", "age", "sources",
            "color", "marker", "size", "alpha"]
    inc = incidents.dropna(subset=["lon", "lat"])
    if inc.empty:
        return hv.Points(pd.DataFrame(columns=cols), kdims=cols[:2], vdims=cols[2:])
    now_utc = _utc(now)
    ts = pd.to_datetime(inc["ts"], utc=True)
    age_s = (now_utc - ts).dt.total_seconds().clip(lower=0).to_numpy(float)
    sources = np.array([_source_count(v) for v in inc["event_ids"]], int)
    priority = inc["priority"].astype(int).to_numpy()
    table = pd.DataFrame({
        "lon": inc["lon"].to_numpy(float), "lat": inc["lat"].to_numpy(float),
        "incident_id": inc["incident_id"].astype(str).to_numpy(), "kind": inc["kind"].astype(str).to_numpy(),
        "priority": priority, "status": inc["status"].astype(str).to_numpy(),
        "age": [age_text(t, now_utc) for t in ts], "sources": sources,
        "color": [PRIORITY_COLORS.get(p, PRIORITY_COLORS[5]) for p in priority],
        "marker": [INCIDENT_MARKERS.get(k, "circle") for k in inc["kind"]],
        "size": 10 + 4 * np.clip(sources, 1, MAX_SOURCES_SHOWN),
        "alpha": 1.0 - (1.0 - MIN_ALPHA) * np.clip(age_s / FADE_S, 0, 1),
    })
    return hv.Points(table, kdims=cols[:2], vdims=cols[2:]).opts(
        color="color", marker="marker", size="size", alpha="alpha", line_color="black",
        line_width=0.8, hover_tooltips=[("incident", "@incident_id"), ("kind", "@kind"),
                                        ("priority", "@priority"), ("status", "@status"),
                                        ("age", "@age"), ("sources", "@sources")])


def camera_fields(fields: pd.DataFrame) -> hv.Polygons:
    """Each camera's field of view as a light wedge (``LiveEngine.camera_fields``), its id in the hover."""
    paths = []
    for row in fields.itertuples(index=False):
        for geom in getattr(row.geometry, "geoms", [row.geometry]):
            if geom is None or geom.is_empty:
                continue
            x, y = geom.exterior.coords.xy
            paths.append({"x": np.asarray(x), "y": np.asarray(y), "camera_id": str(row.camera_id)})
    return hv.Polygons(paths, kdims=["x", "y"], vdims=["camera_id"]).opts(
        color=CAMERA_COLOR, fill_alpha=0.25, line_color=CAMERA_COLOR, line_alpha=0.6,
        line_width=1, hover_tooltips=[("camera", "@camera_id")])


def camera_positions(fields: pd.DataFrame) -> hv.Points:
    """Where each camera stands, as a small marker (the same table as ``camera_fields``)."""
    table = fields[["lon", "lat", "camera_id"]].dropna(subset=["lon", "lat"])
    return hv.Points(table, kdims=["lon", "lat"], vdims=["camera_id"]).opts(
        color=CAMERA_COLOR, marker="square", size=6, line_color="white",
        hover_tooltips=[("camera", "@camera_id")])


def route_paths(routes: pd.DataFrame) -> hv.Overlay:
    """The recommended units' road routes (``LiveEngine.routes``), coloured by unit kind, with
    "ETA 4 min 10 s" beside each unit.

    The same layers whatever the routes (one ``hv.Path`` per unit kind in
    ``UNIT_COLORS`` and one for any other kind, each holding its kind's routes,
    then one ``hv.Labels``), so a ``DynamicMap`` can redraw it as the selected
    incident changes.
    """
    by_kind: dict[str, list[dict]] = {k: [] for k in [*UNIT_COLORS, "other"]}
    labels = []
    for row in routes.itertuples(index=False):
        xy = np.asarray(row.path, float).reshape(-1, 2)
        if len(xy) == 0:
            continue
        kind = str(row.kind) if str(row.kind) in UNIT_COLORS else "other"
        eta = f"ETA {duration_text(row.travel_time_s)}"
        by_kind[kind].append({"x": xy[:, 0], "y": xy[:, 1]})
        labels.append({"x": xy[0, 0], "y": xy[0, 1], "text": f"{row.unit_id} {eta}",
                       "color": UNIT_COLORS.get(kind, "black")})
    # no hover on the lines (bokeh would cut them into segments to hover): the labels say it
    layers = [hv.Path(paths, kdims=["x", "y"], group="Route", label=kind).opts(
        color=UNIT_COLORS.get(kind, "black"), line_width=4, alpha=0.8, show_legend=False)
        for kind, paths in by_kind.items()]
    text = hv.Labels(pd.DataFrame(labels, columns=["x", "y", "text", "color"]), kdims=["x", "y"],
                     vdims=["text", "color"]).opts(text_color="color", text_font_size="10pt",
                                                   text_align="left", text_baseline="bottom",
                                                   text_font_style="bold")
    return hv.Overlay([*layers, text])
