"""Dwell time: how long people stay in each camera zone, per time bin and per hour.

The pipeline knows, for every track, when it entered a zone and when it left
(seen outside it, or unseen for a few seconds, or the source ended). Each stay
is counted in the bin in which it ended, and only the bin's summary is stored,
as ``observations`` of the zone's sensor ``"{camera}:{zone}"``:

- ``dwell_count``: stays that ended in the bin (0 when none did);
- ``dwell_mean_s`` and ``dwell_max_s``: their mean and longest, in seconds
  (only when some stay ended).

No per-track row is kept: a track's entries and exits, stored for months,
would be one person's movements; a per-bin summary is not (privacy by design).
``dwell_times`` reads the summaries back per camera, zone and hour.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: The observations' metrics of dwell time (``BinFeatures`` writes them).
DWELL_METRICS = ("dwell_count", "dwell_mean_s", "dwell_max_s")


def dwell_times(observations: pd.DataFrame, camera: str | None = None, zone: str | None = None,
                start=None, end=None, freq: str = "1h") -> pd.DataFrame:
    """Dwell statistics per camera, zone and ``freq`` period (UTC) from ``observations`` rows.

    Columns: ``camera``, ``zone``, ``ts`` (the period's start), ``stays`` (ended in the
    period), ``mean_s`` (over those stays, weighted by each bin's count) and ``max_s``.
    ``start`` (inclusive) and ``end`` (exclusive) bound the bins' times.
    """
    rows = _select(observations, DWELL_METRICS, camera, zone, start, end)
    columns = {"camera": object, "zone": object, "ts": "datetime64[ns, UTC]", "stays": int,
               "mean_s": float, "max_s": float}
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    rows = _split(rows, "zone")
    bins = rows.pivot_table(index=["camera", "zone", "ts"], columns="metric", values="value",
                            aggfunc="first").reindex(columns=list(DWELL_METRICS))
    bins = bins.reset_index()
    bins["dwell_count"] = bins["dwell_count"].fillna(0.0)
    bins["total"] = bins["dwell_mean_s"].fillna(0.0) * bins["dwell_count"]
    bins["ts"] = bins["ts"].dt.floor(freq)
    out = bins.groupby(["camera", "zone", "ts"], as_index=False).agg(
        stays=("dwell_count", "sum"), total=("total", "sum"), max_s=("dwell_max_s", "max"))
    out["mean_s"] = np.where(out["stays"] > 0, out["total"] / out["stays"].where(out["stays"] > 0), np.nan)
    out["stays"] = out["stays"].round().astype(int)
    return out[list(columns)]


def _select(observations: pd.DataFrame, metrics, camera, place, start, end) -> pd.DataFrame:
    """The rows of ``metrics``, of one camera and place if asked, within [start, end)."""
    rows = observations[observations["metric"].isin(metrics)]
    if camera is not None:
        rows = rows[rows["sensor_id"].str.startswith(f"{camera}:")]
    if place is not None:
        rows = rows[rows["sensor_id"].str.endswith(f":{place}")]
    if start is not None:
        rows = rows[rows["ts"] >= _utc(start)]
    if end is not None:
        rows = rows[rows["ts"] < _utc(end)]
    return rows.copy()


def _split(rows: pd.DataFrame, place: str) -> pd.DataFrame:
    """``sensor_id`` ``"camera:place"`` as two columns (a camera id may hold ':', a place name not last)."""
    parts = rows["sensor_id"].str.rsplit(":", n=1, expand=True)
    rows["camera"], rows[place] = parts[0], parts[1]
    return rows


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
