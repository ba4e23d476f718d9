"""Gathering alerts: the upper forecast above a zone's capacity, early enough to plan, as events."""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from safecity.data.counts import check_columns
from safecity.data.schema import validate
from safecity.forecast.table import HOUR

SOURCE = "safecity.forecast"



def gathering_alerts(forecast: pd.DataFrame, threshold, now=None, lead_time: str = "6h",
                     upper: str = "q90", sensors: pd.DataFrame | None = None) -> pd.DataFrame:
    """``gathering_forecast`` events where the upper forecast of a sensor or zone crosses its threshold.

    ``threshold``: one number for all, or a mapping / Series from sensor_id
    (or zone) to its capacity or the analyst's threshold (others get no alert).
    Only hours at least ``lead_time`` after ``now`` count: an alert is useful
    when there is still time to plan, so a crowd expected sooner is left to
    the live detectors. ``now`` defaults to the forecast's origin (the data
    carries its own time; no clock is read). Each contiguous run of hours
    above the threshold gives one event: ts is the hour where ``upper`` peaks,
    score is ``upper / threshold`` there, details hold the expected peak (the
    median) and its interval at that hour, the run's start and end, the
    threshold and the lead time in hours. ``sensors`` (sensor_id, lon, lat)
    places the events.
    """
    from safecity.data.schema import empty

    check_columns(forecast, "forecast", ("ts", "sensor_id", upper))
    if forecast.empty:
        return empty("events")
    table = forecast.copy()
    table["ts"] = pd.to_datetime(table["ts"], utc=True)
    if now is None:
        if "origin" not in table:
            raise ValueError("give now: the forecast has no origin column")
        now = pd.to_datetime(table["origin"], utc=True).max()
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    lead = pd.Timedelta(lead_time)
    if isinstance(threshold, (Mapping, pd.Series)):
        limits = pd.Series(threshold, dtype=float)
        limits.index = limits.index.astype(str)
        table["threshold"] = table["sensor_id"].astype(str).map(limits)
    else:
        table["threshold"] = float(threshold)
    table = table[(table["ts"] >= now + lead) & table["threshold"].notna()]
    table = table.sort_values(["sensor_id", "ts"])
    lonlat = None
    if sensors is not None:
        lonlat = sensors.assign(sensor_id=sensors["sensor_id"].astype(str)) \
            .drop_duplicates("sensor_id").set_index("sensor_id")[["lon", "lat"]]
    mid = "q50" if "q50" in table else upper
    lo = "q10" if "q10" in table else None
    rows = []
    for sid, g in table.groupby("sensor_id", sort=True):
        over = (g[upper] > g["threshold"]).to_numpy()
        if not over.any():
            continue
        step = g["ts"].diff().ne(HOUR).to_numpy()  # a gap in the hours breaks a run
        run_id = np.cumsum(step | np.r_[True, over[1:] != over[:-1]])
        for _, run in g[over].groupby(run_id[over]):
            peak = run.loc[run[upper].idxmax()]
            limit = float(peak["threshold"])
            details = {
                "metric": str(peak["metric"]) if "metric" in run else None,
                "issued_at": now.isoformat(), "peak_time": peak["ts"].isoformat(),
                "expected_peak": round(float(peak[mid]), 1),
                "interval": {k: round(float(peak[k]), 1) for k in (lo, mid, upper) if k},
                "upper_quantile": upper, "threshold": limit,
                "start": run["ts"].min().isoformat(), "end": (run["ts"].max() + HOUR).isoformat(),
                "lead_time_h": round((peak["ts"] - now) / HOUR, 2),
                "min_lead_time_h": round(lead / HOUR, 2),
            }
            lon = lat = np.nan
            if lonlat is not None and str(sid) in lonlat.index:
                lon, lat = lonlat.loc[str(sid), ["lon", "lat"]].astype(float)
            rows.append({
                "event_id": f"gathering_forecast-{sid}-{peak['ts']:%Y%m%dT%H%MZ}-at-{now:%Y%m%dT%H%MZ}",
                "ts": peak["ts"], "kind": "gathering_forecast", "sensor_id": str(sid),
                "lon": lon, "lat": lat, "score": round(float(peak[upper]) / limit, 3) if limit else np.inf,
                "source": SOURCE, "details": json.dumps(details, ensure_ascii=False)})
    if not rows:
        return empty("events")
    return validate(pd.DataFrame(rows).sort_values(["ts", "sensor_id"], ignore_index=True), "events")

