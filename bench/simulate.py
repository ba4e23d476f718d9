"""Benchmark of the synthetic city: a week of one-minute counts for 2,000 sensors.

Prints, for each phase, the wall time and the peak resident memory of a fresh
process that runs only that phase (so one phase's memory does not hide
another's), the rows made, and the size on disk after writing through the
store. Two baselines run in the same session for comparison: plain numpy
random counts of the same number of rows through the same DataFrame and
validation steps (what realism costs), and a naive per-sensor pandas loop
(timed on a few sensors, scaled up linearly).

    .venv/bin/python bench/simulate.py [--sensors 2000] [--days 7] [--freq 1min]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

START = "2026-06-01"


def _world(n_sensors: int, days: int):
    from safecity.data import geo
    from safecity.sim import city as sim

    zones = geo.builtin_zones()
    nodes, edges = sim.road_network(zones)
    n_cameras = n_sensors // 10
    sensors = sim.place_sensors(nodes, edges, zones, n_cameras=n_cameras,
                                n_counters=n_sensors - n_cameras)
    calendar = sim.make_calendar(START, days, nodes, edges)
    anomalies = sim.make_anomalies(sensors, START, days)
    return sensors, calendar, anomalies


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def phase_demo(out: str) -> dict:
    """The default city as `safecity simulate` makes it, written, with its clips."""
    from safecity.data import citydir
    from safecity.sim import city as sim

    t0 = time.perf_counter()
    city = sim.simulate_city()
    t1 = time.perf_counter()
    citydir.write_city(city, out)
    t2 = time.perf_counter()
    sim.write_clips(Path(out) / "clips")
    t3 = time.perf_counter()
    return {"simulate_s": t1 - t0, "write_s": t2 - t1, "clips_s": t3 - t2,
            "observations": len(city.observations), "events": len(city.events),
            "unit_rows": len(city.units), "peak_mb": _peak_mb()}


def phase_generate(n_sensors: int, days: int, freq: str) -> dict:
    """All days generated and kept in memory, as simulate_city holds them."""
    import pandas as pd

    from safecity.sim import city as sim

    sensors, calendar, anomalies = _world(n_sensors, days)
    before = _rss_mb()
    t0 = time.perf_counter()
    frames = [sim.simulate_observations(sensors, calendar, anomalies,
                                        pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=d),
                                        seed=0, freq=freq) for d in range(days)]
    elapsed = time.perf_counter() - t0
    rows = sum(len(f) for f in frames)
    frame_mb = sum(f.memory_usage(deep=True).sum() for f in frames) / 2**20
    return {"seconds": elapsed, "rows": rows, "rss_before_mb": before, "peak_mb": _peak_mb(),
            "frames_mb": frame_mb}


def phase_store(n_sensors: int, days: int, freq: str, out: str) -> dict:
    """Each day generated (untimed) then appended through the store (timed)."""
    import pandas as pd

    from safecity.sim import city as sim
    from safecity.data.store import Store

    sensors, calendar, anomalies = _world(n_sensors, days)
    store = Store(out)
    store.append("sensors", sensors)
    append_s, rows = 0.0, 0
    for d in range(days):
        day = pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=d)
        obs = sim.simulate_observations(sensors, calendar, anomalies, day, seed=0, freq=freq)
        t0 = time.perf_counter()
        rows += store.append("observations", obs)
        append_s += time.perf_counter() - t0
        del obs
    t0 = time.perf_counter()
    again = store.append("observations", sim.simulate_observations(
        sensors, calendar, anomalies, START, seed=0, freq=freq))
    reappend_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    one_day = store.read("observations", start=START,
                         end=pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=1))
    read_s = time.perf_counter() - t0
    store.state.close()
    folder = Path(out) / "history" / "observations"
    size = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
    return {"append_s": append_s, "rows": rows, "bytes": size, "reappend_s": reappend_s,
            "reappended_rows": again, "read_day_s": read_s, "read_day_rows": len(one_day),
            "peak_mb": _peak_mb()}


def phase_numpy_baseline(n_sensors: int, days: int, freq: str, rows_per_day: list[int]) -> dict:
    """The same number of rows of plain Poisson noise, through the same frame and validation."""
    import numpy as np
    import pandas as pd

    from safecity.data.schema import validate

    ids = np.array([f"s-{i:04d}" for i in range(n_sensors)], dtype=object)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for d, n_rows in enumerate(rows_per_day):
        ts = pd.date_range(pd.Timestamp(START, tz="UTC") + pd.Timedelta(days=d), periods=n_rows // n_sensors + 1,
                           freq=freq)
        frame = pd.DataFrame({"ts": ts.repeat(n_sensors)[:n_rows], "sensor_id": np.tile(ids, len(ts))[:n_rows],
                              "metric": "people_count", "value": rng.poisson(20.0, n_rows).astype(float)})
        validate(frame, "observations")
    return {"seconds": time.perf_counter() - t0, "rows": sum(rows_per_day), "peak_mb": _peak_mb()}


def phase_naive_baseline(n_sample: int, freq: str) -> dict:
    """A first attempt: one sensor at a time, one row at a time (timed on a sample, one day)."""
    import numpy as np
    import pandas as pd

    from safecity.sim import city as sim

    sensors, _, _ = _world(n_sample, 1)
    counting = sensors[sensors["kind"].isin(sim.COUNT_KINDS)].head(n_sample)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    out = []
    for s in counting.itertuples():
        meta = json.loads(s.metadata)
        frame = pd.DataFrame({"ts": pd.date_range(START, periods=pd.Timedelta("1D") // pd.Timedelta(freq),
                                                  freq=freq, tz="UTC")})
        local = frame["ts"].dt.tz_convert(sim.CITY.tz)
        frame["hour"] = local.dt.hour + local.dt.minute / 60
        frame["mean"] = frame["hour"].apply(
            lambda h: meta["base"] * pd.Timedelta(freq) / pd.Timedelta("1h")
            * (0.04 + 0.85 * (0.9 * float(sim._bump(h, 8.3, 0.9)) + float(sim._bump(h, 17.8, 1.3)))))
        frame["value"] = frame["mean"].apply(lambda m: float(rng.poisson(m)))
        frame["sensor_id"] = s.sensor_id
        frame["metric"] = "people_count"
        out.append(frame[["ts", "sensor_id", "metric", "value"]])
    rows = len(pd.concat(out))
    return {"seconds": time.perf_counter() - t0, "sensors": len(counting), "rows": rows}


def _run(fn, *args):
    """Run one phase in a fresh process so its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=2000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--freq", default="1min")
    parser.add_argument("--naive-sample", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    tmp = Path(tempfile.mkdtemp(prefix="safecity-bench-"))
    try:
        print(f"machine: {os.cpu_count()} cores; {args.sensors} counting sensors "
              f"({args.sensors // 10} cameras), {args.days} days at {args.freq}\n")

        demo = _run(phase_demo, str(tmp / "demo"))
        print("demo city (defaults: 8 cameras, 24 counters, 7 days at 5min, 12 units)")
        print(f"  simulate_city      {demo['simulate_s']:7.2f} s   ({demo['observations']:,} observations, "
              f"{demo['events']:,} events, {demo['unit_rows']:,} unit positions)")
        print(f"  write_city         {demo['write_s']:7.2f} s")
        print(f"  write_clips (10)   {demo['clips_s']:7.2f} s")
        print(f"  peak RSS           {demo['peak_mb']:7.0f} MiB\n")

        gen = _run(phase_generate, args.sensors, args.days, args.freq)
        print("generate observations (simulate_observations, one call per day, all days kept)")
        print(f"  time               {gen['seconds']:7.2f} s   ({gen['rows']:,} rows, "
              f"{gen['rows'] / gen['seconds'] / 1e6:.2f} M rows/s)")
        print(f"  peak RSS           {gen['peak_mb']:7.0f} MiB  (after imports and set-up: "
              f"{gen['rss_before_mb']:.0f} MiB; frames in memory: {gen['frames_mb']:.0f} MiB)\n")

        st = _run(phase_store, args.sensors, args.days, args.freq, str(tmp / "store"))
        print("write through Store.append (one append per day)")
        print(f"  time               {st['append_s']:7.2f} s   ({st['rows']:,} rows)")
        print(f"  size on disk       {st['bytes'] / 2**20:7.1f} MiB  ({st['bytes'] / st['rows']:.2f} bytes/row)")
        print(f"  re-append one day  {st['reappend_s']:7.2f} s   ({st['reappended_rows']} new rows: idempotent)")
        print(f"  read one day back  {st['read_day_s']:7.2f} s   ({st['read_day_rows']:,} rows)")
        print(f"  peak RSS           {st['peak_mb']:7.0f} MiB\n")

        per_day = [gen["rows"] // args.days] * args.days
        base = _run(phase_numpy_baseline, args.sensors, args.days, args.freq, per_day)
        print("baseline: numpy Poisson noise, same rows, same frame and validation")
        print(f"  time               {base['seconds']:7.2f} s   -> the simulator takes "
              f"{gen['seconds'] / base['seconds']:.2f}x as long")
        print(f"  peak RSS           {base['peak_mb']:7.0f} MiB (one day at a time)\n")

        naive = _run(phase_naive_baseline, args.naive_sample, args.freq)
        scale = args.sensors * args.days / naive["sensors"]
        print(f"baseline: naive per-sensor pandas loop (measured on {naive['sensors']} sensors x 1 day)")
        print(f"  measured           {naive['seconds']:7.2f} s   ({naive['rows']:,} rows)")
        print(f"  scaled to the run  {naive['seconds'] * scale:7.0f} s   (linear extrapolation x{scale:.0f}) "
              f"-> the simulator is {naive['seconds'] * scale / gen['seconds']:.0f}x faster")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
