"""Concurrent writers on one data directory: duplicate keys and lost upserts.

Stores a day of 1,000 sensors, then starts ``--writers`` real ``safecity store
ingest observations`` processes at once (imports done, then released
together), each adding an hour of one-minute counts of 150 other sensors to
that day, neighbours sharing 130 of them (a key is offered by up to 8
writers); then as many
``safecity store ingest sensors`` processes, each adding its own sensor to a
table of 100,000. Counts the keys stored twice or more and the sensors lost,
over ``--runs`` runs. Runs the ``safecity`` of whatever comes first on
PYTHONPATH, so the same script measures main and a branch:

    PYTHONPATH=/path/to/checkout .venv/bin/python bench/store_concurrency.py --writers 10 --runs 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

# Each writer imports everything, says "ready", then waits for the go file: the
# writes start together, as they would for long-running ingest jobs (a 3 s import
# on a loaded machine would otherwise space them out by chance).
CLI = [sys.executable, "-c", (
    "import os, sys, time; import safecity.data.store; from safecity.cli import main; "
    "print('ready', flush=True); go = os.environ['BENCH_GO']; "
    "[time.sleep(0.005) for _ in iter(lambda: os.path.exists(go), True)]; sys.exit(main())")]


def _observations(first_sensor: int, n_sensors: int, minutes: int = 60,
                  prefix: str = "s") -> pd.DataFrame:
    ts = pd.date_range("2026-06-01", periods=minutes, freq="1min", tz="UTC")
    sensors = [f"{prefix}{k}" for k in range(first_sensor, first_sensor + n_sensors)]
    return pd.DataFrame({"ts": np.repeat(ts, len(sensors)), "sensor_id": sensors * len(ts),
                         "metric": "people_count",
                         "value": np.repeat(ts.minute.to_numpy() % 50, len(sensors)).astype(float)})


def _sensors(ids) -> pd.DataFrame:
    return pd.DataFrame({"sensor_id": list(ids), "kind": "counter", "lon": 5.37, "lat": 43.29,
                         "zone": None, "metadata": None})


def _all_at_once(commands: list[list[str]], go: Path) -> list[int]:
    go.unlink(missing_ok=True)
    env = {**os.environ, "BENCH_GO": str(go)}
    # cwd: with -c, Python puts the working directory first on sys.path, before PYTHONPATH
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=go.parent) for c in commands]
    for p in procs:
        p.stdout.readline()  # "ready"
    go.touch()
    codes = []
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            print(err.strip().splitlines()[-1] if err.strip() else p.returncode, file=sys.stderr)
        codes.append(p.returncode)
    return codes


def run_once(work: Path, writers: int) -> dict:
    from safecity.data.store import Store

    data = work / "data"
    # a day already stored: reading its keys is the slow step between check and write
    Store(data).append("observations", _observations(0, 1000, minutes=1440, prefix="seed-"))
    obs_files = []
    for i in range(writers):
        path = work / f"obs{i}.parquet"
        _observations(20 * i, 150).to_parquet(path)
        obs_files.append(path)
    codes = _all_at_once([[*CLI, "store", "ingest", "observations", str(f), "--data-dir", str(data)]
                          for f in obs_files], work / "go")
    stored = Store(data).read("observations")
    duplicates = int(stored.duplicated(["ts", "sensor_id", "metric"]).sum())

    Store(data).append("sensors", _sensors(f"base-{i}" for i in range(100_000)))
    sensor_files = []
    for i in range(writers):
        path = work / f"sensor{i}.csv"
        _sensors([f"new-{i}"]).to_csv(path, index=False)
        sensor_files.append(path)
    codes += _all_at_once([[*CLI, "store", "ingest", "sensors", str(f), "--data-dir", str(data)]
                           for f in sensor_files], work / "go")
    ids = set(Store(data).read("sensors")["sensor_id"])
    lost = sum(f"new-{i}" not in ids for i in range(writers))
    return {"duplicate_keys": duplicates, "stored_rows": len(stored) - 1440 * 1000,
            "lost_sensor_upserts": lost, "failed_writers": sum(c != 0 for c in codes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    import safecity

    print(f"safecity from {Path(safecity.__file__).parent}", file=sys.stderr)
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run_once(Path(tmp), args.writers)
            result["seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps({"run": run, **result}), flush=True)
        results.append(result)
    print(json.dumps({"writers": args.writers, "runs": args.runs,
                      "duplicate_keys": sum(r["duplicate_keys"] for r in results),
                      "runs_with_duplicates": sum(r["duplicate_keys"] > 0 for r in results),
                      "lost_sensor_upserts": sum(r["lost_sensor_upserts"] for r in results),
                      "runs_with_lost_upserts": sum(r["lost_sensor_upserts"] > 0 for r in results),
                      "expected_rows": 60 * (20 * (args.writers - 1) + 150)}))


if __name__ == "__main__":
    main()
