"""Benchmark of fusion: events per second, batch (``fusion.fuse``) and live (``LiveFusion.add``).

Events are random over Marseille for a week (a third as many places as events, a
few metres apart around each; gunshot, call or panic from three sources), as in the
profile of issue 17. It times, in one run:

* ``fusion.fuse`` on ``--sizes`` events (default 20,000 and 100,000);
* ``LiveFusion.add`` on ``--live`` events (default 20,000) in time order,
  in batches of ``--batch`` (default 100), the events validated already (the
  engine's ingest validates them);
* the baselines: the per-incident code before issue 17 (``reference_fuse`` and
  ``ReferenceLiveFusion`` in ``tests/test_fusion_same.py``, one DataFrame per
  incident) on the first ``--baseline`` of those events only (default 2,000: they take
  seconds per thousand events), and a check that both give the same incidents there;
* with ``../shared/data`` present, the same on the 4,385 San Francisco ShotSpotter
  alerts (batch only; the reference on all of them).

Rates are events per second of wall time and per CPU-second of this process
(``time.process_time``): on a shared machine the second is the steadier one.

    OMP_NUM_THREADS=1 python bench/fusion.py [--sizes 20000,100000] [--live 20000] [--batch 100] [--baseline 2000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from safecity.data import schema  # noqa: E402
from safecity.incidents import fusion  # noqa: E402
from safecity.incidents.live import LiveFusion  # noqa: E402
from test_fusion_same import ReferenceLiveFusion, reference_fuse  # noqa: E402

T0 = pd.Timestamp("2026-06-01", tz="UTC")


def random_events(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` validated events over Marseille for a week, in time order."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform([5.30, 43.25], [5.45, 43.35], size=(max(n // 3, 1), 2))
    lonlat = centers[rng.integers(0, len(centers), n)] + rng.normal(0, 0.0003, (n, 2))
    ts = T0 + pd.to_timedelta(np.sort(rng.uniform(0, 7 * 86400, n)), unit="s")
    return schema.validate(pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n)], "ts": ts,
        "kind": rng.choice(["gunshot", "call", "panic"], n), "sensor_id": None,
        "lon": lonlat[:, 0], "lat": lonlat[:, 1], "score": None,
        "source": rng.choice(["acoustic", "emergency_call", "panic"], n),
        "details": json.dumps({})}), "events")


def timed(f, *args):
    """``f(*args)``, its wall seconds and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = f(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def live_run(live: LiveFusion, events: pd.DataFrame, batch: int) -> int:
    """Feed ``events`` in batches; the number of incident rows returned."""
    rows = 0
    for start in range(0, len(events), batch):
        rows += len(live.add(events.iloc[start:start + batch], validated=True))
    return rows


def line(label: str, n: int, wall: float, cpu: float, extra: str = "") -> None:
    print(f"{label:<58} {n:>7,} ev  wall {wall:7.2f} s  cpu {cpu:7.2f} s  "
          f"{n / wall:>9,.0f} ev/s  {n / cpu:>9,.0f} ev/cpu-s  {extra}", flush=True)


def same(a: tuple[pd.DataFrame, pd.DataFrame], b: tuple[pd.DataFrame, pd.DataFrame]) -> str:
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
    return "same incidents and membership as the reference"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--live", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--baseline", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    print("batch: fusion.fuse")
    for n in sizes:
        (incidents, _), wall, cpu = timed(fusion.fuse, random_events(n, args.seed))
        line(f"fuse, {len(incidents):,} incidents", n, wall, cpu)
    events = random_events(max(args.live, args.baseline), args.seed)
    sub = events.head(args.baseline)
    fast, wall, cpu = timed(fusion.fuse, sub)
    line(f"fuse, {len(fast[0]):,} incidents", len(sub), wall, cpu)
    ref, wall, cpu = timed(reference_fuse, sub)
    line("BASELINE: per-incident code before issue 17 (reference_fuse)", len(sub), wall, cpu,
         same(fast, ref))

    print(f"live: LiveFusion.add, batches of {args.batch}")
    head = events.head(args.live)
    rows, wall, cpu = timed(live_run, LiveFusion(), head, args.batch)
    line(f"LiveFusion, {rows:,} incident rows out", len(head), wall, cpu)
    rows, wall, cpu = timed(live_run, ReferenceLiveFusion(), sub, args.batch)
    line(f"BASELINE: ReferenceLiveFusion (per incident), {rows:,} rows", len(sub), wall, cpu)

    path = ROOT.parent / "shared" / "data" / "city/sf_shotspotter/San_Francisco_ShotSpotter.csv"
    if path.exists():
        from safecity.data import catalog

        alerts = catalog.read_sf_shotspotter(path)
        print("real: San Francisco ShotSpotter alerts")
        fast, wall, cpu = timed(fusion.fuse, alerts)
        line(f"fuse, {len(fast[0]):,} incidents", len(alerts), wall, cpu)
        ref, wall, cpu = timed(reference_fuse, alerts)
        line("BASELINE: reference_fuse", len(alerts), wall, cpu, same(fast, ref))


if __name__ == "__main__":
    main()
