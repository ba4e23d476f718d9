"""Benchmark of the live ingest path: how many rows a live server takes, and how fast they show.

Phases, in one run, on one simulated city (``safecity simulate``, 1 day):

* **in-process baselines** (no HTTP, this process): ``Inbox.add`` of parsed batches
  (the durable write alone), ``LiveEngine.ingest`` (parse, inbox, incremental fusion)
  and ``ReplayEngine.inject`` (the demo's path: the same plus turning a frame into rows);
* **A, throughput**: a real ``safecity serve dashboards/operations.py --live`` (its own
  process; its CPU is read with psutil on its pid), ``--clients`` threads posting
  batches of ``--batch`` gunshot events back to back for ``--duration`` seconds, then
  the same with AVL points (units registered first with their kind). Figures:
  accepted rows/s, POST->202 latency p50/p95/max, the server's CPU in % of one core;
* **B, event-to-screen**: ``--sessions`` Bokeh client sessions on the operations page
  while background events are posted at ``--rate`` events/s; markers are police-log
  entries whose text ``BENCHMARK-<n>`` shows in the incident queue's summary. Latency
  = the marker's POST sent (client clock) -> its text in each session's document.
  The same is measured on the demo's replay server (``ReplayEngine``, speed 60, no
  background load beyond its own replay), with markers posted to the same API.

Events are gunshot-like: shots at random places over the city's extent (2-98 % of its
road nodes), 70 % heard by 3 nearby detectors (they fuse into one incident), stamped
with the wall clock. Posting runs in this process (threads, keep-alive connections),
the server in another: on a 2-core machine the load generator takes most of the other core.
Sessions are Bokeh ``ClientSession`` threads (as in ``bench/dashboard.py``), not browsers.

    .venv/bin/python bench/ingest.py [--quick] [--clients 4] [--batch 100] [--duration 20] \
        [--rate 2000] [--sessions 20] [--markers 20]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]


# --------------------------------------------------------------------------- load

class Shots:
    """Gunshot-like events over the city's extent; most shots heard by several detectors."""

    def __init__(self, lon, lat, seed: int = 0, heard: int = 3, clustered: float = 0.7,
                 grid: int = 20, prefix: str = "bench"):
        self.rng = np.random.default_rng(seed)
        self.lo = np.array([np.quantile(lon, 0.02), np.quantile(lat, 0.02)])
        self.hi = np.array([np.quantile(lon, 0.98), np.quantile(lat, 0.98)])
        self.heard, self.clustered, self.grid, self.prefix = heard, clustered, grid, prefix
        self.shots = 0
        self._lock = threading.Lock()

    def batch(self, size: int, now: pd.Timestamp | None = None) -> list[dict]:
        """``size`` events stamped within the second before ``now`` (default: the wall clock)."""
        now = pd.Timestamp.now(tz="UTC") if now is None else now
        rows: list[dict] = []
        with self._lock:
            while len(rows) < size:
                lon, lat = self.rng.uniform(self.lo, self.hi)
                cx, cy = ((np.array([lon, lat]) - self.lo) / (self.hi - self.lo) * self.grid).astype(int)
                ts = now - pd.Timedelta(seconds=float(self.rng.uniform(0, 1)))
                for s in range(self.heard if self.rng.random() < self.clustered else 1):
                    rows.append({
                        "event_id": f"{self.prefix}-{self.shots}-{s}", "kind": "gunshot",
                        "ts": (ts + pd.Timedelta(milliseconds=40 * s)).isoformat(),
                        "sensor_id": f"ac-{cx + s % 2}-{cy + s // 2}", "source": "acoustic",
                        "lon": float(lon + self.rng.normal(0, 3e-4)),
                        "lat": float(lat + self.rng.normal(0, 3e-4)),
                        "score": round(float(self.rng.uniform(0.6, 1.0)), 3)})
                self.shots += 1
        return rows[:size]


class Avl:
    """AVL reports of ``units`` vehicles driving around; each report newer than the last."""

    def __init__(self, lon, lat, units: int = 200, seed: int = 1):
        self.rng = np.random.default_rng(seed)
        self.ids = [f"bench-unit-{i:03d}" for i in range(units)]
        self.pos = np.column_stack([self.rng.uniform(np.quantile(lon, 0.1), np.quantile(lon, 0.9), units),
                                    self.rng.uniform(np.quantile(lat, 0.1), np.quantile(lat, 0.9), units)])
        self.i = 0
        self._lock = threading.Lock()

    def register(self) -> list[dict]:
        now = pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=10)
        kinds = ("police", "ambulance", "fire")
        return [{"unit_id": u, "ts": now.isoformat(), "lon": float(x), "lat": float(y),
                 "kind": kinds[i % 3], "status": "available"}
                for i, (u, (x, y)) in enumerate(zip(self.ids, self.pos))]

    def batch(self, size: int) -> list[dict]:
        rows = []
        with self._lock:
            now = pd.Timestamp.now(tz="UTC")
            for k in range(size):
                u = self.i % len(self.ids)
                self.pos[u] += self.rng.normal(0, 1e-4, 2)
                # a microsecond apart: every (unit, ts) is a new report
                ts = now + pd.Timedelta(microseconds=k)
                rows.append({"unit_id": self.ids[u], "ts": ts.isoformat(),
                             "lon": float(self.pos[u, 0]), "lat": float(self.pos[u, 1])})
                self.i += 1
        return rows


# --------------------------------------------------------------------------- server

@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    tokens: dict[str, str]
    log: Path

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.url.split("//")[1].split(":")
        return host, int(port)


def start_server(city: Path, work: Path, live: bool, speed: float = 60.0) -> Server:
    """``safecity serve --live`` (or the demo's replay with the ingest API) on a free port."""
    from conftest import free_port

    from safecity.ingest.tokens import create_token

    work.mkdir(parents=True, exist_ok=True)
    tokens_file = work / "tokens.json"
    tokens = {name: create_token(tokens_file, name, tables, rate=1e7) for name, tables in
              (("acoustic", "events"), ("avl", "units"), ("police", "police-log"))}
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if live:
        cmd = [sys.executable, "-m", "safecity.cli", "serve", str(ROOT / "dashboards" / "operations.py"),
               "--live", "--ingest-tokens", str(tokens_file), "--state-dir", str(work / "state"),
               "--data-dir", str(city), "--port", str(port),
               "--allow-websocket-origin", f"127.0.0.1:{port}"]
    else:  # the demo: ReplayEngine, plus the API so markers arrive the way the live ones do
        env.pop("SAFECITY_LIVE", None)
        env.update(SAFECITY_INGEST_TOKENS=str(tokens_file), SAFECITY_DATA_DIR=str(city),
                   SAFECITY_STATE_DIR=str(work / "state"), SAFECITY_REPLAY_SPEED=str(speed))
        cmd = [sys.executable, "-m", "panel", "serve", str(ROOT / "dashboards" / "operations.py"),
               "--address", "127.0.0.1", "--port", str(port), "--plugins", "safecity.app.api",
               "--allow-websocket-origin", f"127.0.0.1:{port}"]
        # closed sessions (and their callbacks) go at once, so one phase does not load the next
        cmd += ["--check-unused-sessions", "500", "--unused-session-lifetime", "500"]
    log = work / "server.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    server = Server(proc, f"http://127.0.0.1:{port}", tokens, log)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if request(server, "GET", "/api/v1/health")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    stop_server(server)
    raise RuntimeError("the server did not answer /api/v1/health in 240 s")


def stop_server(server: Server) -> None:
    from conftest import stop

    stop(server.proc)


def request(server: Server, method: str, path: str, body=None, token: str | None = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, dict]:
    own = conn is None
    conn = conn or http.client.HTTPConnection(*server.host_port, timeout=300)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {server.tokens[token]}"
    try:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        if own:
            conn.close()


# --------------------------------------------------------------------------- posting

@dataclass
class Posted:
    """What posting threads saw: per-POST latency and answers."""

    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    duplicates: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    first_error: str = ""
    behind_s: float = 0.0  # paced load: how late the last batch left against its schedule
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, answer, seconds: float) -> None:
        with self.lock:
            if status == 202:
                self.latencies.append(seconds)
                self.accepted += answer["accepted"]
                self.duplicates += answer["duplicates"]
            else:
                self.errors[status] = self.errors.get(status, 0) + 1
                self.first_error = self.first_error or f"{status} {answer}"


def post_load(server: Server, table: str, token: str, make_batch, clients: int, batch: int,
              duration_s: float, rate: float | None = None, stop: threading.Event | None = None
              ) -> tuple[Posted, float]:
    """``clients`` threads posting batches for ``duration_s`` (back to back, or ``rate`` rows/s).

    Returns what was posted and the wall time the posting took (until the last answer).
    """
    posted, stop = Posted(), stop or threading.Event()
    t0 = time.monotonic()
    end = t0 + duration_s

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(*server.host_port, timeout=300)
        interval = clients * batch / rate if rate else 0.0
        due = t0 + k * interval / clients
        while not stop.is_set() and time.monotonic() < end:
            if rate:
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                    if time.monotonic() >= end:
                        break
                posted.behind_s = max(0.0, time.monotonic() - due)
                due += interval
            rows = make_batch(batch)
            sent = time.monotonic()
            try:
                status, answer = request(server, "POST", f"/api/v1/{table}", rows, token, conn)
            except (OSError, http.client.HTTPException) as exc:
                posted.record(-1, repr(exc), 0.0)
                conn.close()
                conn = http.client.HTTPConnection(*server.host_port, timeout=300)
                continue
            posted.record(status, answer, time.monotonic() - sent)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return posted, time.monotonic() - t0


def cpu_of(pid: int):
    import psutil

    p = psutil.Process(pid)
    procs = [p, *p.children(recursive=True)]
    return sum(q.cpu_times().user + q.cpu_times().system for q in procs)


def throughput_row(name: str, posted: Posted, wall: float, cpu_s: float | None,
                   where: str = "") -> dict:
    lat = np.array(posted.latencies) if posted.latencies else np.array([np.nan])
    return {"phase": name, "rows_per_s": posted.accepted / wall, "accepted": posted.accepted,
            "duplicates": posted.duplicates, "errors": dict(posted.errors),
            "posts": len(posted.latencies), "p50_s": float(np.median(lat)),
            "p95_s": float(np.percentile(lat, 95)), "max_s": float(np.max(lat)),
            "server_cpu_pct": None if cpu_s is None else 100 * cpu_s / wall,
            # what one core would take if it were ours alone: the machine is shared
            "rows_per_cpu_s": None if not cpu_s else posted.accepted / cpu_s,
            "wall_s": wall, "where": where, "load_1min": os.getloadavg()[0]}


def phase_a(server: Server, city, args) -> list[dict]:
    import psutil

    rows = []
    shots = Shots(city.nodes["lon"], city.nodes["lat"], seed=args.seed, prefix="thr")
    c0 = cpu_of(server.proc.pid)
    cores = set()
    sampler_stop = threading.Event()

    def sample() -> None:  # which cores the server ran on
        p = psutil.Process(server.proc.pid)
        while not sampler_stop.wait(0.5):
            cores.add(p.cpu_num())

    threading.Thread(target=sample, daemon=True).start()
    posted, wall = post_load(server, "events", "acoustic", shots.batch, args.clients, args.batch,
                             args.duration)
    rows.append(throughput_row("A: events over HTTP", posted, wall, cpu_of(server.proc.pid) - c0))
    if posted.first_error:
        print("  first error:", posted.first_error[:300])

    avl = Avl(city.nodes["lon"], city.nodes["lat"])
    status, answer = request(server, "POST", "/api/v1/units", avl.register(), "avl")
    if status != 202:
        raise RuntimeError(f"registering units failed: {status} {answer}")
    c0 = cpu_of(server.proc.pid)
    posted, wall = post_load(server, "units", "avl", avl.batch, args.clients, args.batch,
                             args.duration)
    rows.append(throughput_row("A: AVL points over HTTP", posted, wall,
                               cpu_of(server.proc.pid) - c0))
    if posted.first_error:
        print("  first error:", posted.first_error[:300])
    sampler_stop.set()
    for r in rows:
        r["where"] = f"server pid {server.proc.pid}, ran on core(s) {sorted(cores)}"
    return rows


# --------------------------------------------------------------------------- in process

def in_process(city_dir: Path, work: Path, args) -> list[dict]:
    """The same batches without HTTP: the inbox alone, the live engine, the replay's inject."""
    from safecity.app.engine import LiveEngine, ReplayEngine
    from safecity.data.citydir import read_city
    from safecity.data.inbox import Inbox
    from safecity.ingest.rows import parse_rows

    city = read_city(city_dir)
    out = []
    duration = args.duration / 2

    def timed(name: str, step, rows_per_step: int) -> None:
        lat, t0 = [], time.monotonic()
        c0 = time.process_time()
        while time.monotonic() - t0 < duration:
            s = time.monotonic()
            step()
            lat.append(time.monotonic() - s)
        wall = time.monotonic() - t0
        p = Posted(latencies=lat, accepted=rows_per_step * len(lat))
        out.append(throughput_row(name, p, wall, time.process_time() - c0, where="this process"))

    shots = Shots(city.nodes["lon"], city.nodes["lat"], seed=args.seed + 1, prefix="inbox")
    inbox = Inbox(work / "inbox-only" / "inbox.sqlite")
    pool = [parse_rows("events", shots.batch(args.batch)) for _ in range(200)]
    it = iter(range(10**9))
    timed("inbox: Inbox.add (parsed batch)", lambda: inbox.add(
        "events", pool[next(it) % len(pool)].assign(
            event_id=lambda d: d["event_id"] + f"-{next(it)}"), "acoustic"), args.batch)
    inbox.close()

    shots = Shots(city.nodes["lon"], city.nodes["lat"], seed=args.seed + 2, prefix="eng")
    engine = LiveEngine(city, work / "engine-only")
    timed("engine: LiveEngine.ingest (parse+inbox+fusion)",
          lambda: engine.ingest("events", shots.batch(args.batch), "acoustic"), args.batch)
    engine.close()

    replay = ReplayEngine(city, work / "replay-only", speed=0.0)
    shots = Shots(city.nodes["lon"], city.nodes["lat"], seed=args.seed + 3, prefix="rep")

    def inject() -> None:
        df = pd.DataFrame(shots.batch(args.batch, now=pd.Timestamp(replay.now, tz="UTC")))
        replay.inject(df.assign(ts=pd.to_datetime(df["ts"], utc=True), details=None))

    timed("replay: ReplayEngine.inject", inject, args.batch)
    replay.close()
    return out


# --------------------------------------------------------------------------- event to screen

def marker_rows(n: int, lo: np.ndarray, hi: np.ndarray, ts: pd.Timestamp) -> list[dict]:
    """A police-log entry 3 km north of the city, 1 km from the other markers: never fused."""
    return [{"entry_id": f"bench-marker-{n}", "ts": ts.isoformat(), "text": f"BENCHMARK-{n}",
             "lon": float(lo[0] + 0.013 * (n % 15)), "lat": float(hi[1] + 0.027 + 0.009 * (n // 15))}]


def event_to_screen(server: Server, city, args, rate: float, first: int, label: str,
                    replay: bool = False) -> dict:
    """Markers posted while ``rate`` events/s are posted; POST sent -> text in each session."""
    from conftest import wait_http
    from dashboard import Session

    shots = Shots(city.nodes["lon"], city.nodes["lat"], seed=args.seed + first, prefix=f"bg{first}")
    url = server.url + "/operations"
    t_warm = time.monotonic()
    wait_http(url, server.proc, timeout=300)  # the first page builds what every session shares
    warm_s = time.monotonic() - t_warm
    clients = [Session(url, "push") for _ in range(args.sessions)]
    t_open = time.monotonic()
    for c in clients:
        c.start()
    for c in clients:
        c.ready.wait(300)
        if c.error is not None or not c.ready.is_set():
            raise RuntimeError(f"session to {url} did not open: {c.error}")
    opened_s = time.monotonic() - t_open
    time.sleep(3)  # the sessions' first callbacks

    stop = threading.Event()
    background: dict = {}
    c0, t0 = cpu_of(server.proc.pid), time.monotonic()
    if rate:
        def load() -> None:
            background["posted"], background["wall"] = post_load(
                server, "events", "acoustic", shots.batch, args.clients, args.batch,
                duration_s=1e9, rate=rate, stop=stop)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(2)  # the load is running before the first marker
    rng = np.random.default_rng(args.seed + first)
    sent, acked, numbers = {}, {}, list(range(first, first + args.markers))
    conn = http.client.HTTPConnection(*server.host_port, timeout=300)
    for n in numbers:
        time.sleep(rng.uniform(1.2, 2.2))  # a random phase against the sessions' 1 s callbacks
        ts = pd.Timestamp.now(tz="UTC")
        if replay:  # the replay's clock: its newest event (the demo city is dated in the past)
            lag = request(server, "GET", "/api/v1/health")[1]["lag_s"].get("events", 0.0)
            ts -= pd.Timedelta(seconds=lag)
        rows = marker_rows(n, shots.lo, shots.hi, ts)
        sent[n] = time.time()
        status, answer = request(server, "POST", "/api/v1/police-log", rows, "police", conn)
        if status == 202:
            acked[n] = time.time() - sent[n]
        else:
            print(f"  marker {n}: {status} {answer}")
    conn.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            set(numbers) <= c.seen.keys() for c in clients):
        time.sleep(0.05)
    stop.set()
    wall = time.monotonic() - t0
    cpu_s = cpu_of(server.proc.pid) - c0
    if rate:
        loader.join(300)
    for c in clients:
        c.close()
    time.sleep(2)

    lat = [c.seen[n] - sent[n] for c in clients for n in numbers if n in c.seen]
    missed = len(clients) * len(numbers) - len(lat)
    arr = np.array(lat) if lat else np.array([np.nan])
    ack = np.array(list(acked.values())) if acked else np.array([np.nan])
    bg = background.get("posted")
    return {"phase": label, "sessions": args.sessions, "markers": len(numbers),
            "samples": len(lat), "missed": missed, "sessions_open_s": opened_s,
            "first_page_s": warm_s,
            "p50_s": float(np.median(arr)), "p95_s": float(np.percentile(arr, 95)),
            "max_s": float(np.max(arr)), "marker_ack_p50_s": float(np.median(ack)),
            "marker_ack_p95_s": float(np.percentile(ack, 95)),
            "background_target": rate,
            "background_rows_per_s": (bg.accepted / background["wall"]) if bg else 0.0,
            "background_p95_s": float(np.percentile(bg.latencies, 95)) if bg and bg.latencies else None,
            "background_behind_s": bg.behind_s if bg else 0.0,
            "server_cpu_pct": 100 * cpu_s / wall, "wall_s": wall, "load_1min": os.getloadavg()[0]}


# --------------------------------------------------------------------------- main

def fmt(x, unit="s") -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{x * 1000:.0f} ms" if unit == "s" and x < 1 else f"{x:.2f} {unit}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=4, help="posting threads")
    ap.add_argument("--batch", type=int, default=100, help="rows per POST")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of each throughput phase")
    ap.add_argument("--rate", type=float, default=2000.0,
                    help="background events/s while the markers are timed (phase B)")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--markers", type=int, default=20, help="markers per event-to-screen phase")
    ap.add_argument("--data-dir", type=Path, help="a city from 'safecity simulate' (default: a new 1-day one)")
    ap.add_argument("--skip", default="", help="comma-separated phases to skip: inproc,a,b,replay")
    ap.add_argument("--quick", action="store_true",
                    help="a short run: 4 s phases, 5 sessions, 4 markers")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.sessions, args.markers = min(args.duration, 4.0), min(args.sessions, 5), \
            min(args.markers, 4)
    skip = set(filter(None, args.skip.split(",")))

    from live_server import make_city

    from safecity.data.citydir import read_city

    # Bokeh's client handles each message one level deeper in the stack (its
    # ``_next``/``_handle_messages`` recurse until the session closes): a session
    # receiving a patch every second hits Python's default limit within minutes.
    sys.setrecursionlimit(100_000)
    threading.stack_size(256 * 1024 * 1024)
    work = Path(tempfile.mkdtemp(prefix="safecity-bench-ingest-"))
    city_dir = args.data_dir or work / "city"
    if args.data_dir is None:
        print(f"simulating a 1-day city in {city_dir} ...", flush=True)
        make_city(city_dir)
    city = read_city(city_dir, store=False)
    throughput, screen = [], []

    failed = []

    def attempt(label: str, run) -> None:
        """One phase; a failure is reported and the others still run."""
        try:
            run()
        except Exception as exc:  # noqa: BLE001 (the table says which phase failed)
            failed.append(f"{label}: {exc}"[:500])
            print(f"  {label} FAILED: {exc}"[:2000], flush=True)

    def served(name: str, live: bool, measure) -> None:
        server = start_server(city_dir, work / name, live=live)
        try:
            measure(server)
        finally:
            stop_server(server)

    if "inproc" not in skip:
        print("in-process baselines ...", flush=True)
        attempt("in-process", lambda: throughput.extend(in_process(city_dir, work / "inproc", args)))
    if "a" not in skip:
        print("phase A: throughput over HTTP ...", flush=True)
        attempt("phase A", lambda: served("live-a", True,
                                          lambda s: throughput.extend(phase_a(s, city, args))))
    if "b" not in skip:
        for rate in (0.0, args.rate):
            print(f"phase B: event-to-screen, {args.sessions} sessions, background {rate:g} events/s ...",
                  flush=True)
            attempt(f"phase B {rate:g}/s", lambda rate=rate: served(
                f"live-b{rate:g}", True, lambda s: screen.append(event_to_screen(
                    s, city, args, rate, first=1000 * (1 + len(screen)),
                    label=f"live, {rate:g} events/s"))))
    if "replay" not in skip:
        print(f"baseline: event-to-screen on the demo's replay, {args.sessions} sessions ...", flush=True)
        attempt("replay", lambda: served("replay-b", False, lambda s: screen.append(event_to_screen(
            s, city, args, 0.0, first=1000 * (1 + len(screen)), label="replay (demo, speed 60)",
            replay=True))))

    print(f"\ningest throughput: batches of {args.batch}, {args.clients} posting threads, "
          f"{args.duration:g} s phases; {os.cpu_count()} cores (shared)")
    print("| path | rows/s | rows per CPU-second | accepted | errors | per call p50 | p95 | max "
          "| CPU (% of one core) | where |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in throughput:
        print(f"| {r['phase']} | {r['rows_per_s']:.0f} | {r['rows_per_cpu_s'] or 0:.0f} "
              f"| {r['accepted']} | {r['errors'] or '-'} "
              f"| {fmt(r['p50_s'])} | {fmt(r['p95_s'])} | {fmt(r['max_s'])} "
              f"| {r['server_cpu_pct']:.0f} % | {r['where']} |")
    if screen:
        print(f"\nevent-to-screen: marker POST sent -> its text in each of {args.sessions} sessions")
        print("| server | background target | background accepted/s | samples | missed | p50 | p95 | max "
              "| marker POST->202 p50 / p95 | server CPU | load |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in screen:
            print(f"| {r['phase']} | {r['background_target']:g}/s | {r['background_rows_per_s']:.0f}/s "
                  f"| {r['samples']} | {r['missed']} | {fmt(r['p50_s'])} | {fmt(r['p95_s'])} "
                  f"| {fmt(r['max_s'])} | {fmt(r['marker_ack_p50_s'])} / {fmt(r['marker_ack_p95_s'])} "
                  f"| {r['server_cpu_pct']:.0f} % | {r['load_1min']:.1f} |")
    print(json.dumps({"bench": "ingest", "batch": args.batch, "clients": args.clients,
                      "duration_s": args.duration, "cores": os.cpu_count(),
                      "throughput": throughput, "event_to_screen": screen, "failed": failed}, default=str))


if __name__ == "__main__":
    main()
