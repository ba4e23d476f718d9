"""Benchmark of safecity on a Dask cluster: the numbers of issue 14 side by side, in one run.

* camera pipelines: frames/s on one worker vs two (scaling efficiency), and the
  cost of running through Dask against a bare loop on one core;
* baseline fit + score, 20,000 sensors x 7 days x 1 min: wall time and peak
  memory per worker on ``local:2`` against the single process;
* killing a worker mid-run: time until its cameras run again, bins lost, bins
  doubled;
* storage: bytes on disk per day of a sensor's 1-minute counts and of a camera's
  per-bin features, as ``Store.append`` writes them (for docs/capacity.md).

    .venv/bin/python bench/scale.py [--only cameras,baseline,kill,storage]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# --- camera pipelines -------------------------------------------------------------------------

PETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "pets2009_s2l1" / "vtest.avi"
CAMERAS, CAMERA_FRAMES, BIN_S = 4, 200, 5.0


def _camera_installation(folder: Path, n: int) -> tuple[Path, str]:
    """``n`` cameras on the PETS 2009 clip (480x360, 10 fps) if present, else on synthetic clips."""
    if PETS.exists():
        sources, origin = [PETS] * n, "PETS 2009 S2.L1 vtest.avi, 480x360"
    else:
        from safecity.sim.clips import write_clips

        sources = write_clips(folder / "clips", scenarios=["normal", "crowd_movement", "loitering",
                                                           "wrong_way"][:n] * (1 + n // 4),
                              n_frames=CAMERA_FRAMES)[:n]
        origin = "synthetic clips (safecity.sim.clips), 480x360"
    lines = ["name: bench", "cameras:"]
    for k, source in enumerate(sources):
        lines += [f"  - id: cam-{k}", f"    source: {source}", "    fps: 10",
                  "    start: 2026-06-01T08:00:00Z", "    pixels_per_metre: 20"]
    (folder / "cameras.yml").write_text("\n".join(lines) + "\n")
    return folder / "cameras.yml", origin


def _warm(client) -> None:
    """Import the pipeline in every worker first: imports are a worker's start-up, not its pace."""
    client.run(lambda: __import__("safecity.cluster.cameras") and __import__("safecity.video.pipeline"))


def _pin(core: int, dask_worker=None) -> None:
    """Hold this process (every thread: OpenCV's too) to one core: a worker is one core."""
    import os

    os.sched_setaffinity(0, {core % os.cpu_count()})


def _on_cluster(workers: int, cameras, data_dir: Path, frames: int) -> float:
    """Frames per second of every camera together on ``local:workers``, each worker held to
    its own core (placement, probing and progress records included)."""
    import time

    from safecity.cluster.cameras import RowsTo, RunOptions, run_on_cluster
    from safecity.cluster.scheduler import connect

    with connect(f"local:{workers}") as client:
        _warm(client)
        for k, address in enumerate(sorted(client.run(lambda: 0))):
            client.run(_pin, k, workers=[address])
        t0 = time.perf_counter()
        summaries = run_on_cluster(client, cameras, RowsTo(data_dir=str(data_dir)),
                                   RunOptions(bin_s=BIN_S, max_frames=frames))
        elapsed = time.perf_counter() - t0
    assert all(s["status"] == "ok" for s in summaries), summaries
    return sum(s["frames"] for s in summaries) / elapsed


def _load() -> str:
    import os

    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def camera_figures(args) -> dict:
    """Frames/s: bare loop on one core, one Dask worker, two Dask workers (one core each)."""
    import os
    import tempfile
    import time

    from safecity.app.camera_runner import run_camera
    from safecity.config.cameras import load_cameras
    from safecity.data.store import Store

    frames = getattr(args, "camera_frames", CAMERA_FRAMES)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config, origin = _camera_installation(tmp, CAMERAS)
        cameras = load_cameras(config)
        load_before = _load()
        store = Store(tmp / "bare")
        cores = os.sched_getaffinity(0)
        _pin(0)
        try:
            t0 = time.perf_counter()
            bare = sum(run_camera(c, store, bin_s=BIN_S, max_frames=frames)["frames"] for c in cameras)
            fps_bare = bare / (time.perf_counter() - t0)
        finally:
            os.sched_setaffinity(0, cores)
        fps_1 = _on_cluster(1, cameras, tmp / "one", frames)
        fps_2 = _on_cluster(2, cameras, tmp / "two", frames)
    return {"clip": origin, "cameras": len(cameras), "frames_per_camera": frames,
            "fps_bare_loop_one_core": round(fps_bare, 1), "fps_dask_1_worker": round(fps_1, 1),
            "fps_dask_2_workers": round(fps_2, 1),
            "scaling_efficiency": round(fps_2 / (2 * fps_1), 3),
            "dask_overhead_ratio": round(fps_1 / fps_bare, 3),
            "load_before": load_before, "load_after": _load()}


def kill_figures(args) -> dict:
    """A worker SIGKILLed mid-run: time to resume, bins lost, bins doubled."""
    import os
    import signal
    import tempfile
    import time
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from safecity.cluster.cameras import RowsTo, RunOptions, run_on_cluster
    from safecity.cluster.scheduler import connect
    from safecity.config.cameras import load_cameras
    from safecity.data.store import Store

    frames = 2 * getattr(args, "camera_frames", CAMERA_FRAMES)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config, origin = _camera_installation(tmp, CAMERAS)
        cameras = load_cameras(config)
        store, placed = Store(tmp / "store"), {}
        with connect("local:2") as client, ThreadPoolExecutor(1) as pool:
            _warm(client)
            pids = client.run(os.getpid)
            running = pool.submit(run_on_cluster, client, cameras, RowsTo(data_dir=str(tmp / "store")),
                                  RunOptions(bin_s=BIN_S, max_frames=frames),
                                  on_placed=lambda cid, w: placed.setdefault(cid, w))
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # the victim: cam-0's worker, once cam-0 wrote a bin
                obs = store.read("observations", columns=["sensor_id"])
                if "cam-0" in placed and obs["sensor_id"].str.startswith("cam-0:").any():
                    break
                time.sleep(0.05)
            victim = placed["cam-0"]
            lost = sorted(cid for cid, w in placed.items() if w == victim)
            killed_at = time.time()
            os.kill(pids[victim], signal.SIGKILL)
            summaries = {s["camera_id"]: s for s in running.result()}
        obs = store.read("observations")
    per_bin = obs.groupby([obs["sensor_id"].str.split(":").str[0], "ts"]).size()
    start = pd.Timestamp("2026-06-01T08:00:00Z")
    expected = set()  # every bin of the frames each camera read, whoever read them
    for c in cameras:
        read = summaries[c.id]["frames"] + summaries[c.id].get("skipped", 0)
        expected |= {(c.id, start + pd.Timedelta(seconds=BIN_S * k))
                     for k in range(-(-read // int(10 * BIN_S)))}
    stored = set(per_bin.index)
    restarted = [s for s in summaries.values() if s["restarts"]]
    return {"clip": origin, "cameras": len(cameras), "frames_per_camera": frames, "bin_s": BIN_S,
            "cameras_on_killed_worker": lost,
            "all_ok": all(s["status"] == "ok" for s in summaries.values()),
            "restarted": sorted(s["camera_id"] for s in restarted),
            "seconds_kill_to_resubmitted": round(max(s["restarted_at"][0] for s in restarted)
                                                 - killed_at, 2),
            "seconds_kill_to_every_lost_camera_writing": round(
                max(s["first_write_at"] or float("nan") for s in restarted) - killed_at, 2),
            "bins_expected": len(expected), "bins_stored": len(stored & expected),
            "bins_lost": len(expected - stored), "bins_unexpected": len(stored - expected),
            "bins_doubled": int(obs.duplicated(["ts", "sensor_id", "metric"]).sum()),
            "resends_refused_as_stored": sum(s.get("already_stored", 0) for s in summaries.values()),
            "load": _load()}


# --- storage ---------------------------------------------------------------------------------

def storage_figures(args) -> dict:
    """Bytes on disk per stored row: one day of 1-minute observations for sensors and cameras.

    Writes, through ``Store.append`` (the path every source's rows take), one day of
    one-minute counts for ``args.storage_sensors`` sensors, and one day of a camera's
    per-bin features (14 metrics per zone, 3 zones) for ``args.storage_cameras``
    cameras, then measures the Parquet files' size: the figures the capacity plan
    multiplies by the city's numbers of sensors, cameras and retention days.
    """
    import tempfile

    import numpy as np
    import pandas as pd

    from safecity.data.store import Store

    rng = np.random.default_rng(0)
    day = pd.date_range("2026-03-03", periods=1440, freq="1min", tz="UTC")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store")
        n = args.storage_sensors
        counts = rng.poisson(rng.lognormal(1.5, 1.0, n)[None, :] * np.ones((1440, 1)))
        rows = pd.DataFrame({"ts": np.repeat(day, n), "sensor_id": np.tile([f"s-{i:05d}" for i in range(n)], 1440),
                             "metric": "count", "value": counts.ravel().astype(float)})
        for lo in range(0, 1440, 60):  # an hour per batch, as a bridge would post them
            store.append("observations", rows.iloc[lo * n:(lo + 60) * n])
        size = sum(f.stat().st_size for f in (Path(tmp) / "store" / "history" / "observations").rglob("*.parquet"))
        out["sensor_bytes_per_row"] = round(size / len(rows), 2)
        out["sensor_bytes_per_day"] = round(size / n)
        metrics = ["people_count", "occupancy", "mean_speed", *[f"flow_dir_{k}" for k in range(8)],
                   "dwell_count", "dwell_mean_s", "dwell_max_s"]
        cams = [f"cam-{i:04d}:{z}" for i in range(args.storage_cameras) for z in ("all", "z1", "z2")]
        n_rows = len(cams) * len(metrics)
        cam_rows = pd.DataFrame({"ts": np.repeat(day, n_rows),
                                 "sensor_id": np.tile(np.repeat(cams, len(metrics)), 1440),
                                 "metric": np.tile(metrics, len(cams) * 1440),
                                 "value": rng.uniform(0, 1, 1440 * n_rows)})  # full floats: the worst case
        store2 = Store(Path(tmp) / "cams")
        for lo in range(0, 1440, 60):
            store2.append("observations", cam_rows.iloc[lo * n_rows:(lo + 60) * n_rows])
        size = sum(f.stat().st_size for f in (Path(tmp) / "cams" / "history" / "observations").rglob("*.parquet"))
        out["camera_rows_per_day"] = len(cam_rows) // args.storage_cameras
        out["camera_bytes_per_day"] = round(size / args.storage_cameras)
        # a day of events at one alarm per camera-hour (the false-alarm ceiling of issue 15)
        n_events = 24 * args.storage_cameras
        events = pd.DataFrame({
            "event_id": [f"ev-{i:08d}" for i in range(n_events)],
            "ts": day[np.sort(rng.integers(0, 1440, n_events))],
            "kind": rng.choice(["abandoned_object", "person_on_ground", "crowd_movement"], n_events),
            "sensor_id": [f"cam-{i % args.storage_cameras:04d}" for i in range(n_events)],
            "lon": 5.37 + rng.normal(0, 0.02, n_events), "lat": 43.3 + rng.normal(0, 0.02, n_events),
            "score": rng.uniform(0, 1, n_events), "source": "video",
            "details": [f'{{"zone": "z1", "track_id": {i}, "box": [10, 20, 60, 140]}}'
                        for i in range(n_events)]})
        store2.append("events", events)
        size = sum(f.stat().st_size for f in (Path(tmp) / "cams" / "history" / "events").rglob("*.parquet"))
        out["event_bytes"] = round(size / n_events, 1)
    out["tile_bytes"] = _tile_bytes()
    return out


def _tile_bytes(frames: int = 100) -> float | None:
    """Mean size of the blurred JPEG tile a camera posts at most once a second, on PETS 480x360."""
    import numpy as np

    from safecity.video.pipeline import CameraPipeline

    pets = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "pets2009_s2l1" / "vtest.avi"
    if not pets.exists():
        return None  # the real clip is not beside the repository (see ../shared/data/README.md)
    source = str(pets)
    pipe = CameraPipeline({"camera_id": "tile", "fps": 10, "pixels_per_metre": 20})
    sizes = []
    for k, frame in enumerate(pipe.frames(source)):
        if k >= frames:
            break
        result = pipe.process(frame)
        image = frame.image if hasattr(frame, "image") else frame
        sizes.append(len(pipe.tile(image, result)))
    return round(float(np.mean(sizes[10:])), 0)


# --- history and models -----------------------------------------------------------------------

WRITE_SENSORS = 1000  # sensors per write (the file is sorted by sensor)


def _write_history(folder: Path, n_sensors: int, days: int) -> Path:
    """bench/baseline.py's counts, written long (ts, sensor_id, value) to Parquet sorted by sensor (untimed)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from baseline import make_data

    wide = make_data(n_sensors, days, 1)
    path = folder / "observations.parquet"
    ts = wide.index.as_unit("ns")
    with pq.ParquetWriter(path, pa.schema([("ts", pa.timestamp("ns", tz="UTC")), ("sensor_id", pa.string()),
                                           ("value", pa.float64())])) as writer:
        for lo in range(0, n_sensors, WRITE_SENSORS):
            cols = wide.columns[lo:lo + WRITE_SENSORS]
            block = wide[cols].to_numpy()
            keep = np.isfinite(block.T.ravel())
            table = pd.DataFrame({"ts": np.tile(ts, len(cols))[keep],
                                  "sensor_id": np.repeat(np.asarray(cols, dtype=object), len(ts))[keep],
                                  "value": block.T.ravel()[keep].astype(float)})
            writer.write_table(pa.Table.from_pandas(table, schema=writer.schema, preserve_index=False), row_group_size=len(ts) * 50)
    return path


def _baseline_single(n_sensors: int, days: int) -> dict:
    """One process, as bench/baseline.py runs it: the counts made in memory (wide, float32), fit, score.

    Not read from the Parquet file: pivoting 200 million long rows in one
    process would need several times the memory of the fit itself.
    """
    import time

    import numpy as np
    from baseline import TZ, _peak_mb, make_data

    from safecity.baseline.usual import UsualLevel

    t0 = time.perf_counter()
    wide = make_data(n_sensors, days, 1)
    read_s = time.perf_counter() - t0
    model = UsualLevel(tz=TZ, country=None, school_zone=None)
    t0 = time.perf_counter()
    model.fit(wide)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    z = model.score_samples(wide).to_numpy()
    score_s = time.perf_counter() - t0
    finite = np.abs(z[np.isfinite(z)])
    return {"make_data_s": read_s, "fit_s": fit_s, "score_s": score_s, "wall_s": fit_s + score_s,
            "peak_mb": _peak_mb(), "threshold": model.threshold_,
            "alarm_bins": int((finite > model.threshold_).sum()), "max_abs_score": float(finite.max())}


def _baseline_on_cluster(path: str, n_sensors: int, workers: int, block: int) -> dict:
    """local:N: each worker reads its sensor blocks (``block`` sensors each) from the Parquet file, fits
    and scores them; a worker's memory after start-up is reported beside its peak."""
    import resource
    import time

    from baseline import TZ

    from safecity.baseline.usual import UsualLevel
    from safecity.cluster import history
    from safecity.cluster.scheduler import connect

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    ids = [f"s-{i:05d}" for i in range(n_sensors)]
    with history.numpy_workers(), connect(f"local:{workers}", memory_limit=None) as client:
        client.run(lambda: __import__("safecity.cluster.history") and None)
        started = client.run(peak_mb)
        t0 = time.perf_counter()
        frame = history.read_sensor_blocks(path, history.sensor_blocks(ids, -(-n_sensors // block)))
        fitted = history.fit(client, frame, UsualLevel(tz=TZ, country=None, school_zone=None))
        summary = history.score_summary(client, fitted)
        wall_s = time.perf_counter() - t0
        peaks = client.run(peak_mb)
    return {"wall_s": wall_s, "block_sensors": block, "worker_peak_mb": sorted(peaks.values()),
            "worker_after_start_mb": sorted(started.values()), "threshold": fitted.model.threshold_,
            "alarm_bins": summary["alarm_bins"], "max_abs_score": summary["max_abs_score"]}


def _fresh(fn, *a):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *a).result()


def baseline_figures(args) -> dict:
    """UsualLevel fit + score: single process vs local:2, time and peak memory per worker.

    The counts (bench/baseline.py's ``make_data``) are written to Parquet before
    any timing. The single process's time is fit + score after reading and
    pivoting the file (its read time is reported apart); the cluster's wall
    time includes every worker reading its own sensors' rows from the file.
    """
    import tempfile
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        path = str(_fresh(_write_history, Path(folder), args.sensors, args.days))
        out = {"sensors": args.sensors, "days": args.days, "write_parquet_s": round(time.perf_counter() - t0, 1)}
        out["single"] = _fresh(_baseline_single, args.sensors, args.days)
        out["local_2"] = _fresh(_baseline_on_cluster, path, args.sensors, 2, args.block_sensors)
        # The same file, fewer of its sensors: a worker's peak must not grow with the number of sensors.
        out["local_2_fewer_sensors"] = {
            n: {k: v for k, v in _fresh(_baseline_on_cluster, path, n, 2, args.block_sensors).items()
                if k in ("wall_s", "worker_peak_mb")}
            for n in map(int, args.memory_sensors.split(",")) if n < args.sensors}
    out["identical"] = all(out["single"][k] == out["local_2"][k] for k in ("threshold", "alarm_bins",
                                                                             "max_abs_score"))
    return out


# --- the run ----------------------------------------------------------------------------------

PARTS = {"cameras": camera_figures, "baseline": baseline_figures, "kill": kill_figures,
         "storage": storage_figures}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS), help="Comma-separated parts to run.")
    parser.add_argument("--sensors", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--block-sensors", type=int, default=500,
                        help="Sensors per partition of the cluster's baseline (what a worker holds at a time).")
    parser.add_argument("--memory-sensors", default="5000",
                        help="Comma-separated smaller numbers of sensors the cluster's baseline also runs on.")
    parser.add_argument("--storage-sensors", type=int, default=2_000,
                        help="Sensors in the storage part's day of 1-minute counts.")
    parser.add_argument("--storage-cameras", type=int, default=50,
                        help="Cameras (3 zones each) in the storage part's day of features.")
    args = parser.parse_args(argv)
    figures = {}
    for name in args.only.split(","):
        figures[name] = PARTS[name](args)
        print(json.dumps({name: figures[name]}), flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
