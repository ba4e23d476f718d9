"""Benchmark of the live dashboard: how long an event takes from entering the engine to each session.

Starts a real ``panel serve`` of this file (the live section of the
operations page: ``LiveView`` on the process's one engine, ``get_engine``)
on a small simulated city, opens N Bokeh client sessions and injects marker
events (police log entries whose text is ``BENCHMARK-<n>``) into the engine.
The server logs when each marker entered the engine (``ReplayEngine.inject``);
each session logs when the marker's text arrived in its copy of the document.
Latency = seen - entered, over sessions x markers: median, p95 and max, and
the server's CPU over the phase (user + system / wall, in % of one core).

Two ways of updating a session are measured in the same run (in both,
``LiveView`` reads the engine once per engine version for all sessions):

* ``periodic``: ``LiveView.refresh`` every second only
  (``pn.state.add_periodic_callback``), the page before it pushed on change;
* ``push``: what ``dashboards/operations.py`` does: the same plus ``refresh``
  scheduled on the session's document as soon as the engine's ``version``
  changes (``param.watch`` + ``doc.add_next_tick_callback``).

Each with 1 session (the baseline) and N sessions. Sessions are Bokeh
``ClientSession`` objects in threads of this process, not browsers: 20
Chromium pages would take the same 2 cores as the server and measure
Chromium's layout more than the server; a client session receives exactly
the patches a browser would. The client process's CPU is printed too, since
it shares the machine.

    .venv/bin/python bench/dashboard.py [--sessions 20] [--events 20] [--modes periodic,push]

``--startup`` measures a cold start instead, as ``bash dev.sh demo`` serves the
page: a new ``safecity serve dashboards/operations.py`` process on the demo city
(``--data-dir``, default a city simulated as ``dev.sh`` does) is started for every
run, and the bench records

* ready: process start -> the server's ready line (``Bokeh app running at:``,
  which Bokeh logs once it listens, after Panel's setup script: the warm-up);
* console: Chromium's navigation -> the live console shown (``CONSOLE_READY``);
* maps: the click on the "City maps" tab -> its first datashader heatmap drawn
  (``MAPS_READY``: a Bokeh plot whose image glyph has data, painted on its canvas);

with the warm-up (``safecity.app.warmup``) and without it (``SAFECITY_WARMUP=0``, the
baseline), alternating, ``--repeat`` times each; medians are printed. ``--load N``
also measures with N busy-loop processes running (a loaded machine). The 1-min
load average is printed before each run.

    .venv/bin/python bench/dashboard.py --startup [--repeat 3] [--load 2] [--data-dir demo-data]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"BENCHMARK-(\d+)")

# --startup: what counts as shown: these selectors of the console's elements (any element,
# through shadow roots).
#: The live console's incident queue: shown once it holds text ("No incidents yet." counts).
CONSOLE_QUEUE = ".incident-queue"
#: The live console's map: shown once a canvas of at least 100x100 px is drawn inside it.
CONSOLE_MAP = ".console-map"
#: The tab clicked to open the city maps.
MAPS_TAB = "City maps"
#: The server's ready line (Bokeh logs it once listening, after the setup script).
READY_LINE = "Bokeh app running at:"


# --------------------------------------------------------------------------- server side
# These run inside ``panel serve bench/dashboard.py``.

def marker_event(engine, n: int):
    """A police log entry at the engine's ``now``, 1 km apart from the other markers (never fused)."""
    import pandas as pd

    ev = engine.city.events
    lon, lat = float(ev["lon"].median()), float(ev["lat"].median())
    return pd.DataFrame([{
        "event_id": f"bench-{n}", "ts": pd.Timestamp(engine.now, tz="UTC"), "kind": "police_log",
        "sensor_id": None, "lon": lon + 0.013 * (n % 40), "lat": lat + 0.009 * (n // 40),
        "score": None, "source": "police_log", "details": json.dumps({"text": f"BENCHMARK-{n}"})}])


def watch_requests(engine, folder: Path) -> None:
    """Inject a marker for every ``<n>.req`` file dropped in ``folder``; log its entry time."""
    def loop() -> None:
        while True:
            for req in sorted(folder.glob("*.req")):
                n = int(req.stem)
                event = marker_event(engine, n)
                entered = time.time()
                engine.inject(event)
                done = time.time()
                tmp = folder / f"{n}.tmp"
                tmp.write_text(json.dumps({"n": n, "entered": entered, "fused": done}))
                tmp.rename(folder / f"{n}.json")
                req.unlink()
            time.sleep(0.002)

    threading.Thread(target=loop, name="bench-injector", daemon=True).start()


def serve_app() -> None:
    """The live section of the operations page.

    ``?update=push`` also refreshes on each engine change, as the operations page does.
    """
    import panel as pn

    from safecity.app.dashboard import LiveView
    from safecity.app.engine import get_engine

    engine = get_engine(os.environ["SAFECITY_DATA_DIR"])
    if not getattr(engine, "_bench_watching", False):  # one injector per server process
        engine._bench_watching = True
        watch_requests(engine, Path(os.environ["BENCH_INJECT_DIR"]))
    update = pn.state.session_args.get("update", [b"periodic"])[0].decode()
    live = LiveView(engine)
    pn.state.add_periodic_callback(live.refresh, period=1000)
    if update == "push":
        doc = pn.state.curdoc
        # The engine changes in its own thread: hand the refresh to the session's event loop.
        watcher = engine.param.watch(lambda _: doc.add_next_tick_callback(live.refresh), "version")
        pn.state.on_session_destroyed(lambda _: engine.param.unwatch(watcher))
    live.layout().servable(title="safecity · live bench")


# --------------------------------------------------------------------------- client side

class Session(threading.Thread):
    """One Bokeh client session: records when each marker's text first reaches its document."""

    def __init__(self, url: str, update: str):
        super().__init__(daemon=True)
        self.url, self.update = url, update
        self.seen: dict[int, float] = {}
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.session = None

    def run(self) -> None:
        from bokeh.client import pull_session

        import panel  # noqa: F401  (registers Panel's Bokeh models, which the document is made of)

        try:
            self.session = pull_session(url=self.url, arguments={"update": self.update})
            # markers already on the page when the session opened are not timed
            known = {int(m) for model in self.session.document.models
                     for m in MARKER.findall(str(getattr(model, "text", "")))}
            self.session.document.on_change(lambda event: self._changed(event, known))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            return
        finally:
            self.ready.set()
        self.session._connection.loop_until_closed()  # ClientSession's own is private in Bokeh 3

    def _changed(self, event, known: set[int]) -> None:
        now = time.time()
        new = getattr(event, "new", None)
        if not isinstance(new, str) or "BENCHMARK-" not in new:
            return
        for m in MARKER.findall(new):
            n = int(m)
            if n not in known and n not in self.seen:
                self.seen[n] = now

    def close(self) -> None:
        if self.session is not None:
            loop = self.session._connection.io_loop
            loop.add_callback(self.session.close)
        self.join(10)


def make_city(out: Path) -> None:
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", str(out),
                    "--days", "3", "--no-clips"], check=True, capture_output=True)


def start_server(data_dir: Path, inject_dir: Path, state_dir: Path, speed: float):
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import free_port, wait_http

    port = free_port()
    env = {**os.environ, "SAFECITY_DATA_DIR": str(data_dir), "SAFECITY_STATE_DIR": str(state_dir),
           "SAFECITY_REPLAY_SPEED": str(speed), "BENCH_INJECT_DIR": str(inject_dir),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", __file__, "--port", str(port),
         "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}",
         # closed sessions (and their callbacks) go at once, so one phase does not load the next
         "--check-unused-sessions", "500", "--unused-session-lifetime", "500"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/dashboard"
    wait_http(url, proc)
    return proc, url


def measure(url: str, server_pid: int, inject_dir: Path, update: str, sessions: int,
            events: int, first: int, rng, timeout_s: float = 15.0) -> dict:
    """Open ``sessions`` sessions, inject ``events`` markers numbered from ``first``, gather latencies."""
    import numpy as np
    import psutil

    clients = [Session(url, update) for _ in range(sessions)]
    for c in clients:
        c.start()
    for c in clients:
        c.ready.wait(120)
        if c.error is not None or not c.ready.is_set():
            raise RuntimeError(f"session to {url} did not open: {c.error}")
    time.sleep(3)  # let the sessions settle (first periodic callbacks, initial patches)

    server, me = psutil.Process(server_pid), psutil.Process()
    s0, m0, t0 = server.cpu_times(), me.cpu_times(), time.monotonic()
    entered, fused = {}, {}
    numbers = list(range(first, first + events))
    for n in numbers:
        # a random phase against the sessions' 1 s callbacks, so the samples cover it evenly
        time.sleep(rng.uniform(1.2, 2.2))
        tmp = inject_dir / f"{n}.tmp-req"
        tmp.write_text("")
        tmp.rename(inject_dir / f"{n}.req")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for n in numbers:
            log = inject_dir / f"{n}.json"
            if n not in entered and log.exists():
                rec = json.loads(log.read_text())
                entered[n], fused[n] = rec["entered"], rec["fused"]
        if len(entered) == events and all(len(c.seen.keys() & set(numbers)) == events
                                          for c in clients):
            break
        time.sleep(0.05)
    s1, m1, wall = server.cpu_times(), me.cpu_times(), time.monotonic() - t0
    for c in clients:
        c.close()
    time.sleep(2)  # the server discards the closed sessions

    lat = [c.seen[n] - entered[n] for c in clients for n in numbers if n in c.seen and n in entered]
    samples, missed = len(lat), sessions * events - len(lat)
    lat = np.array(lat) if lat else np.array([np.nan])
    engine_s = np.array([fused[n] - entered[n] for n in entered]) if entered else np.array([np.nan])
    return {"update": update, "sessions": sessions, "events": events, "samples": samples,
            "missed": missed, "median_s": float(np.median(lat)),
            "p95_s": float(np.percentile(lat, 95)), "max_s": float(np.max(lat)),
            "engine_median_s": float(np.median(engine_s)),
            "server_cpu_pct": 100 * (s1.user + s1.system - s0.user - s0.system) / wall,
            "server_cpu_s_per_event": (s1.user + s1.system - s0.user - s0.system) / events,
            "client_cpu_pct": 100 * (m1.user + m1.system - m0.user - m0.system) / wall,
            "wall_s": wall, "load_1min": os.getloadavg()[0]}


# --------------------------------------------------------------------------- --startup

#: JS: every element matching a selector, in the document and every shadow root.
_DEEP = ("const deepAll = (sel) => { const out = []; const walk = r => {"
         " r.querySelectorAll('*').forEach(e => { if (e.matches(sel)) out.push(e);"
         " if (e.shadowRoot) walk(e.shadowRoot); }); }; walk(document); return out; };"
         " const under = (e, f) => { const stack = [e]; while (stack.length) { const n = stack.pop();"
         " if (f(n)) return true; if (n.shadowRoot) stack.push(n.shadowRoot);"
         " stack.push(...n.children); } return false; };")
#: The live console is shown: the queue holds text and the live map has drawn its canvas.
CONSOLE_READY = (
    f"([queue, map]) => {{ {_DEEP}"
    " const text = e => under(e, n => n.nodeType === 1 && n.children.length === 0"
    "   && n.textContent.trim().length > 0) || (e.shadowRoot || e).textContent.trim().length > 0;"
    " const drawn = e => under(e, n => n.tagName === 'CANVAS' && n.width > 100 && n.height > 100);"
    " return deepAll(queue).some(text) && deepAll(map).some(drawn); }")
#: The city maps show a heatmap: a Bokeh plot whose datashader image has data, painted.
MAPS_READY = (
    "() => { if (!window.Bokeh || !Bokeh.index || !Bokeh.index.all_views) return false;"
    " return [...Bokeh.index.all_views()].some(v => v.model && Array.isArray(v.model.renderers)"
    "  && v.model.renderers.some(r => r.glyph && String(r.glyph.type).startsWith('Image')"
    "     && r.data_source && (r.data_source.data.image || []).length > 0)"
    "  && v.has_finished() && v.canvas_view && v.canvas_view.bbox.width > 100"
    "  && v.canvas_view.bbox.height > 100); }")


def simulate_demo_city(out: Path) -> None:
    """The demo city as ``bash dev.sh demo`` writes it (``safecity simulate --out``: 7 days, clips)."""
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", str(out)],
                   check=True, capture_output=True)


def busy_loops(n: int) -> list[subprocess.Popen]:
    """``n`` processes spinning a core each: a loaded machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            for _ in range(n)]


def serve_cold(data_dir: Path, state_dir: Path, warmup: bool, port: int):
    """A new ``safecity serve dashboards/operations.py``: (process, start time, lines, ready event).

    A thread reads the server's output, keeping each line with its arrival time.
    """
    env = {**os.environ, "SAFECITY_STATE_DIR": str(state_dir), "PYTHONPATH": str(ROOT),
           "SAFECITY_WARMUP": "1" if warmup else "0"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "safecity.cli", "serve", str(ROOT / "dashboards" / "operations.py"),
         "--data-dir", str(data_dir), "--port", str(port),
         "--allow-websocket-origin", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines: list[tuple[float, str]] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip()))
            if READY_LINE in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    return proc, started, lines, ready


def startup_run(browser, data_dir: Path, work: Path, warmup: bool, timeout_s: float = 600) -> dict:
    """One cold start: ready line, console shown, City maps' first heatmap (seconds)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import free_port, stop

    load = os.getloadavg()[0]
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    proc, started, lines, ready = serve_cold(data_dir, state, warmup, port)
    row = {"warmup": warmup, "load_1min_before": load}
    try:
        if not ready.wait(timeout_s):
            raise RuntimeError("no ready line:\n" + "\n".join(t for _, t in lines[-30:]))
        ready_at = next(t for t, line in lines if READY_LINE in line)
        row["ready_s"] = ready_at - started
        done = [line for _, line in lines if "warm-up done in" in line]
        row["warmup_s"] = float(re.search(r"done in ([\d.]+) s", done[0]).group(1)) if done else None
        context = browser.new_context(viewport={"width": 1920, "height": 1080})  # an empty cache
        page = context.new_page()
        page.set_default_timeout(timeout_s * 1000)
        t0 = time.monotonic()
        page.goto(f"http://127.0.0.1:{port}/operations", timeout=timeout_s * 1000)
        page.wait_for_function(CONSOLE_READY, arg=[CONSOLE_QUEUE, CONSOLE_MAP], polling=100,
                               timeout=timeout_s * 1000)
        row["console_s"] = time.monotonic() - t0
        tab = page.get_by_text(MAPS_TAB, exact=True).first
        tab.wait_for()
        t0 = time.monotonic()
        tab.click()
        page.wait_for_function(MAPS_READY, polling=100, timeout=timeout_s * 1000)
        row["maps_s"] = time.monotonic() - t0
        row["load_1min_after"] = os.getloadavg()[0]
        context.close()
    finally:
        stop(proc)
    return row


def startup(args, work: Path) -> None:
    """``--startup``: cold starts with and without the warm-up, quiet (and loaded with --load)."""
    import numpy as np
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import CHROMIUM, CHROMIUM_ARGS

    data_dir = args.data_dir or work / "city"
    if args.data_dir is None:
        print(f"simulating the demo city in {data_dir} (safecity simulate, as dev.sh demo) ...",
              flush=True)
        simulate_demo_city(data_dir)
    phases = [("no added load", 0)] + ([(f"loaded (+{args.load} busy loops)", args.load)] if args.load else [])
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for machine, n_busy in phases:
                busy = busy_loops(n_busy)
                try:
                    for rep in range(args.repeat):
                        for warmup in (True, False):
                            row = {"machine": machine, "busy_loops": n_busy, "run": rep,
                                   **startup_run(browser, data_dir, work, warmup)}
                            rows.append(row)
                            print(json.dumps(row), flush=True)
                finally:
                    for b in busy:
                        b.kill()
                        b.wait()
        finally:
            browser.close()

    summary = []
    for machine, _ in phases:
        for warmup in (True, False):
            runs = [r for r in rows if r["machine"] == machine and r["warmup"] == warmup]
            med = {k: float(np.median([r[k] for r in runs])) for k in ("ready_s", "console_s", "maps_s")}
            summary.append({"machine": machine, "warmup": warmup, "runs": len(runs), **med,
                            "load_1min_before": [round(r["load_1min_before"], 2) for r in runs]})
    print(f"\ncold start of safecity serve dashboards/operations.py on {data_dir}, "
          f"{os.cpu_count()} cores; medians of {args.repeat} runs")
    print("| machine | warm-up | process -> ready line | navigation -> console shown "
          "| City maps click -> first heatmap | 1-min load before each run |")
    print("|---|---|---|---|---|---|")
    for r in summary:
        print(f"| {r['machine']} | {'on' if r['warmup'] else 'off (SAFECITY_WARMUP=0)'} "
              f"| {r['ready_s']:.1f} s | {r['console_s']:.1f} s | {r['maps_s']:.1f} s "
              f"| {', '.join(f'{x:.1f}' for x in r['load_1min_before'])} |")
    print(json.dumps({"bench": "dashboard-startup", "cores": os.cpu_count(), "data_dir": str(data_dir),
                      "repeat": args.repeat, "summary": summary, "runs": rows}))


def main(argv=None) -> None:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--events", type=int, default=20, help="markers injected per phase")
    ap.add_argument("--modes", default="periodic,push",
                    help="comma-separated: periodic (every second), push (also on engine change, "
                         "as operations.py)")
    ap.add_argument("--speed", type=float, default=60.0, help="replay speed, simulated s per s")
    ap.add_argument("--data-dir", type=Path, help="a city from 'safecity simulate' (default: a new 3-day one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--startup", action="store_true",
                    help="measure cold starts (ready line, console, City maps) with and without "
                         "the warm-up instead (default city: the demo's, simulated)")
    ap.add_argument("--repeat", type=int, default=3, help="--startup: runs of each")
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="--startup: also measure with N busy-loop processes running")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="safecity-bench-dashboard-"))
    if args.startup:
        startup(args, work)
        return
    data_dir = args.data_dir or work / "city"
    if args.data_dir is None:
        print(f"simulating a 3-day city in {data_dir} ...", flush=True)
        make_city(data_dir)
    inject_dir = work / "inject"
    inject_dir.mkdir()
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import stop

    proc, url = start_server(data_dir, inject_dir, work / "state", args.speed)
    rng = np.random.default_rng(args.seed)
    rows, first = [], 0
    try:
        for update in args.modes.split(","):
            for n in ([1, args.sessions] if args.sessions != 1 else [1]):
                print(f"{update}, {n} session(s) ...", flush=True)
                rows.append(measure(url, proc.pid, inject_dir, update, n, args.events, first, rng))
                first += args.events
    finally:
        stop(proc)
    if any(r["missed"] for r in rows):
        print("server log (markers missed):\n" + proc.stdout.read()[-3000:])

    print(f"\nevent entering the engine -> its text on each session; speed {args.speed:g}, "
          f"{os.cpu_count()} cores")
    print("| update | sessions | samples | missed | median | p95 | max | engine (fuse) median "
          "| server CPU | server CPU per event | client CPU | machine load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['update']} | {r['sessions']} | {r['samples']} | {r['missed']} "
              f"| {r['median_s']:.3f} s | {r['p95_s']:.3f} s | {r['max_s']:.3f} s "
              f"| {r['engine_median_s'] * 1000:.0f} ms | {r['server_cpu_pct']:.0f} % "
              f"| {r['server_cpu_s_per_event']:.2f} s "
              f"| {r['client_cpu_pct']:.0f} % | {r['load_1min']:.1f} |")
    print(json.dumps({"bench": "dashboard", "speed": args.speed, "cores": os.cpu_count(),
                      "rows": rows}))


if __name__ == "__main__":
    main()
elif __name__.startswith("bokeh_app"):
    # Bokeh empties a served script's globals once the session is built, and the
    # injector thread outlives it: run the app from a regular, cached import.
    import importlib.util

    _bench = sys.modules.get("safecity_bench_dashboard")
    if _bench is None:
        _spec = importlib.util.spec_from_file_location("safecity_bench_dashboard", __file__)
        _bench = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_bench)
    _bench.serve_app()
