"""The event heatmap counts the right events: its time window and its pixels match a plain
pandas and numpy count of the same events."""
from __future__ import annotations

import datashader as ds
import holoviews as hv
import numpy as np
import pandas as pd

from holoviews.operation.datashader import rasterize, shade

from safecity.app.heatmap import CMAP, EventDensity, PlotRanges, SortedEvents, shaded_image

T0 = pd.Timestamp("2026-01-01", tz="UTC")


def _events(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` events at the centres of a 40 x 30 grid of 0.01 degree cells, over 30 days, unsorted."""
    rng = np.random.default_rng(seed)
    col, row = rng.integers(0, 40, n), rng.integers(0, 30, n)
    return pd.DataFrame({"ts": T0 + pd.to_timedelta(rng.integers(0, 30 * 86_400, n), unit="s"),
                         "lon": 5.0 + (col + 0.5) * 0.01, "lat": 43.0 + (row + 0.5) * 0.01,
                         "col": col, "row": row})


def test_window_and_pixels_count_what_pandas_counts():
    events = _events(400_000)
    end = pd.Timestamp("2026-01-20 12:00")
    density = EventDensity(events, end=end.to_pydatetime(), hours=24 * 5)
    start = T0 + (end - T0.tz_localize(None)) - pd.Timedelta(hours=24 * 5)
    inside = events[(events["ts"] > start) & (events["ts"] <= end.tz_localize("UTC"))]
    assert 0 < len(inside) < len(events)
    assert len(density.window()) == len(inside)

    counts = density.counts(x_range=(5.0, 5.4), y_range=(43.0, 43.3), width=40, height=30)
    want = np.zeros((30, 40), int)
    np.add.at(want, (inside["row"].to_numpy(), inside["col"].to_numpy()), 1)
    assert np.array_equal(counts.to_numpy(), want)

    density.hours = 24 * 40  # more than the whole history: every event up to the end
    assert len(density.window()) == int((events["ts"] <= end.tz_localize("UTC")).sum())


def test_window_bounds_exclude_the_start_and_include_the_end():
    ts = pd.to_datetime(["2026-01-01 00:00", "2026-01-01 01:00", "2026-01-01 02:00"], utc=True)
    events = SortedEvents(pd.DataFrame({"ts": ts[::-1], "lon": [1.0, 2.0, 3.0], "lat": 0.0}))
    got = events.between(pd.Timestamp("2026-01-01 00:00", tz="UTC"), pd.Timestamp("2026-01-01 01:00"))
    assert got["lon"].tolist() == [2.0]  # 01:00 only: sorted by time, start excluded, end included


def test_the_default_window_ends_with_the_last_event_even_in_nanoseconds():
    ts = pd.to_datetime(["2026-01-01 00:00:00", "2026-01-01 01:00:00.000000001"], utc=True, format="ISO8601")
    density = EventDensity(pd.DataFrame({"ts": ts, "lon": [1.0, 2.0], "lat": 0.0}), hours=2)
    assert density.window()["lon"].tolist() == [1.0, 2.0]


def test_the_served_plot_is_an_image_of_the_window():
    hv.extension("bokeh", logo=False)  # as a notebook or the dashboard (safecity.app.dashboard) loads it
    events = _events(50_000, seed=1)
    density = EventDensity(events, hours=24 * 3)
    image = density.plot(width=40, height=30, shaded=False)[()]
    assert isinstance(image, hv.Image) and image.data["lon"].size == 40
    assert np.nansum(image.dimension_values(2)) == len(density.window())
    shaded = density.plot(width=40, height=30)[()]
    assert isinstance(shaded, hv.RGB)
    assert hv.render(density.plot(width=40, height=30)).output_backend in ("canvas", "webgl")


def test_shading_gives_holoviews_shades_colours():
    hv.extension("bokeh", logo=False)
    density = EventDensity(_events(50_000, seed=2), hours=24 * 10)
    image = density.plot(width=40, height=30, shaded=False)[()]
    ours, theirs = shaded_image(image), shade(image, cmap=CMAP, cnorm="eq_hist")
    a, b = (np.stack([rgb.dimension_values(d, flat=False) for d in rgb.vdims]).astype(int)
            for rgb in (ours, theirs))
    assert a.shape == b.shape and ours.bounds.lbrt() == theirs.bounds.lbrt()
    assert np.array_equal(a[3] == 0, b[3] == 0)  # the same empty (transparent) pixels
    assert np.abs(a - b).max() <= 4  # matplotlib's table against datashader's interpolation


def test_a_sparse_window_is_drawn():
    """One event per pixel (a quiet hour): every pixel with an event is coloured, none vanishes
    (datashader's ``eq_hist`` alone divides by zero there and draws nothing)."""
    hv.extension("bokeh", logo=False)
    events = _events(1200, seed=3).drop_duplicates(["col", "row"])  # one event per cell
    density = EventDensity(events, hours=24 * 30)
    image = density.plot(width=400, height=300, shaded=False)[()]
    counts = image.dimension_values(2, flat=False)
    assert 0 < np.nansum(counts) and np.nanmax(counts) == 1
    alpha = shaded_image(image).dimension_values("A", flat=False)
    assert np.array_equal(alpha > 0, np.nan_to_num(counts) > 0)


def _rasterized(density: EventDensity, x_range, y_range, width: int, height: int) -> hv.Image:
    """The window counted as HoloViews' ``rasterize`` counts it (the plot's former path)."""
    return rasterize(density.points(), aggregator=ds.count(), x_range=x_range, y_range=y_range,
                     width=width, height=height, dynamic=False)


def test_the_image_is_rasterize_and_shaded_image():
    """``image`` (datashader and the colour table, no HoloViews operations) gives what
    ``rasterize`` and ``shaded_image`` give: the same counts, colours and bounds."""
    hv.extension("bokeh", logo=False)
    density = EventDensity(_events(60_000, seed=4), hours=24 * 12)
    for x_range, y_range in (((5.0, 5.4), (43.0, 43.3)), ((5.05, 5.21), (43.02, 43.11))):
        want = _rasterized(density, x_range, y_range, 90, 70)
        got = density.image(x_range, y_range, 90, 70, shaded=False)
        assert got.vdims == want.vdims and got.bounds.lbrt() == want.bounds.lbrt()
        assert np.array_equal(got.dimension_values(2, flat=False), want.dimension_values(2, flat=False),
                              equal_nan=True)
        direct = ds.Canvas(plot_width=90, plot_height=70, x_range=x_range, y_range=y_range).points(
            density.window(), "lon", "lat", ds.count())
        assert np.array_equal(got.data[got.vdims[0].name].to_numpy(), direct.to_numpy())
        want, got = shaded_image(want), density.image(x_range, y_range, 90, 70)
        assert got.bounds.lbrt() == want.bounds.lbrt()
        for channel in want.vdims:
            assert np.array_equal(got.dimension_values(channel.name, flat=False),
                                  want.dimension_values(channel.name, flat=False))


def test_an_update_replaces_the_image_data_only():
    """A zoom (the plot's ranges) or a window change sends a new image at the plot's fixed
    width x height into the same Bokeh figure and data source: the pixels ``rasterize`` and
    ``shaded_image`` would have sent."""
    hv.extension("bokeh", logo=False)
    density = EventDensity(_events(60_000, seed=5), hours=24 * 12)
    plot = hv.renderer("bokeh").get_plot(density.plot(width=90, height=70))
    figure, source = plot.state, plot.handles["source"]
    assert source.data["image"][0].shape == (70, 90)
    ranges = next(s for s in plot.streams if isinstance(s, PlotRanges))
    for x_range, y_range, hours in (((5.05, 5.21), (43.02, 43.11), 24 * 12),
                                    ((5.05, 5.21), (43.02, 43.11), 24 * 3),
                                    ((5.0, 5.4), (43.0, 43.3), 24 * 3)):
        if hours != density.hours:
            density.hours = hours
        else:
            ranges.event(x_range=x_range, y_range=y_range)
        assert plot.state is figure and plot.handles["source"] is source
        want = hv.render(shaded_image(_rasterized(density, x_range, y_range, 90, 70)))
        want = want.renderers[0].data_source.data
        assert np.array_equal(source.data["image"][0], want["image"][0])
        assert (source.data["x"], source.data["y"]) == (want["x"], want["y"])


def test_a_sparse_window_is_drawn_on_every_update():
    """The sparse-window colouring holds for the images a zoom or a window change makes."""
    events = _events(1200, seed=3).drop_duplicates(["col", "row"])  # one event per cell
    density = EventDensity(events, hours=24 * 30)
    ranges = ((5.0, 5.4), (43.0, 43.3))
    counts = density.image(*ranges, 400, 300, shaded=False).dimension_values(2, flat=False)
    alpha = density.image(*ranges, 400, 300).dimension_values("A", flat=False)
    assert 0 < np.nansum(counts) and np.nanmax(counts) == 1
    assert np.array_equal(alpha > 0, np.nan_to_num(counts) > 0)
