"""The forecast table every method returns, and the frame of hours a forecast is asked for.

One row per sensor and hour:
    ts (UTC start of the hour), sensor_id, metric, origin (when the forecast
    was issued: it uses no observation at or after it), and one column per
    quantile, named ``q`` + the percentile: ``q10``, ``q50``, ``q90`` (``q2.5``
    for 0.025). Quantile columns never cross (they are sorted per row).

Every forecaster's ``predict(X)`` reads ``X``, the hours to forecast: a frame
with a ``ts`` column (consecutive UTC hours; the first is the origin) and,
optionally, ``sensor_id`` to ask for some sensors only. ``forecast_hours``
builds it from a start and a horizon.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from safecity.data.counts import OBSERVATION_COLUMNS, check_columns, hourly_counts

QUANTILES = (0.1, 0.5, 0.9)


HOUR = pd.Timedelta(hours=1)



def history_before(observations: pd.DataFrame | None, fallback: pd.DataFrame | None, origin: pd.Timestamp,
                 days: int, metric: str) -> pd.DataFrame:
    """The hourly history strictly before ``origin`` (the last ``days`` days)."""
    if observations is None:
        wide = fallback if fallback is not None else pd.DataFrame()
    else:
        check_columns(observations, "observations", OBSERVATION_COLUMNS)
        ts = pd.to_datetime(observations["ts"], utc=True)
        keep = (ts < origin) & (ts >= origin - pd.Timedelta(days=days + 1))
        wide = hourly_counts(observations[keep], metric)
    if len(wide):
        wide = wide[(wide.index < origin) & (wide.index >= origin - pd.Timedelta(days=days + 1))]
    return wide



def hour_grid(start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    return pd.date_range(start, end, freq="h", inclusive="left", name="ts").as_unit("ns")



def origin_of(start, default: pd.Timestamp | None) -> pd.Timestamp:
    if start is None:
        if default is None:
            raise ValueError("give start: the estimator has no history to start after")
        return default
    t = pd.Timestamp(start)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.ceil("h")



def quantile_name(q: float) -> str:
    return f"q{100 * q:g}"



def check_quantiles(quantiles) -> tuple[float, ...]:
    qs = tuple(float(q) for q in quantiles)
    if not qs or any(not 0 < q < 1 for q in qs):
        raise ValueError(f"quantiles must be in (0, 1), got {quantiles!r}")
    return qs



def forecast_table(grid: pd.DatetimeIndex, rows: np.ndarray, sensor_ids: np.ndarray, cols: np.ndarray,
           metric: str, origin: pd.Timestamp, quantiles: tuple[float, ...],
           values: np.ndarray) -> pd.DataFrame:
    """The forecast table from per-point quantile values (points x quantiles), sorted per row."""
    order = np.argsort(quantiles)
    values = np.clip(values, 0, None)
    values[:, order] = np.sort(values[:, order], axis=1)  # quantiles never cross
    out = pd.DataFrame({"ts": grid[rows], "sensor_id": np.asarray(sensor_ids, dtype=object)[cols],
                        "metric": metric, "origin": origin})
    for j, q in enumerate(quantiles):
        out[quantile_name(q)] = values[:, j]
    return out.sort_values(["ts", "sensor_id"], ignore_index=True)



def empty_forecast(quantiles) -> pd.DataFrame:
    cols = {"ts": pd.Series(dtype="datetime64[ns, UTC]"), "sensor_id": pd.Series(dtype=object),
            "metric": pd.Series(dtype=object), "origin": pd.Series(dtype="datetime64[ns, UTC]")}
    cols.update({quantile_name(q): pd.Series(dtype=float) for q in quantiles})
    return pd.DataFrame(cols)


def forecast_hours(start, horizon: str = "24h", sensor_ids=None) -> pd.DataFrame:
    """``X`` for a forecaster's ``predict``: the hours of ``[start, start + horizon)``.

    ``start`` is rounded up to the hour (naive times are UTC): it is the
    forecast's origin. With ``sensor_ids`` the frame has one row per hour and
    sensor, and only those sensors are forecast; without, every sensor is.
    """
    origin = origin_of(start, None)
    grid = hour_grid(origin, origin + pd.Timedelta(horizon))
    if sensor_ids is None:
        return pd.DataFrame({"ts": grid})
    ids = np.asarray([str(s) for s in sensor_ids], dtype=object)
    return pd.DataFrame({"ts": np.repeat(grid, len(ids)), "sensor_id": np.tile(ids, len(grid))})


def asked_hours(X: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timedelta]:
    """The origin (first hour) and the span (to the end of the last hour) that ``X`` asks for."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X: expected a frame of hours to forecast (forecast_hours), got {type(X).__name__}")
    check_columns(X, "X", ("ts",))
    if X.empty:
        raise ValueError("X: no hours to forecast")
    ts = pd.DatetimeIndex(pd.to_datetime(X["ts"], utc=True))
    if (ts != ts.floor("h")).any():
        raise ValueError("X: ts must be whole hours (forecast_hours rounds a start up to the hour)")
    origin = ts.min()
    return origin, ts.max() + HOUR - origin


def keep_asked(table: pd.DataFrame, X: pd.DataFrame) -> pd.DataFrame:
    """The rows of a forecast table that ``X`` asks for: its hours, and its sensors when it names them."""
    ts = pd.DatetimeIndex(pd.to_datetime(X["ts"], utc=True)).as_unit("ns")
    keep = table["ts"].isin(ts).to_numpy().copy()
    if "sensor_id" in X.columns:
        asked = pd.MultiIndex.from_arrays([ts, X["sensor_id"].astype(str)])
        keep &= pd.MultiIndex.from_arrays([table["ts"], table["sensor_id"].astype(str)]).isin(asked)
    return table if keep.all() else table[keep].reset_index(drop=True)
