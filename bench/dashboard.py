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
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="safecity-bench-dashboard-"))
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
