"""Local time and the calendar as the estimators use them: wall-clock lags, holidays, event windows.

Both the usual-level baseline and the forecaster compare an hour with the
same local hour days before, and both read the analyst's calendar with the
public and school holidays added; these helpers are that shared ground.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Options

from safecity.data.schema import validate

#: Hours before an event's start and after its end when its crowd is on the streets.
EVENT_BEFORE_H, EVENT_AFTER_H = 3.0, 2.0

#: Holidays are looked up once in fit for this long after the history.
HOLIDAYS_AHEAD_DAYS = 400



def shift_positions(grid: pd.DatetimeIndex, tz: str, days: int) -> np.ndarray:
    """For each hour of ``grid``, the position of the same local wall-clock hour ``days`` before (-1: outside)."""
    local = grid.tz_convert(tz).tz_localize(None) - pd.Timedelta(days=days)
    back = local.tz_localize(tz, ambiguous=np.ones(len(local), bool), nonexistent="shift_forward")
    return grid.get_indexer(back.tz_convert("UTC"))



def with_holidays(calendar: pd.DataFrame | None, start: pd.Timestamp, end: pd.Timestamp, tz: str,
                   country: str | None, subdiv: str | None, school_zone: str | None) -> pd.DataFrame:
    """The analyst's calendar plus the public and school holidays of ``[start, end)``."""
    from safecity.data import calendars as cal

    frames = [] if calendar is None else [validate(calendar, "calendar")]
    if country:
        frames.append(cal.public_holidays(start, end, country=country, subdiv=subdiv, tz=tz))
    if school_zone:
        frames.append(cal.school_holidays(start, end, zone=school_zone, tz=tz))
    frames = [f for f in frames if len(f)]
    if not frames:
        from safecity.data.schema import empty
        return empty("calendar")
    both = pd.concat(frames, ignore_index=True).drop_duplicates("calendar_id")
    return validate(both, "calendar")


# --------------------------------------------------------------------------- parameter constraints
# scikit-learn validates an estimator's ``_parameter_constraints`` but knows no
# durations or time zones, and accepts only its own constraint classes: these
# two extend ``Options`` (a set of allowed values) with their own test.


class Duration(Options):
    """A pandas duration text ("1h", "7D") between ``shortest`` and ``longest``, as an estimator parameter."""

    def __init__(self, shortest: str | None = None, longest: str | None = None):
        super().__init__(str, set())
        self.shortest = None if shortest is None else pd.Timedelta(shortest)
        self.longest = None if longest is None else pd.Timedelta(longest)

    def is_satisfied_by(self, val) -> bool:
        if not isinstance(val, str):
            return False
        try:
            span = pd.Timedelta(val)
        except ValueError:
            return False
        return ((self.shortest is None or span >= self.shortest)
                and (self.longest is None or span <= self.longest))

    def __str__(self) -> str:
        bounds = [f"at least {self.shortest}" if self.shortest is not None else "",
                  f"at most {self.longest}" if self.longest is not None else ""]
        return "a duration like '24h' or '7D'" + (f" ({', '.join(b for b in bounds if b)})" if any(bounds) else "")


class TimeZone(Options):
    """An IANA time zone name ("Europe/Paris", "Australia/Melbourne"), as an estimator parameter."""

    def __init__(self):
        super().__init__(str, set())

    def is_satisfied_by(self, val) -> bool:
        if not isinstance(val, str):
            return False
        try:
            ZoneInfo(val)
        except (ZoneInfoNotFoundError, ValueError):
            return False
        return True

    def __str__(self) -> str:
        return "a time zone name like 'Europe/Paris'"
