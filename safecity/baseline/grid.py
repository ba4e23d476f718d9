"""The grid the usual level works on: observations as a sensors x bins matrix, and what each bin is in local time.

A bin's slot is (day type, day of week, time of day) in the city's local time;
the day type is normal, school holiday or public holiday, from the calendar.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from safecity.data.counts import check_columns

DAY_TYPES = ("normal", "school_holiday", "public_holiday")
NORMAL, SCHOOL, PUBLIC = 0, 1, 2
#: Values per sensor chunk. Small on purpose: temporaries under malloc's mmap threshold
#: (32 MB) reuse freed memory, while larger ones are fresh pages that the kernel must
#: fault in and zero, which costs more than the arithmetic.
_CHUNK_VALUES = 2_000_000


def to_matrix(X, metric: str | None, step: pd.Timedelta | None = None):
    """A regular UTC grid, sensor ids and values as float32 (sensors x bins), from long or wide input.

    Missing bins are NaN. Rows of one sensor in one bin are summed (counts that
    arrive in pieces). The step is the most common gap between timestamps
    unless given (a model's bin).
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame (observations or wide), got {type(X).__name__}")
    if isinstance(X.index, pd.DatetimeIndex):
        wide = X
        if wide.index.tz is None:
            wide = wide.tz_localize("UTC")
        wide = wide.tz_convert("UTC") if str(wide.index.tz) != "UTC" else wide
        wide = wide.sort_index()
    else:
        check_columns(X, "observations", ("ts", "sensor_id", "value"))
        obs = X
        if metric is not None and "metric" in obs.columns:
            obs = obs[obs["metric"] == metric]
            if obs.empty and len(X):
                raise ValueError(f"observations: no '{metric}' rows (metrics: "
                                 f"{', '.join(map(str, X['metric'].unique()[:10]))})")
        frame = pd.DataFrame({"ts": pd.to_datetime(obs["ts"], utc=True).to_numpy(),
                              "sensor_id": obs["sensor_id"].astype(str).to_numpy(),
                              "value": obs["value"].to_numpy(float)})
        if frame.duplicated(["ts", "sensor_id"]).any():
            # min_count: a bin whose rows are all missing stays missing, not a zero count.
            frame = frame.groupby(["ts", "sensor_id"], as_index=False)["value"].sum(min_count=1)
        wide = frame.pivot(index="ts", columns="sensor_id", values="value")
        wide.index = pd.DatetimeIndex(wide.index).tz_localize("UTC") if wide.index.tz is None else wide.index
    if len(wide.index) == 0:
        raise ValueError("observations: no rows")
    t = wide.index.as_unit("ns").asi8
    if step is None:
        gaps = np.diff(np.unique(t))
        if len(gaps) == 0:
            raise ValueError("observations: one timestamp only; the bin cannot be inferred")
        values, counts = np.unique(gaps, return_counts=True)
        step = pd.Timedelta(int(values[np.argmax(counts)]), "ns")
    if step > pd.Timedelta(days=1) or (pd.Timedelta(days=1) % step) != pd.Timedelta(0):
        raise ValueError(f"the bin ({step}) must divide a day")
    off = (t - t[0]) % step.value
    if off.any():
        bad = wide.index[np.nonzero(off)[0][0]]
        raise ValueError(f"observations: timestamp {bad.isoformat()} is not on the {step} grid "
                         f"starting at {wide.index[0].isoformat()}")
    full = pd.date_range(wide.index[0], wide.index[-1], freq=step, name="ts").as_unit("ns")
    if not wide.index.as_unit("ns").equals(full):
        wide = wide.reindex(full)
    ids = np.asarray(wide.columns.astype(str), dtype=object)
    Y = wide.to_numpy(np.float32).T  # a view when the frame is one float32 block
    return full, ids, Y, step


@dataclass
class Bins:
    """What the model needs to know about each bin of a grid, all in local time."""

    index: pd.DatetimeIndex
    day_type: np.ndarray  # 0 normal, 1 school holiday, 2 public holiday
    dow: np.ndarray  # 0 = Monday
    slot: np.ndarray  # time of day, in bins from local midnight
    hour: np.ndarray  # local hour
    weekend: np.ndarray  # Saturday, Sunday or public holiday: the spread's day class
    day: np.ndarray  # local date as a day number


def bin_facts(index: pd.DatetimeIndex, step: pd.Timedelta, tz: str, calendar: pd.DataFrame) -> Bins:
    from safecity.data.calendars import calendar_flags

    local = index.tz_convert(tz)
    flags = calendar_flags(calendar, index, tz=tz)
    public = flags["public_holiday"].to_numpy() > 0
    school = flags["school_holiday"].to_numpy() > 0
    day_type = np.where(public, PUBLIC, np.where(school, SCHOOL, NORMAL)).astype(np.int8)
    dow = np.asarray(local.day_of_week, np.int8)
    minutes = np.asarray(local.hour, np.int64) * 60 + np.asarray(local.minute, np.int64)
    slot = (minutes * 60 // int(step.total_seconds())).astype(np.int32)
    day = np.asarray(local.tz_localize(None).normalize().asi8 // 86_400_000_000_000, np.int64)
    return Bins(index, day_type, dow, slot, np.asarray(local.hour, np.int8),
                 (dow >= 5) | public, day)


def chunks(n_rows: int, n_cols: int):
    size = max(1, _CHUNK_VALUES // max(n_cols, 1))
    for lo in range(0, n_rows, size):
        yield slice(lo, min(lo + size, n_rows))


@dataclass(frozen=True)
class Departures:
    """Scored bins, what the periods table is made of (arrays are sensors x bins).

    ``observed`` on the original scale (NaN: missing), ``z`` the standardised
    departure (NaN: not scored), ``centre`` and ``scale`` the usual level and
    the noise on the model's transformed scale, ``day_type`` per bin.
    """

    index: pd.DatetimeIndex
    sensor_ids: np.ndarray
    observed: np.ndarray
    z: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    day_type: np.ndarray

    @classmethod
    def concat(cls, parts: list["Departures"]) -> "Departures":
        """Consecutive parts on the same sensors, as one."""
        if len(parts) == 1:
            return parts[0]
        return cls(parts[0].index.append([p.index for p in parts[1:]]), parts[0].sensor_ids,
                   *(np.concatenate([getattr(p, f) for p in parts], axis=1)
                     for f in ("observed", "z", "centre", "scale")),
                   np.concatenate([p.day_type for p in parts]))

    def scores(self) -> pd.DataFrame:
        """``z`` as ``UsualLevel.score_samples`` returns it (bins x sensors)."""
        return pd.DataFrame(self.z.T, index=self.index, columns=pd.Index(self.sensor_ids, name="sensor_id"))
