"""Where many events happened in a time window: a density heatmap aggregated on the server.

Years of a city's events (calls, alerts, detections: ten million rows) cannot
go to a browser. ``SortedEvents`` keeps them sorted by time, so that a window
is two binary searches and a slice of the table (a pandas mask over ten million
timestamps takes 0.1 to 0.35 s, most of the time a request may take), and
datashader counts the slice into an image of a fixed size, again on every zoom
or pan (``EventDensity.image``, one ``DynamicMap`` over the plot's ranges and
the window), coloured on the server: the browser only ever receives one width x
height image, whatever the number of events or the plot's size
(``bench/heatmap.py``).
"""
from __future__ import annotations

import datashader as ds
import datashader.transfer_functions as tf
import holoviews as hv
import matplotlib
import numpy as np
import pandas as pd
import param
from holoviews.operation.datashader import rasterize, shade
from holoviews.plotting.bokeh.callbacks import RangeXYCallback

from safecity.app import views


CMAP = "inferno"


def shaded_image(image: hv.Image) -> hv.RGB:
    """The counts coloured on the server (histogram-equalised, ``CMAP``), as HoloViews' ``shade``.

    Through matplotlib's colour table (an index per pixel) rather than ``shade``, which turns
    any colour map into a list that datashader interpolates channel by channel: that was
    the server's largest cost per image (the same colours within 4/255).
    """
    counts = image.data[image.vdims[0].name]
    rgba = tf.shade(counts, cmap=matplotlib.colormaps[CMAP], **_normalisation(counts.to_numpy()))
    return hv.RGB(shade.uint32_to_uint8_xr(rgba), kdims=image.kdims, bounds=image.bounds,
                  xdensity=image.xdensity, ydensity=image.ydensity)


def _shaded_rgba(counts) -> np.ndarray:
    """``shaded_image``'s pixels (rows from the bottom, RGBA uint8), without building elements."""
    rgba = tf.shade(counts, cmap=matplotlib.colormaps[CMAP], **_normalisation(counts.to_numpy()))
    pixels = rgba.to_numpy().view(np.uint8).reshape((*rgba.shape, 4))
    pixels[pixels[:, :, 3] == 0] = 0
    return pixels


def _normalisation(counts: np.ndarray) -> dict:
    """``eq_hist``, unless every pixel with events has the same count (a sparse window: one
    event per pixel), where datashader's ``eq_hist`` divides by zero and draws nothing:
    then each such pixel gets the colour map's top colour."""
    nonzero = counts[np.isfinite(counts) & (counts > 0)]
    if nonzero.size and nonzero.min() == nonzero.max():
        return {"how": "linear", "span": (0, float(nonzero.max()))}
    return {"how": "eq_hist"}


class PlotRanges(hv.streams.RangeXY):
    """The plot's x and y ranges, sent on at once after a zoom or pan.

    HoloViews' ``RangeXY`` waits until no range event came for 0.1 s (0.1 to 0.15 s
    added to every zoom); here the events that come while an image is being made are
    gathered instead (HoloViews keeps the last one): at most one image in the making
    and one waiting, whatever the rate of wheel turns.
    """


class _PlotRangesCallback(RangeXYCallback):
    debounce = None


hv.streams.Stream._callbacks["bokeh"][PlotRanges] = _PlotRangesCallback


class SortedEvents:
    """Events (ts, lon, lat) sorted by time once per process, for the windows of every session.

    ``between(start, end)`` is two binary searches and a slice. With ``tiles``
    the positions are projected once to Web Mercator, as the maps' tables are.
    """

    def __init__(self, events: pd.DataFrame, tiles: str | None = None):
        ts = pd.DatetimeIndex(pd.to_datetime(events["ts"], utc=True)).tz_convert(None)
        order = np.argsort(ts.asi8, kind="stable")
        table = events[["lon", "lat"]].iloc[order].reset_index(drop=True)
        self.table = views.to_web_mercator(table) if tiles else table
        self.tiles = tiles
        self.ts = ts.to_numpy()[order]

    def __len__(self) -> int:
        return len(self.ts)

    def between(self, start, end) -> pd.DataFrame:
        """The events with start < ts <= end (lon, lat): a slice of the sorted table, not a copy."""
        bounds = np.array([_naive_utc(start), _naive_utc(end)]).astype(self.ts.dtype)
        first, last = np.searchsorted(self.ts, bounds, side="right")
        return self.table.iloc[first:last]


def _naive_utc(when) -> np.datetime64:
    when = pd.Timestamp(when)
    return (when.tz_convert("UTC").tz_localize(None) if when.tz else when).to_datetime64()


class EventDensity(param.Parameterized):
    """Events of the ``hours`` before ``end`` (start < ts <= end, as ``CityView``'s window), counted per pixel.

    One per session (the window is the session's); the ``SortedEvents`` it
    reads are shared (a DataFrame with ts, lon and lat is sorted here).
    ``plot()`` is the heatmap, the same in a notebook and under ``panel
    serve``; ``counts()`` is the aggregate an analyst can query.
    """

    end = param.Date(doc="The end of the window shown (UTC).")
    hours = param.Integer(default=24 * 7, bounds=(1, None), doc="Hours of events counted.")

    def __init__(self, events: SortedEvents | pd.DataFrame, **params):
        self.events = events if isinstance(events, SortedEvents) else SortedEvents(events)
        if len(self.events):
            # A datetime holds microseconds: round the last event's time up, or it is left out.
            params.setdefault("end", pd.Timestamp(self.events.ts[-1]).ceil("us").to_pydatetime())
        super().__init__(**params)

    def window(self) -> pd.DataFrame:
        """The window's events (lon, lat)."""
        end = pd.Timestamp(self.end)
        return self.events.between(end - pd.Timedelta(hours=self.hours), end)

    @param.depends("end", "hours")
    def points(self) -> hv.Points:
        """The window's events as points (never drawn as such: ``plot`` rasterises them)."""
        return hv.Points(self.window(), kdims=["lon", "lat"])

    def counts(self, x_range=None, y_range=None, width: int = 600, height: int = 500):
        """The window's events per pixel (an xarray grid) over the ranges (default: the events' extent)."""
        canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=x_range, y_range=y_range)
        return canvas.points(self.window(), "lon", "lat", ds.count())

    def image(self, x_range=None, y_range=None, width: int = 600, height: int = 500,
              shaded: bool = True) -> hv.Image | hv.RGB:
        """The window's counts over the ranges at ``width`` x ``height`` (an ``hv.Image``, as
        ``rasterize`` makes it), or with ``shaded`` coloured as ``shaded_image`` (an ``hv.RGB``).

        What ``plot()`` draws on every update: datashader's counts and the colour table,
        without a chain of HoloViews operations per update (``rasterize`` and then
        ``apply``); without ranges (before the plot has any), ``rasterize`` itself.
        """
        window = self.window()
        if x_range is None or y_range is None:
            image = rasterize(hv.Points(window, kdims=["lon", "lat"]), aggregator=ds.count(),
                              x_range=x_range, y_range=y_range, width=width, height=height,
                              dynamic=False)
            return shaded_image(image) if shaded else image
        canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=tuple(x_range),
                           y_range=tuple(y_range))
        counts = canvas.points(window, "lon", "lat", ds.count())
        bounds = (x_range[0], y_range[0], x_range[1], y_range[1])
        if not shaded:
            count = hv.Dimension("lon_lat Count", label="Count", nodata=0)  # as rasterize's
            return hv.Image(counts.rename(count.name), kdims=["lon", "lat"], vdims=[count],
                            bounds=bounds)
        return hv.RGB(_shaded_rgba(counts)[::-1], kdims=["lon", "lat"], bounds=bounds)

    def plot(self, width: int = 600, height: int = 500, shaded: bool = True, **opts) -> hv.DynamicMap:
        """The heatmap: re-aggregated on every window change and every zoom or pan, at a fixed
        ``width`` x ``height`` canvas, whatever the plot's size on the screen (HoloViews'
        ``rasterize`` would follow the plot's size: 1085 x 776 pixels, 2.8 times as many, in
        ``bench/heatmap.py``'s page).

        ``shaded`` colours the counts on the server (datashader's ``eq_hist``) and sends an
        RGBA image; ``shaded=False`` sends the counts, for a colour bar and counts in the
        hover, and the browser colours them: with ``eq_hist`` that took the browser 0.3 s
        of CPU more per 600 x 500 image (``bench/heatmap.py``). One ``DynamicMap`` over the plot's
        ranges (``PlotRanges``) and the window (``image``): an update replaces the image's
        data only. ``opts`` override the maps' plot options (``views.map_opts``).
        """
        def update(x_range=None, y_range=None, **window):
            return self.image(x_range, y_range, width, height, shaded)

        image = hv.DynamicMap(update, streams=[PlotRanges(), hv.streams.Params(self, ["end", "hours"])])
        # Bokeh asks for new ranges only once a wheel zoom has paused for its level-of-detail
        # timeout (0.5 s); one image has no detail to lower: ask at once.
        if shaded:
            image = image.opts(lod={"interval": 0})
        else:
            image = image.opts(cmap=CMAP, cnorm="eq_hist", colorbar=True, clabel="events per pixel",
                               lod={"interval": 0})
        tiles = self.events.tiles
        # shaded, a hover would show RGBA values: no hover tool
        opts = {**views.map_opts(tiles), **({"tools": []} if shaded else {}), **opts}
        if tiles:
            return (views.tile_layer(tiles) * image).opts(hv.opts.Overlay(**opts))
        return image.opts(**opts)
