"""Rolling-origin backtest of the gathering forecaster against the two baselines, as an analyst runs it.

The forecaster (``safecity.forecast.model``) and the baselines
(``safecity.forecast.baselines``) are scored on the same points: hours with an
observed count and a forecast from all three.
"""
from __future__ import annotations

import time as _time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import clone

from safecity.data.counts import hourly_counts
from safecity.forecast.baselines import SeasonalNaive, TimeOfWeekProfile
from safecity.forecast.features import WEEK_LAGS
from safecity.forecast.model import GatheringForecaster
from safecity.forecast.table import HOUR, forecast_hours, origin_of



def backtest(observations: pd.DataFrame, calendar: pd.DataFrame | None = None, horizon: str = "24h",
             folds: int = 6, test_days: int = 183, test_start=None,
             estimator: GatheringForecaster | None = None, sensors: pd.DataFrame | None = None,
             progress: Callable[[int], None] | None = None, client=None) -> dict:
    """Rolling-origin backtest of the forecaster against the two baselines; a JSON-ready dict.

    The test period is the last ``test_days`` whole local days of the data
    (or from ``test_start``). An origin is every local midnight in it; each
    forecasts the next ``horizon``. The origins are cut into ``folds``
    contiguous blocks; at the first origin of a block the forecaster (a clone
    of ``estimator`` with this ``horizon``, default ``GatheringForecaster()``) and the
    profile are refitted on the data before it; every origin then forecasts
    from the counts before it only. The seasonal naive uses the week before
    each origin. ``progress(i)`` is called after each fold.

    All methods are scored on the same points: hours with an observed count
    and a forecast from all three. Metrics per method:
    ``mae``; ``mape`` (mean of |error| / count over hours whose count is not
    zero, in %: zero-count hours are left out, not counted as infinite);
    ``wape`` (sum of |error| / sum of counts, in %); ``coverage_80`` (share of
    counts within [q10, q90]); ``n``. The same on the local days touched by
    an ``event`` of the calendar (``event_days``), and per event (``events``).

    With a Dask ``client`` the forecaster of each fold is fitted and forecasts
    on the cluster, on the observations partitioned by sensor
    (``safecity.cluster.forecasts``: each worker holds its sensors' rows
    only): the same metrics, the fitted model being identical. The two
    baselines run here.
    """
    est = GatheringForecaster() if estimator is None else clone(estimator)
    est.set_params(horizon=horizon)  # the horizon under test is the model's
    tz = est.tz
    wide = hourly_counts(observations, est.metric)
    if wide.empty:
        raise ValueError(f"observations: no '{est.metric}' values")
    span = pd.Timedelta(horizon)
    last = wide.index[-1] + HOUR
    days = pd.date_range(wide.index[0].tz_convert(tz).normalize(), last.tz_convert(tz).normalize(),
                         freq="D")
    origins = pd.DatetimeIndex([d.tz_convert("UTC") for d in days])
    origins = origins[origins + span <= last]
    if test_start is not None:
        origins = origins[origins >= origin_of(test_start, None)]
    else:
        origins = origins[-test_days:]
    if len(origins) < folds:
        raise ValueError(f"the test period has {len(origins)} origins, fewer than {folds} folds")
    blocks = np.array_split(np.arange(len(origins)), folds)
    methods = ("forecaster", "seasonal_naive", "time_of_week_profile")
    tables: dict[str, list[pd.DataFrame]] = {m: [] for m in methods}
    fit_s, predict_s = 0.0, 0.0
    fold_origins = [origins[block] for block in blocks]
    if client is None:
        results = []
        for i, block in enumerate(fold_origins):
            results.append(_fold(est, observations, calendar, sensors, block, horizon))
            if progress is not None:
                progress(i + 1)
    else:
        results = _cluster_folds(client, est, observations, calendar, sensors, fold_origins, horizon, progress)
    for fold_tables, fold_fit_s, fold_predict_s in results:
        for m in methods:
            tables[m] += fold_tables[m]
        fit_s += fold_fit_s
        predict_s += fold_predict_s

    actual = wide.stack().dropna().rename("actual").reset_index()
    actual["sensor_id"] = actual["sensor_id"].astype(str)
    keys = ["origin", "ts", "sensor_id"]
    scored = None
    for m in methods:
        f = pd.concat(tables[m], ignore_index=True)[keys + ["q10", "q50", "q90"]]
        f = f.rename(columns={"q10": f"{m}_q10", "q50": f"{m}_q50", "q90": f"{m}_q90"})
        scored = f if scored is None else scored.merge(f, on=keys, how="inner")
    scored = scored.merge(actual, on=["ts", "sensor_id"], how="inner")

    event_rows = _event_rows(calendar, tz)
    local_day = scored["ts"].dt.tz_convert(tz).dt.normalize().dt.tz_localize(None)
    on_event_day = local_day.isin(set(event_rows["day"])) if len(event_rows) else \
        pd.Series(False, index=scored.index)
    result = {
        "horizon": str(horizon), "folds": int(folds), "origins": int(len(origins)), "tz": tz,
        "test_start": origins[0].isoformat(), "test_end": (origins[-1] + span).isoformat(),
        "n": int(len(scored)),
        "methods": {m: _scores(scored, m) for m in methods},
    }
    result["mae_ratio_to_seasonal_naive"] = _ratio(result["methods"]["forecaster"]["mae"],
                                                   result["methods"]["seasonal_naive"]["mae"])
    result["coverage_80"] = result["methods"]["forecaster"]["coverage_80"]
    result["event_days"] = {
        "days": sorted({d.date().isoformat() for d in local_day[on_event_day]}),
        "n": int(on_event_day.sum()),
        "methods": {m: _scores(scored[on_event_day.to_numpy()], m) for m in methods},
    }
    per_event = []
    for name, group in event_rows.groupby(["name", "start"], sort=True):
        mask = local_day.isin(set(group["day"])).to_numpy()
        if mask.any():
            per_event.append({"name": name[0], "start": name[1].isoformat(),
                              "days": sorted(d.date().isoformat() for d in group["day"]),
                              "n": int(mask.sum()),
                              "mae": {m: _scores(scored[mask], m)["mae"] for m in methods}})
    result["events"] = per_event
    result["seconds"] = {"fit": round(fit_s, 2), "predict_forecaster": round(predict_s, 2)}
    return result



def _fold(est, observations: pd.DataFrame, calendar, sensors, origins: pd.DatetimeIndex, horizon: str):
    """One fold: fit on the data before its first origin, forecast from each origin; (tables, fit s, predict s)."""
    ts_obs = pd.to_datetime(observations["ts"], utc=True)
    fold_start = origins[0]
    past = observations[ts_obs < fold_start]
    t0 = _time.perf_counter()
    model = clone(est).fit(past, calendar=calendar, sensors=sensors)
    fit_s = _time.perf_counter() - t0
    recent = _recent(observations, ts_obs, origins)
    tables: dict[str, list[pd.DataFrame]] = {"forecaster": []}
    predict_s = 0.0
    for origin in origins:
        t0 = _time.perf_counter()
        tables["forecaster"].append(model.predict(forecast_hours(origin, horizon), observations=recent))
        predict_s += _time.perf_counter() - t0
    tables.update(_baseline_tables(est, past, recent, origins, horizon))
    return tables, fit_s, predict_s


def _recent(observations: pd.DataFrame, ts_obs: pd.Series, origins: pd.DatetimeIndex) -> pd.DataFrame:
    """The rows the fold's forecasts read: from the lags of its first origin to its last origin."""
    return observations[(ts_obs >= origins[0] - pd.Timedelta(days=WEEK_LAGS[-1] + 2)) & (ts_obs < origins[-1])]


def _baseline_tables(est, past: pd.DataFrame, recent: pd.DataFrame, origins: pd.DatetimeIndex,
                     horizon: str) -> dict[str, list[pd.DataFrame]]:
    """The two baselines' forecasts from each origin, fitted on ``past``."""
    naive = SeasonalNaive(tz=est.tz, metric=est.metric).fit(past)
    profile = TimeOfWeekProfile(tz=est.tz, metric=est.metric).fit(past)
    tables: dict[str, list[pd.DataFrame]] = {"seasonal_naive": [], "time_of_week_profile": []}
    for origin in origins:
        hours = forecast_hours(origin, horizon)
        tables["seasonal_naive"].append(naive.predict(hours, observations=recent))
        tables["time_of_week_profile"].append(profile.predict(hours))
    return tables


def _cluster_folds(client, est, observations: pd.DataFrame, calendar, sensors, fold_origins, horizon: str,
                   progress) -> list:
    """The folds on a cluster: the forecaster on the observations cut into one block of sensors per worker,
    fitted and forecasting there (``safecity.cluster.forecasts``); the baselines here."""
    from safecity.cluster import forecasts

    frame = forecasts.scatter_by_sensor(client, observations, est.metric)
    ts_obs = pd.to_datetime(observations["ts"], utc=True)
    results = []
    for i, origins in enumerate(fold_origins):
        t0 = _time.perf_counter()
        fitted = forecasts.fit(client, frame, est, calendar=calendar, sensors=sensors, until=origins[0])
        fit_s = _time.perf_counter() - t0
        t0 = _time.perf_counter()
        tables = {"forecaster": forecasts.predict(client, fitted, frame,
                                                  [forecast_hours(o, horizon) for o in origins])}
        predict_s = _time.perf_counter() - t0
        tables.update(_baseline_tables(est, observations[ts_obs < origins[0]], _recent(observations, ts_obs, origins),
                                       origins, horizon))
        results.append((tables, fit_s, predict_s))
        if progress is not None:
            progress(i + 1)
    return results


def _event_rows(calendar: pd.DataFrame | None, tz: str) -> pd.DataFrame:
    """One row per (event, local day it touches)."""
    if calendar is None or calendar.empty:
        return pd.DataFrame(columns=["name", "start", "day"])
    ev = calendar[calendar["kind"] == "event"]
    rows = []
    for row in ev.itertuples(index=False):
        first = row.start.tz_convert(tz).normalize().tz_localize(None)
        last = (max(row.end, row.start + pd.Timedelta(seconds=1)) - pd.Timedelta(seconds=1)) \
            .tz_convert(tz).normalize().tz_localize(None)
        for day in pd.date_range(first, last, freq="D"):
            rows.append({"name": row.name, "start": row.start, "day": day})
    return pd.DataFrame(rows, columns=["name", "start", "day"])



def _scores(scored: pd.DataFrame, method: str) -> dict:
    y = scored["actual"].to_numpy(float)
    p = scored[f"{method}_q50"].to_numpy(float)
    lo, hi = scored[f"{method}_q10"].to_numpy(float), scored[f"{method}_q90"].to_numpy(float)
    if len(y) == 0:
        return {"mae": None, "mape": None, "wape": None, "coverage_80": None, "n": 0}
    err = np.abs(y - p)
    nz = y > 0
    return {
        "mae": round(float(err.mean()), 3),
        "mape": round(float(100 * (err[nz] / y[nz]).mean()), 2) if nz.any() else None,
        "wape": round(float(100 * err.sum() / y.sum()), 2) if y.sum() > 0 else None,
        "coverage_80": round(float(((y >= lo) & (y <= hi)).mean()), 4),
        "n": int(len(y)),
    }



def _ratio(a, b):
    return None if a is None or not b else round(a / b, 4)

