"""Benchmark of the event heatmap: from a request in the browser to the new image painted, on 10 million events.

Starts a real ``panel serve`` of this file: a page with
``safecity.app.heatmap.EventDensity`` over ``--events`` synthetic events (two
years of calls around 60 hot spots in Marseille and a uniform background;
the same seed on both sides), a "window hours" input and the heatmap. Debian's
Chromium (Playwright, headless) opens it and, after three warm-up requests
(numba compiles datashader's aggregation on the first), times each request
from the browser's side:

* window: the page's "window hours" input set to a new value (the Bokeh model's
  ``value``, as typing it does) -> the new image's array in the page and the
  plot painted (Bokeh's view finished, then the next animation frame);
* zoom: a mouse-wheel turn over the plot (Playwright's ``mouse.wheel``; the
  time runs from the wheel event in the page) -> the re-aggregated image painted.

Three pages, for where the time goes: ``?mode=sorted``, the page as the
package draws it (the window by binary search in the time-sorted events, the
counts coloured on the server: ``EventDensity.plot()``); ``?mode=pandas``, the
window taken by a pandas mask over the unsorted table, as the dashboard's maps
take theirs (``CityView.map``); ``?mode=counts``, the counts sent and coloured
in the browser (``plot(shaded=False)``). Each page is a new session with its own
``EventDensity`` over the process's shared ``SortedEvents``. Beside them, in the
same run and on the same data, the baseline: datashader alone
(``Canvas.points(...).count()`` on the same windows, 600 x 500, after JIT), and
the window's selection alone both ways. Median and p95 over ``--requests``
requests each, and the CPU per request of the server and of the browser
(Playwright's driver and Chromium's processes: Playwright's own share, the
websocket frames it relays, is in it).

    .venv/bin/python bench/heatmap.py [--events 10000000] [--requests 20] [--canvas 600x500]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
#: The canvas datashader fills (``--canvas``, passed to the server as $BENCH_CANVAS).
WIDTH, HEIGHT = (int(v) for v in os.environ.get("BENCH_CANVAS", "600x500").split("x"))
#: Window lengths the requests cycle through (hours): each a new image.
HOURS = [24 * d for d in (7, 30, 90, 180, 365, 14, 60, 120, 240, 500, 3, 45)]


def synthetic_events(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` events over two years: 80 % around 60 hot spots of Marseille, 20 % anywhere."""
    rng = np.random.default_rng(seed)
    spots = rng.uniform([5.32, 43.22], [5.48, 43.36], (60, 2))
    hot = rng.random(n) < 0.8
    which = rng.integers(0, len(spots), n)
    lon = np.where(hot, spots[which, 0] + rng.normal(0, 0.006, n), rng.uniform(5.28, 5.52, n))
    lat = np.where(hot, spots[which, 1] + rng.normal(0, 0.005, n), rng.uniform(43.20, 43.38, n))
    start = pd.Timestamp("2024-01-01", tz="UTC").value
    ts = start + rng.integers(0, 2 * 365 * 86_400, n) * 1_000_000_000
    return pd.DataFrame({"ts": pd.to_datetime(ts, utc=True), "lon": lon, "lat": lat})


# --------------------------------------------------------------------------- server side
# These run inside ``panel serve bench/heatmap.py``.

_SHARED: dict = {}


def _events():
    """The synthetic events and their time-sorted copy, built once per server process."""
    from safecity.app.heatmap import SortedEvents

    if "events" not in _SHARED:
        events = synthetic_events(int(os.environ.get("BENCH_EVENTS", 10_000_000)))
        _SHARED["events"], _SHARED["sorted"] = events, SortedEvents(events)
    return _SHARED["events"], _SHARED["sorted"]


def _density(mode: str):
    """This session's ``EventDensity`` (its own window) over the shared events."""
    from safecity.app.heatmap import EventDensity

    events, ordered = _events()

    class PandasWindow(EventDensity):
        """The window as the dashboard's maps take theirs: a pandas mask over the whole table."""

        def window(self) -> pd.DataFrame:
            end = pd.Timestamp(self.end, tz="UTC")
            return events[(events["ts"] > end - pd.Timedelta(hours=self.hours))
                          & (events["ts"] <= end)][["lon", "lat"]]

    density = (PandasWindow if mode == "pandas" else EventDensity)(ordered)
    return density


def serve_app() -> None:
    import panel as pn

    mode = pn.state.session_args.get("mode", [b"sorted"])[0].decode()
    density = _density(mode)
    density.hours = HOURS[0]
    hours = pn.widgets.IntInput.from_param(density.param.hours, name="window hours")
    plot = pn.pane.HoloViews(density.plot(WIDTH, HEIGHT, shaded=mode != "counts"), width=900, height=700)
    pn.Column(hours, plot).servable(title=f"safecity · heatmap bench ({mode})")


# --------------------------------------------------------------------------- client side

#: JS: the image renderer, its plot's view and the image array now shown.
_FIND = ("const all = () => [...Bokeh.documents[0].all_models];"
         " const renderer = () => all().find(m => m.type === 'GlyphRenderer' && m.glyph"
         "   && String(m.glyph.type).startsWith('Image'));"
         " const plotView = r => [...Bokeh.index.all_views()].find(v => v.model"
         "   && Array.isArray(v.model.renderers) && v.model.renderers.includes(r));"
         " const shown = () => { const r = renderer(); const d = r && r.data_source.data.image;"
         "   return d && d.length ? d[0] : null; };")
#: JS: resolve with ms from window.__t0 to the new image's array in the page ("data") and to
#: it painted ("painted": the view finished, then the next animation frame); reject after
#: the timeout. Polled on every animation frame (about 16 ms apart; polling by a 4 ms
#: timer instead gave the same painted times).
_PAINTED = ("const painted = (before, timeoutMs) => new Promise((resolve, reject) => {"
            " let data;"
            " const check = () => { const r = renderer(); const now = shown(); const v = r && plotView(r);"
            "  const t = performance.now() - (window.__t0 ?? performance.now());"
            "  if (now && now !== before && window.__t0 !== undefined && data === undefined) data = t;"
            "  if (data !== undefined && v && v.has_finished())"
            "   requestAnimationFrame(() => resolve({data, painted: performance.now() - window.__t0}));"
            "  else if (t > timeoutMs) reject(new Error('no new image in ' + timeoutMs + ' ms'));"
            "  else requestAnimationFrame(check); };"
            " requestAnimationFrame(check); });")
#: The page is ready: the heatmap has an image and is painted.
READY = ("() => { if (!window.Bokeh || !Bokeh.documents || !Bokeh.documents.length) return false;"
         f" {_FIND} const r = renderer(); const v = r && plotView(r);"
         " return !!(shown() && v && v.has_finished()); }")
#: Set the window-hours input's value and wait for the new image painted.
WINDOW_REQUEST = (f"async ([hours, timeoutMs]) => {{ {_FIND} {_PAINTED}"
                  " const input = all().find(m => m.title === 'window hours' && m.properties && m.properties.value);"
                  " const before = shown(); window.__t0 = performance.now(); input.value = hours;"
                  " return await painted(before, timeoutMs); }")
#: Arm a zoom: remember the image shown and time the next wheel event in the page.
ZOOM_ARM = (f"() => {{ {_FIND} window.__before = shown(); window.__t0 = undefined;"
            " window.addEventListener('wheel', () => { window.__t0 = performance.now(); },"
            " {capture: true, once: true}); }")
ZOOM_WAIT = f"async (timeoutMs) => {{ {_FIND} {_PAINTED} return await painted(window.__before, timeoutMs); }}"


def _stats(ms) -> str:
    ms = np.asarray(ms, float)
    return f"median {np.median(ms):7.1f} ms   p95 {np.percentile(ms, 95):7.1f} ms   (n={len(ms)})"


def _cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid``, or with None of this process's children:
    the browser (Playwright's driver and Chromium's processes)."""
    import psutil

    procs = [psutil.Process(pid)] if pid else psutil.Process().children(recursive=True)
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def browser_requests(page, url: str, server_pid: int, requests: int, timeout_s: float) -> dict:
    """Warm up, then time ``requests`` window changes and ``requests`` zooms on the page at ``url``."""
    page.goto(url, timeout=timeout_s * 1000)
    page.wait_for_function(READY, polling=100, timeout=timeout_s * 1000)
    timeout_ms = timeout_s * 1000
    for hours in (HOURS[1], HOURS[2], HOURS[0]):  # numba compiles on the first aggregations
        page.evaluate(WINDOW_REQUEST, [hours, timeout_ms])
    cpu0, browser0 = _cpu(server_pid), _cpu(None)
    window = [page.evaluate(WINDOW_REQUEST, [HOURS[(i + 1) % len(HOURS)], timeout_ms])
              for i in range(requests)]
    cpu_window, browser_window = _cpu(server_pid) - cpu0, _cpu(None) - browser0
    box = page.locator("canvas").first.bounding_box()
    zoom, cpu0, browser0 = [], _cpu(server_pid), _cpu(None)
    for i in range(requests):
        page.evaluate(ZOOM_ARM)
        # in and out over points spread across the plot: each turn a new range, a new image
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.04 * (i % 10)),
                        box["y"] + box["height"] * (0.35 + 0.03 * (i % 10)))
        page.mouse.wheel(0, -120 if i % 4 < 2 else 120)
        zoom.append(page.evaluate(ZOOM_WAIT, timeout_ms))
    cpu_zoom, browser_zoom = _cpu(server_pid) - cpu0, _cpu(None) - browser0
    return {"window_ms": [w["painted"] for w in window], "window_data_ms": [w["data"] for w in window],
            "zoom_ms": [z["painted"] for z in zoom], "zoom_data_ms": [z["data"] for z in zoom],
            "server_cpu_ms_window": cpu_window * 1000 / requests,
            "server_cpu_ms_zoom": cpu_zoom * 1000 / requests,
            "browser_cpu_ms_window": browser_window * 1000 / requests,
            "browser_cpu_ms_zoom": browser_zoom * 1000 / requests}


def datashader_alone(events: pd.DataFrame, requests: int) -> dict:
    """The baseline: datashader counting the same windows (600 x 500) after JIT, and the windows' selection."""
    import datashader as ds

    from safecity.app.heatmap import EventDensity

    density = EventDensity(events)
    end = pd.Timestamp(density.end, tz="UTC")
    canvas = ds.Canvas(plot_width=WIDTH, plot_height=HEIGHT)
    canvas.points(density.window(), "lon", "lat", ds.count())  # JIT
    aggregate, select_sorted, select_mask = [], [], []
    for i in range(requests):
        density.hours = HOURS[(i + 1) % len(HOURS)]
        t = time.perf_counter()
        window = density.window()
        select_sorted.append(time.perf_counter() - t)
        t = time.perf_counter()
        events[(events["ts"] > end - pd.Timedelta(hours=density.hours)) & (events["ts"] <= end)]
        select_mask.append(time.perf_counter() - t)
        t = time.perf_counter()
        canvas.points(window, "lon", "lat", ds.count())
        aggregate.append(time.perf_counter() - t)
    return {"datashader_ms": np.array(aggregate) * 1000, "select_sorted_ms": np.array(select_sorted) * 1000,
            "select_mask_ms": np.array(select_mask) * 1000}


def start_server(n_events: int, canvas: str = "600x500"):
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import free_port, wait_http

    port = free_port()
    env = {**os.environ, "BENCH_EVENTS": str(n_events), "BENCH_CANVAS": canvas, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", __file__, "--port", str(port),
         "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/heatmap"
    wait_http(url, proc, timeout=300)
    return proc, url


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--modes", default="sorted,pandas,counts")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per page wait")
    parser.add_argument("--canvas", default="600x500", help="the canvas datashader fills, WxH")
    args = parser.parse_args(argv)
    global WIDTH, HEIGHT
    WIDTH, HEIGHT = (int(v) for v in args.canvas.split("x"))

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import CHROMIUM, CHROMIUM_ARGS, stop

    print(f"{args.events:,} synthetic events; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}",
          flush=True)
    proc, url = start_server(args.events, args.canvas)
    rows = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for mode in args.modes.split(","):
                    page = browser.new_page(viewport={"width": 1200, "height": 900})
                    rows[mode] = browser_requests(page, f"{url}?mode={mode}", proc.pid, args.requests,
                                                  args.timeout)
                    page.close()
                    print(f"page ({mode}) measured", flush=True)
            finally:
                browser.close()
    finally:
        stop(proc)
    alone = datashader_alone(synthetic_events(args.events), args.requests)

    print(f"\nrequest in the browser -> new image painted, {args.events:,} events, "
          f"{WIDTH} x {HEIGHT} canvas, after warm-up")
    for mode, row in rows.items():
        how = {"sorted": "the package's page: window by binary search, shaded on the server",
               "pandas": "window by a pandas mask (as the dashboard's maps), shaded on the server",
               "counts": "window by binary search, counts sent and coloured in the browser"}[mode]
        print(f"  {mode:6} {how}")
        for kind, name in (("window", "window change"), ("zoom", "zoom (wheel)")):
            print(f"    {name:14} painted: {_stats(row[kind + '_ms'])}   CPU per request: server "
                  f"{row['server_cpu_ms_' + kind]:.0f} ms, browser {row['browser_cpu_ms_' + kind]:.0f} ms")
            print(f"    {'':14} image in the page: {_stats(row[kind + '_data_ms'])}")
    print("same run, same windows, in this process:")
    print(f"  datashader alone (Canvas.points count):   {_stats(alone['datashader_ms'])}")
    print(f"  window by binary search (EventDensity):   {_stats(alone['select_sorted_ms'])}")
    print(f"  window by a pandas mask:                  {_stats(alone['select_mask_ms'])}")
    print(json.dumps({"bench": "heatmap", "events": args.events, "cores": os.cpu_count(),
                      "load_1min": os.getloadavg()[0],
                      "pages": {m: {k: (list(map(float, v)) if isinstance(v, list) else v)
                                    for k, v in r.items()} for m, r in rows.items()},
                      **{k: list(map(float, v)) for k, v in alone.items()}}))


if __name__ == "__main__":
    main()
elif __name__.startswith("bokeh_app"):
    # Bokeh empties a served script's globals once the session is built: run the page from
    # this file imported as a regular module (``bench_heatmap``), cached with its events.
    if "bench_heatmap" not in sys.modules:
        import importlib.util

        spec = importlib.util.spec_from_file_location("bench_heatmap", __file__)
        sys.modules["bench_heatmap"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["bench_heatmap"])
    sys.modules["bench_heatmap"].serve_app()
