"""Counts as the estimators read them: one metric as an hourly matrix, zones as sums, sensor positions.

The baselines and the forecaster both start from the ``observations`` table
(ts, sensor_id, metric, value); these helpers shape it the same way for both,
so that a missing hour is missing (never a zero) everywhere.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from safecity.data.schema import validate

OBSERVATION_COLUMNS = ("ts", "sensor_id", "metric", "value")



def hourly_counts(observations: pd.DataFrame, metric: str = "people_count", *,
                  as_is: bool | None = None) -> pd.DataFrame:
    """One metric as a wide frame: a complete hourly UTC index by sensor, NaN where not observed.

    Sub-hourly bins are summed into their hour; an hour with fewer bins than
    the sensor usually has per hour is incomplete and left missing, so a
    half-reported hour never reads as a quiet one. Rows that are all whole
    hours, one per sensor and hour, are read as they are (``as_is``; None:
    decided from these rows, ``hourly_as_is``): a part of a history read on
    its own is given the whole's decision, to be shaped as the whole is.
    """
    check_columns(observations, "observations", OBSERVATION_COLUMNS)
    obs = observations[observations["metric"] == metric]
    if obs.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="ts"), dtype=float)
    ts = pd.DatetimeIndex(pd.to_datetime(obs["ts"], utc=True))
    hour = ts.floor("h")
    sid = obs["sensor_id"].astype(str).to_numpy()
    frame = pd.DataFrame({"ts": hour, "sensor_id": sid, "value": obs["value"].to_numpy(float)})
    if as_is is None:
        as_is = bool((hour == ts).all()) and not frame.duplicated(["ts", "sensor_id"]).any()
    if as_is:
        wide = frame.pivot(index="ts", columns="sensor_id", values="value")
    else:
        g = frame.groupby(["ts", "sensor_id"])["value"].agg(["sum", "count"])
        usual = g["count"].groupby(level="sensor_id").transform(lambda c: c.mode().iloc[-1])
        wide = g.loc[g["count"] >= usual, "sum"].unstack("sensor_id")
    full = pd.date_range(wide.index.min(), wide.index.max(), freq="h", name="ts").as_unit("ns")
    wide = wide.reindex(full)
    wide.columns = wide.columns.astype(str)
    wide.columns.name = "sensor_id"
    return wide.sort_index(axis=1)



def hourly_as_is(observations: pd.DataFrame, metric: str = "people_count") -> bool:
    """Whether ``hourly_counts`` reads these rows as they are: whole hours, one row per sensor and hour."""
    obs = observations[observations["metric"] == metric]
    ts = pd.DatetimeIndex(pd.to_datetime(obs["ts"], utc=True))
    return bool((ts.floor("h") == ts).all()) and \
        not pd.DataFrame({"ts": ts, "sensor_id": obs["sensor_id"].astype(str).to_numpy()}).duplicated().any()



def aggregate_zones(observations: pd.DataFrame, sensors: pd.DataFrame,
                    metric: str = "people_count") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hourly counts per zone, and a sensors-like table of the zones, to forecast zones like sensors.

    A zone's hour is the sum of its sensors, kept only when every sensor of
    the zone that is in service then (between its first and last report)
    reported: a missing sensor would otherwise read as a drop in the crowd.
    Returns ``(observations, zones)``; zones has sensor_id (the zone), lon,
    lat (the mean of its sensors) and zone.
    """
    check_columns(sensors, "sensors", ("sensor_id", "zone"))
    wide = hourly_counts(observations, metric)
    zone_of = sensors.dropna(subset=["zone"]).set_index("sensor_id")["zone"].astype(str)
    cols = [c for c in wide.columns if c in zone_of.index]
    values = wide[cols].to_numpy()
    seen = ~np.isnan(values)
    first = np.argmax(seen, axis=0)
    last = len(values) - 1 - np.argmax(seen[::-1], axis=0)
    rows = np.arange(len(values))[:, None]
    in_service = (rows >= first) & (rows <= last)
    frames = []
    for zone, members in pd.Series(cols).groupby(zone_of.reindex(cols).to_numpy()):
        idx = members.index.to_numpy()
        total = np.nansum(values[:, idx], axis=1)
        complete = ~((in_service[:, idx]) & ~seen[:, idx]).any(axis=1) & in_service[:, idx].any(axis=1)
        frames.append(pd.DataFrame({"ts": wide.index[complete], "sensor_id": str(zone),
                                    "metric": metric, "value": total[complete]}))
    obs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(OBSERVATION_COLUMNS))
    located = sensors.dropna(subset=["zone"]).astype({"zone": str})
    zones = located.groupby("zone", as_index=False)[["lon", "lat"]].mean()
    zones = zones.assign(sensor_id=zones["zone"])[["sensor_id", "lon", "lat", "zone"]]
    return validate(obs, "observations"), zones



def check_columns(df: pd.DataFrame, table: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{table}: missing column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(c) for c in missing)} (has {', '.join(map(str, df.columns))})")



def sensor_positions(sensors: pd.DataFrame | None, sensor_ids: np.ndarray, known_ids=None,
               known_lonlat=None) -> np.ndarray:
    """lon/lat per sensor id (NaN where unknown), from a table or from what fit learned."""
    out = np.full((len(sensor_ids), 2), np.nan)
    if sensors is not None:
        check_columns(sensors, "sensors", ("sensor_id", "lon", "lat"))
        table = sensors.assign(sensor_id=sensors["sensor_id"].astype(str)) \
            .drop_duplicates("sensor_id").set_index("sensor_id")
        return table.reindex(list(sensor_ids))[["lon", "lat"]].to_numpy(float)
    if known_ids is not None:
        index = {s: i for i, s in enumerate(known_ids)}
        for j, s in enumerate(sensor_ids):
            if s in index:
                out[j] = known_lonlat[index[s]]
    return out

