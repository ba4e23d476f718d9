"""Benchmark of the gathering forecaster: 500 sensors x 2 years of hourly counts.

Prints the fit and predict times and the peak resident memory of the
forecaster, next to the two baselines measured in the same run on the same
data: the seasonal naive (the same hour one week before) and the time-of-week
profile. Each method runs in a fresh process so that its peak memory is its
own; the process first generates the data (numpy: a daily cycle that differs
on weekends, a weekly level, a slow seasonal drift, gamma-Poisson noise, a
few outages left as missing hours, and two events a week at random places)
and reports that peak too, so the method's own cost is the difference.

What the forecaster's fit does at this size: it reads the whole history
(8.8 M rows) into an hourly matrix, and fits the usual-hour model on
``max_samples`` ordinary sensor-hours drawn at random from the whole history
(200,000 by default, of about 8 M usable); the event model on the event and
public-holiday hours (every sensor's: about 330,000 here), at most
``MAX_EVENT_ROWS`` (50,000) of them drawn at random. The prediction is one
24-hour forecast for every sensor, issued at the end of the history.

    .venv/bin/python bench/forecast.py [--sensors 500] [--days 730] [--max-samples 200000]

``--scaling`` instead fits on 21 sensors x 1, 2, 4 and 7 years (``--years``)
of the same synthetic counts and prints the fit's CPU time per size (one core:
run it with ``OMP_NUM_THREADS=1``) for the forecaster as configured, the
forecaster learning from the whole history with every row (``history_days``
and ``max_samples`` None: the cost per row), and the seasonal naive, all in
the same process, so that how each grows with the history is visible.

    OMP_NUM_THREADS=1 .venv/bin/python bench/forecast.py --scaling [--years 1,2,4,7]
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

START = "2024-01-01"


def make_data(n_sensors: int, days: int, seed: int = 0):
    """Observations (long), a sensors table and a calendar of events, quickly, with numpy."""
    import numpy as np
    import pandas as pd

    from safecity.data.schema import validate

    rng = np.random.default_rng(seed)
    ts = pd.date_range(START, periods=days * 24, freq="h", tz="UTC")
    local = ts.tz_convert("Europe/Paris")
    hour = np.asarray(local.hour)[:, None]
    weekend = (np.asarray(local.day_of_week) >= 5)[:, None]
    doy = np.asarray(local.day_of_year)[:, None]
    level = rng.lognormal(5.0, 0.8, n_sensors)[None, :]
    commute = rng.uniform(0, 1, n_sensors)[None, :]
    daily = np.where(weekend,
                     0.05 + np.exp(-0.5 * ((hour - 15) / 3.5) ** 2),
                     0.05 + commute * (np.exp(-0.5 * ((hour - 8.5) / 1.2) ** 2)
                                       + np.exp(-0.5 * ((hour - 18) / 1.5) ** 2))
                     + (1 - commute) * np.exp(-0.5 * ((hour - 13) / 3) ** 2))
    season = 1 + 0.15 * np.sin(2 * np.pi * (doy - 80) / 365)
    mean = level * daily * season
    values = rng.poisson(mean * rng.gamma(20.0, 1 / 20.0, mean.shape)).astype(float)
    for s in rng.choice(n_sensors, n_sensors // 10, replace=False):  # outages: missing, not zero
        t0 = int(rng.integers(0, len(ts) - 72))
        values[t0:t0 + int(rng.integers(3, 72)), s] = np.nan
    ids = np.array([f"s-{i:04d}" for i in range(n_sensors)], dtype=object)
    have = ~np.isnan(values)
    t_idx, s_idx = np.nonzero(have)
    obs = pd.DataFrame({"ts": ts[t_idx], "sensor_id": ids[s_idx], "metric": "people_count",
                        "value": values[t_idx, s_idx]})
    lon = rng.uniform(5.33, 5.45, n_sensors)
    lat = rng.uniform(43.25, 43.34, n_sensors)
    sensors = pd.DataFrame({"sensor_id": ids, "lon": lon, "lat": lat})
    n_events = 2 * days // 7
    starts = ts[0] + pd.to_timedelta(rng.integers(0, days, n_events) * 24 + rng.integers(14, 21, n_events),
                                     unit="h")
    calendar = validate(pd.DataFrame({
        "calendar_id": [f"ev-{i}" for i in range(n_events)], "kind": "event", "name": "event",
        "start": starts, "end": starts + pd.Timedelta(hours=3), "location": None,
        "lon": rng.uniform(5.33, 5.45, n_events), "lat": rng.uniform(43.25, 43.34, n_events),
        "expected_attendance": rng.choice([5_000.0, 20_000.0, 60_000.0], n_events)}), "calendar")
    return obs, sensors, calendar


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def phase(method: str, n_sensors: int, days: int, max_samples: int) -> dict:
    """Generate the data, then fit and predict one method; times and peak memory."""
    from safecity.forecast.baselines import SeasonalNaive, TimeOfWeekProfile
    from safecity.forecast.model import GatheringForecaster
    from safecity.forecast.table import HOUR, forecast_hours

    t0 = time.perf_counter()
    obs, sensors, calendar = make_data(n_sensors, days)
    out = {"rows": len(obs), "generate_s": time.perf_counter() - t0, "data_peak_mb": _peak_mb()}
    origin = obs["ts"].max() + HOUR
    if method == "data":
        return out
    model = {"forecaster": GatheringForecaster(max_samples=max_samples),
             "seasonal_naive": SeasonalNaive(),
             "time_of_week_profile": TimeOfWeekProfile()}[method]
    t0 = time.perf_counter()
    model.fit(obs, calendar=calendar, sensors=sensors)
    out["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = model.predict(forecast_hours(origin, "24h"))
    out["predict_s"] = time.perf_counter() - t0
    out["forecast_rows"] = len(table)
    out["peak_mb"] = _peak_mb()
    if method == "forecaster":
        out["n_train"], out["n_event_rows"] = model.n_train_, model.n_event_rows_
    return out


def scaling(n_sensors: int, years: list[float]) -> None:
    """Fit CPU time per history length: the forecaster (as configured, and on every row) beside the naive."""
    from safecity.forecast.baselines import SeasonalNaive
    from safecity.forecast.model import GatheringForecaster

    methods = {"forecaster": GatheringForecaster,
               "forecaster, every row": lambda: GatheringForecaster(history_days=None, max_samples=None),
               "seasonal naive": SeasonalNaive}
    print(f"{'years':>5}{'rows':>11}  " + "".join(f"{m + ' CPU s':>28}" for m in methods)
          + f"{'every row, us/row':>20}")
    for y in years:
        obs, sensors, calendar = make_data(n_sensors, int(round(365 * y)))
        cpu = {}
        for name, make in methods.items():
            t0 = time.process_time()
            make().fit(obs, calendar=calendar, sensors=sensors)
            cpu[name] = time.process_time() - t0
        print(f"{y:>5g}{len(obs):>11,}  " + "".join(f"{cpu[m]:>28.1f}" for m in methods)
              + f"{1e6 * cpu['forecaster, every row'] / len(obs):>20.1f}", flush=True)


def _run(*args):
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(phase, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=500)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--max-samples", type=int, default=200_000)
    parser.add_argument("--scaling", action="store_true",
                        help="fit CPU time per history length (21 sensors unless --sensors is given)")
    parser.add_argument("--years", default="1,2,4,7", help="history lengths of --scaling, in years")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if args.scaling:
        import warnings

        warnings.filterwarnings("ignore", message="school holidays are known")  # synthetic years past 2028
        n = args.sensors if "--sensors" in sys.argv else 21
        print(f"machine: {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
              f"{n} sensors, fit CPU time (time.process_time)\n")
        scaling(n, [float(y) for y in args.years.split(",")])
        return
    print(f"machine: {os.cpu_count()} cores; {args.sensors} sensors x {args.days} days hourly\n")
    data = _run("data", args.sensors, args.days, args.max_samples)
    print(f"data: {data['rows']:,} observations generated in {data['generate_s']:.1f} s, "
          f"peak RSS {data['data_peak_mb']:.0f} MiB (the floor of every row below)\n")
    print(f"{'method':<22}{'fit s':>8}{'predict s':>11}{'peak MiB':>10}   forecast rows")
    results = {}
    for method in ("forecaster", "seasonal_naive", "time_of_week_profile"):
        r = results[method] = _run(method, args.sensors, args.days, args.max_samples)
        print(f"{method:<22}{r['fit_s']:>8.1f}{r['predict_s']:>11.2f}{r['peak_mb']:>10.0f}   "
              f"{r['forecast_rows']:,}")
    from safecity.forecast.model import MAX_EVENT_ROWS

    f, n = results["forecaster"], results["seasonal_naive"]
    print(f"\nforecaster fit on {f['n_train']:,} sensor-hours ({f['n_event_rows']:,} of them event and "
          f"holiday hours, the event model on at most {MAX_EVENT_ROWS:,}; ordinary hours "
          f"subsampled to --max-samples {args.max_samples:,})")
    print(f"forecaster fit + predict: {f['fit_s'] + f['predict_s']:.1f} s, "
          f"{(f['fit_s'] + f['predict_s']) / (n['fit_s'] + n['predict_s']):.0f}x the seasonal naive's "
          f"{n['fit_s'] + n['predict_s']:.1f} s")


if __name__ == "__main__":
    main()
