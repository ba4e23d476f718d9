"""Benchmark of safecity on a Dask cluster: the numbers of issue 14 side by side, in one run.

* camera pipelines: frames/s on one worker vs two (scaling efficiency), and the
  cost of running through Dask against a bare loop on one core;
* baseline fit + score, 20,000 sensors x 7 days x 1 min: wall time and peak
  memory per worker on ``local:2`` against the single process;
* killing a worker mid-run: time until its cameras run again, bins lost, bins
  doubled.

    .venv/bin/python bench/scale.py [--only cameras,baseline,kill]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# --- camera pipelines -------------------------------------------------------------------------

def camera_figures(args) -> dict:
    """Frames/s: bare loop on one core, one Dask worker, two Dask workers."""
    raise NotImplementedError("camera pipelines: to be written")


def kill_figures(args) -> dict:
    """A worker SIGKILLed mid-run: time to resume, bins lost, bins doubled."""
    raise NotImplementedError("kill a worker: to be written")


# --- history and models -----------------------------------------------------------------------

BLOCK_SENSORS = 1000  # sensors per partition (a worker holds one block's rows and model at a time)


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
        for lo in range(0, n_sensors, BLOCK_SENSORS):
            cols = wide.columns[lo:lo + BLOCK_SENSORS]
            block = wide[cols].to_numpy()
            keep = np.isfinite(block.T.ravel())
            table = pd.DataFrame({"ts": np.tile(ts, len(cols))[keep],
                                  "sensor_id": np.repeat(np.asarray(cols, dtype=object), len(ts))[keep],
                                  "value": block.T.ravel()[keep].astype(float)})
            writer.write_table(pa.Table.from_pandas(table, schema=writer.schema, preserve_index=False), row_group_size=len(ts) * 50)
    return path


def _single(n_sensors: int, days: int) -> dict:
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


def _on_cluster(path: str, n_sensors: int, workers: int) -> dict:
    """local:N: each worker reads its sensor blocks from the Parquet file, fits and scores them."""
    import resource
    import time

    from baseline import TZ

    from safecity.baseline.usual import UsualLevel
    from safecity.cluster import history
    from safecity.cluster.scheduler import connect

    ids = [f"s-{i:05d}" for i in range(n_sensors)]
    with history.numpy_workers(), connect(f"local:{workers}", memory_limit=None) as client:
        client.run(lambda: None)
        t0 = time.perf_counter()
        frame = history.read_sensor_blocks(path, history.sensor_blocks(ids, -(-n_sensors // BLOCK_SENSORS)))
        fitted = history.fit(client, frame, UsualLevel(tz=TZ, country=None, school_zone=None))
        summary = history.score_summary(client, fitted)
        wall_s = time.perf_counter() - t0
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"wall_s": wall_s, "worker_peak_mb": sorted(peaks.values()), "threshold": fitted.model.threshold_,
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
        out["single"] = _fresh(_single, args.sensors, args.days)
        out["local_2"] = _fresh(_on_cluster, path, args.sensors, 2)
    out["identical"] = all(out["single"][k] == out["local_2"][k] for k in ("threshold", "alarm_bins",
                                                                             "max_abs_score"))
    return out


# --- the run ----------------------------------------------------------------------------------

PARTS = {"cameras": camera_figures, "baseline": baseline_figures, "kill": kill_figures}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS), help="Comma-separated parts to run.")
    parser.add_argument("--sensors", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args(argv)
    figures = {}
    for name in args.only.split(","):
        figures[name] = PARTS[name](args)
        print(json.dumps({name: figures[name]}), flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
