"""Benchmark of the usual-level baseline: 20,000 sensors x 7 days of 1-minute bins.

Prints the fit and score times and the peak resident memory of
``safecity.baseline.usual.UsualLevel`` next to a plain pandas group-by that learns
the same kind of profile in the same run: the median per sensor and minute of
the day, the median absolute deviation around it, and the standardised
departure of every bin (long format, one integer key per sensor and minute,
``groupby(key).median()`` twice, and a lookup to score).
Each method runs in a fresh process so that its peak memory is its own; the
process first generates the data (numpy, float32: a weekday and a weekend
daily cycle mixing commuter and leisure shapes, a lognormal level per sensor,
gamma-Poisson noise, and an hour-long outage as missing bins on one sensor in
fifty), and a process that only generates it reports that floor too.

What ``UsualLevel.fit`` does at this size: the whole calibration (a model
fitted on the first half of the week on a sample of 2,000 sensors, replayed
day by day over the second half with online updates, the threshold solved for
``rate``), then the levels (per sensor and minute of the week, borrowing from
the minute of weekdays or of all days while a slot has few values), the noise
model from day-apart pairs, and the profile. ``score_samples`` scores every
bin of the week (201.6 million values).

    .venv/bin/python bench/baseline.py [--sensors 20000] [--days 7] [--step-minutes 1]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

START = "2026-03-02"  # a Monday, before the change to summer time
TZ = "Europe/Paris"


def make_data(n_sensors: int, days: int, step_minutes: int, seed: int = 0):
    """A wide float32 frame (bins x sensors, UTC index) of counts, generated chunk by chunk."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ts = pd.date_range(START, periods=days * 1440 // step_minutes, freq=f"{step_minutes}min", tz="UTC")
    local = ts.tz_convert(TZ)
    hour = (np.asarray(local.hour) + np.asarray(local.minute) / 60)[:, None]
    weekend = (np.asarray(local.day_of_week) >= 5)[:, None]
    commute = (np.exp(-0.5 * ((hour - 8.5) / 1.2) ** 2) + np.exp(-0.5 * ((hour - 18) / 1.5) ** 2))
    leisure = np.exp(-0.5 * ((hour - 13) / 3) ** 2) + 0.6 * np.exp(-0.5 * ((hour - 21) / 2) ** 2)
    weekday_shape = np.hstack([0.05 + commute, 0.05 + leisure]).astype(np.float32)  # (T, 2)
    weekend_shape = np.hstack([0.05 + 0.7 * leisure, 0.05 + leisure]).astype(np.float32)
    shapes = np.where(weekend, weekend_shape, weekday_shape)  # (T, 2): commuter and leisure columns
    values = np.empty((len(ts), n_sensors), np.float32)
    chunk = 1000
    for lo in range(0, n_sensors, chunk):
        hi = min(lo + chunk, n_sensors)
        mix = rng.uniform(0, 1, hi - lo).astype(np.float32)
        level = rng.lognormal(0.5, 1.0, hi - lo).astype(np.float32) * step_minutes
        mean = (shapes[:, :1] * mix + shapes[:, 1:] * (1 - mix)) * level
        noisy = mean * rng.gamma(20.0, 1 / 20.0, mean.shape).astype(np.float32)
        values[:, lo:hi] = rng.poisson(noisy)
    for s in rng.choice(n_sensors, n_sensors // 50, replace=False):  # outages: missing, not zero
        t0 = int(rng.integers(0, len(ts) - 60 // step_minutes))
        values[t0:t0 + 60 // step_minutes, s] = np.nan
    columns = [f"s-{i:05d}" for i in range(n_sensors)]
    return pd.DataFrame(values, index=ts, columns=columns, copy=False)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def phase(method: str, n_sensors: int, days: int, step_minutes: int) -> dict:
    """Generate the data, then fit and score with one method; times, peak memory and a check figure."""
    import numpy as np

    t0 = time.perf_counter()
    wide = make_data(n_sensors, days, step_minutes)
    out = {"values": wide.size, "generate_s": time.perf_counter() - t0, "data_peak_mb": _peak_mb()}
    if method == "data":
        return out
    if method == "usual_level":
        from safecity.baseline.usual import UsualLevel

        model = UsualLevel(tz=TZ, country=None, school_zone=None)
        t0 = time.perf_counter()
        model.fit(wide)
        out["fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        z = model.score_samples(wide).to_numpy()
        out["score_s"] = time.perf_counter() - t0
        out["threshold"] = model.threshold_
        out["alarm_bins"] = int((np.abs(z[np.isfinite(z)]) > model.threshold_).sum())
        out["max_abs_score"] = float(np.nanmax(np.abs(z)))
    else:
        import pandas as pd

        # Long format, one integer key per (sensor, minute of the day): the plainest lean form.
        local = wide.index.tz_convert(TZ)
        minute = np.asarray(local.hour * 60 + local.minute, np.int32) // step_minutes
        per_day = 1440 // step_minutes
        t0 = time.perf_counter()
        key = (np.arange(wide.shape[1], dtype=np.int32)[None, :] * per_day + minute[:, None]).ravel()
        long = pd.DataFrame({"key": key, "value": wide.to_numpy().ravel()}).dropna()
        median = long.groupby("key")["value"].median()
        centre = median.to_numpy()[long["key"].to_numpy()]
        mad = long.assign(dev=np.abs(long["value"].to_numpy() - centre)).groupby("key")["dev"].median()
        out["fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        scale = np.maximum(1.4826 * mad.to_numpy()[long["key"].to_numpy()], 0.5)
        z = (long["value"].to_numpy() - centre) / scale
        out["score_s"] = time.perf_counter() - t0
        out["groups"] = len(median)
    out["peak_mb"] = _peak_mb()
    return out


def _run(*args):
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(phase, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--step-minutes", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    shape = (args.sensors, args.days, args.step_minutes)
    print(f"machine: {os.cpu_count()} cores; {args.sensors:,} sensors x {args.days} days of "
          f"{args.step_minutes}-minute bins\n")
    data = _run("data", *shape)
    print(f"data: {data['values']:,} values (float32) generated in {data['generate_s']:.1f} s, "
          f"peak RSS {data['data_peak_mb']:.0f} MiB (the floor of every row below)\n")
    print(f"{'method':<32}{'fit s':>8}{'score s':>9}{'total s':>9}{'peak MiB':>10}")
    for method, label in (("usual_level", "UsualLevel"), ("pandas", "pandas groupby median + MAD")):
        r = _run(method, *shape)
        print(f"{label:<32}{r['fit_s']:>8.1f}{r['score_s']:>9.1f}{r['fit_s'] + r['score_s']:>9.1f}"
              f"{r['peak_mb']:>10.0f}")
        if method == "usual_level":
            print(f"{'':<32}threshold {r['threshold']:.2f} (calibrated in fit), {r['alarm_bins']:,} bins "
                  f"above it, largest |score| {r['max_abs_score']:.1f}")
        else:
            print(f"{'':<32}{r['groups']:,} (sensor, minute of the day) groups")

if __name__ == "__main__":
    main()
