"""The data model: the tidy tables that every part of safecity reads and writes.

Every module exchanges plain pandas DataFrames in one of the shapes below, so a
detector, a forecaster, the store and a dashboard never need adapters between
them. Times are timezone-aware UTC timestamps; positions are WGS84 lon/lat;
free-form extras go in ``metadata`` / ``details`` as a JSON object string so
that the tables stay flat and Parquet-friendly.

Tables
------
``sensors``       one row per device.
    sensor_id, kind (see ``SENSOR_KINDS``), lon, lat, zone, metadata
``observations``  one row per measurement (long format).
    ts, sensor_id, metric (see ``METRICS``, others allowed), value
``events``        one row per detection or report.
    event_id, ts, kind (see ``EVENT_KINDS``), sensor_id, lon, lat, score,
    source, details
``incidents``     one row per fused incident (operational state).
    incident_id, ts, kind, priority (1 = most urgent .. 5), confidence (0..1),
    status (see ``INCIDENT_STATUSES``), lon, lat, summary, event_ids (JSON list)
``verdicts``      one row per reviewed alarm (operational state): an operator's
    latest verdict on an event or an incident, the alarm's kind, sensor and
    time copied so the ledger outlives the alarm's retention.
    alarm_id, alarm_type (event | incident), kind, sensor_id, alarm_ts, score,
    verdict (see ``VERDICTS``), reason (see ``FALSE_ALARM_REASONS``), actor, ts
``units``         one row per unit position report (AVL); the latest row of a
    unit is its current state.
    unit_id, kind (see ``UNIT_KINDS``), status (see ``UNIT_STATUSES``), lon,
    lat, ts, station
``calendar``      one row per dated happening that changes how the city moves.
    calendar_id, kind (see ``CALENDAR_KINDS``), name, start, end, location,
    lon, lat, expected_attendance

``validate(df, table)`` checks a frame against its schema, coerces dtypes, and
raises ``SchemaError`` naming the table, the column and the offending rows.
"""
from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from safecity.config.event_kinds import DESCRIPTIONS

SENSOR_KINDS = ("camera", "counter", "gunshot_detector", "panic_button", "drone")
UNIT_KINDS = ("police", "fire", "ambulance")
UNIT_STATUSES = (
    "available", "dispatched", "en_route", "on_scene", "returning", "out_of_service",
)
#: "acknowledged": an operator has seen it (a new priority 1 or 2 incident stands out until then).
INCIDENT_STATUSES = ("open", "acknowledged", "dispatched", "closed", "merged")
#: What an operator says of an alarm; a false alarm comes with one of the reasons below.
VERDICTS = ("confirmed", "false_alarm", "unsure")
FALSE_ALARM_REASONS = ("reflection_lighting", "shadow", "crowd_occlusion", "wrong_zone", "duplicate",
                       "other")
ALARM_TYPES = ("event", "incident")
CALENDAR_KINDS = ("event", "school_holiday", "public_holiday", "roadworks")

#: Usual ``observations.metric`` values; other names are allowed (for example
#: ``flow_dir_0`` .. ``flow_dir_7`` for a flow-direction histogram).
METRICS = {
    "people_count": "people counted in the bin (camera or counter)",
    "occupancy": "share of the zone's area covered by people, 0..1",
    "mean_speed": "mean ground speed of tracks, m/s",
    "density": "people per square metre",
    "dwell_count": "stays in a camera zone that ended in the bin",
    "dwell_mean_s": "mean seconds of those stays",
    "dwell_max_s": "longest of those stays, seconds",
    "line_in": "people crossing a camera's counting line in its 'in' direction",
    "line_out": "people crossing it the other way",
}

#: Bounds (low, high; None: unbounded) of the metrics that cannot be negative:
#: a negative count or density is a broken sensor or a typo, never a measurement.
METRIC_RANGES = {
    "people_count": (0, None), "occupancy": (0, 1), "mean_speed": (0, None), "density": (0, None),
    "dwell_count": (0, None), "dwell_mean_s": (0, None), "dwell_max_s": (0, None),
    "line_in": (0, None), "line_out": (0, None),
}
#: Prefixes of metric families with the same bounds (a flow-direction histogram counts tracks).
METRIC_PREFIX_RANGES = {"flow_dir_": (0, None)}


def metric_range(metric: str) -> tuple | None:
    """The (low, high) bounds of ``metric``, or None when any finite value is allowed."""
    if metric in METRIC_RANGES:
        return METRIC_RANGES[metric]
    return next((r for p, r in METRIC_PREFIX_RANGES.items() if metric.startswith(p)), None)

#: The one event taxonomy (declared in ``safecity.config.event_kinds``): kind -> description.
EVENT_KINDS = DESCRIPTIONS

# ---------------------------------------------------------------------------

_UTC = pd.DatetimeTZDtype("ns", "UTC")


def _ts(nullable: bool = False) -> pa.Column:
    return pa.Column(_UTC, nullable=nullable, coerce=True)


def _text(nullable: bool = False, isin=None, unique: bool = False) -> pa.Column:
    checks = [pa.Check.isin(list(isin))] if isin is not None else []
    return pa.Column(str, checks=checks, nullable=nullable, unique=unique, coerce=True)


def _num(nullable: bool = False, lo=None, hi=None, dtype=float) -> pa.Column:
    checks = []
    if lo is not None and hi is not None:
        checks.append(pa.Check.in_range(lo, hi))
    elif lo is not None:
        checks.append(pa.Check.ge(lo))
    return pa.Column(dtype, checks=checks, nullable=nullable, coerce=True)


def _lon(nullable=False):
    return _num(nullable, -180, 180)


def _lat(nullable=False):
    return _num(nullable, -90, 90)


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "sensors": pa.DataFrameSchema({
        "sensor_id": _text(unique=True),
        "kind": _text(isin=SENSOR_KINDS),
        "lon": _lon(), "lat": _lat(),
        "zone": _text(nullable=True),
        "metadata": _text(nullable=True),
    }),
    "observations": pa.DataFrameSchema({
        "ts": _ts(),
        "sensor_id": _text(),
        "metric": _text(),
        "value": pa.Column(float, pa.Check(lambda s: pd.Series(s).abs() < float("inf"),
                                           element_wise=False, name="finite"),
                           coerce=True),
    }),
    "events": pa.DataFrameSchema({
        "event_id": _text(unique=True),
        "ts": _ts(),
        "kind": _text(isin=EVENT_KINDS),
        "sensor_id": _text(nullable=True),
        "lon": _lon(True), "lat": _lat(True),
        "score": _num(True),
        "source": _text(),
        "details": _text(nullable=True),
    }),
    "incidents": pa.DataFrameSchema({
        "incident_id": _text(unique=True),
        "ts": _ts(),
        "kind": _text(),
        "priority": _num(lo=1, hi=5, dtype="int64"),
        "confidence": _num(lo=0, hi=1),
        "status": _text(isin=INCIDENT_STATUSES),
        "lon": _lon(True), "lat": _lat(True),
        "summary": _text(),
        "event_ids": _text(),
    }),
    "verdicts": pa.DataFrameSchema({
        "alarm_id": _text(unique=True),
        "alarm_type": _text(isin=ALARM_TYPES),
        "kind": _text(),
        "sensor_id": _text(nullable=True),
        "alarm_ts": _ts(),
        "score": _num(True),
        "verdict": _text(isin=VERDICTS),
        "reason": _text(nullable=True, isin=FALSE_ALARM_REASONS),
        "actor": _text(),
        "ts": _ts(),
    }),
    "units": pa.DataFrameSchema({
        "unit_id": _text(),
        "kind": _text(isin=UNIT_KINDS),
        "status": _text(isin=UNIT_STATUSES),
        "lon": _lon(), "lat": _lat(),
        "ts": _ts(),
        "station": _text(nullable=True),
    }),
    "calendar": pa.DataFrameSchema({
        "calendar_id": _text(unique=True),
        "kind": _text(isin=CALENDAR_KINDS),
        "name": _text(),
        "start": _ts(),
        "end": _ts(),
        "location": _text(nullable=True),
        "lon": _lon(True), "lat": _lat(True),
        "expected_attendance": _num(True, lo=0),
    }),
}

TABLES = tuple(SCHEMAS)


class SchemaError(ValueError):
    """A table does not match the data model; the message names table, column, rows."""

    def __init__(self, table: str, problems: list[str]):
        self.table = table
        self.problems = problems
        super().__init__(f"table '{table}' is invalid:\n  " + "\n  ".join(problems))


def columns(table: str) -> list[str]:
    """The column names of ``table`` in their documented order."""
    return list(_schema(table).columns)


def empty(table: str) -> pd.DataFrame:
    """A zero-row frame of ``table`` with the right dtypes."""
    return validate(pd.DataFrame({c: [] for c in columns(table)}), table)


def validate(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Check ``df`` against the schema of ``table``; return it coerced and ordered.

    Raises ``SchemaError`` listing, for each problem, the column, the check that
    failed and the row labels (first ten) with their values.
    """
    schema = _schema(table)
    missing = [c for c in schema.columns if c not in df.columns]
    if missing:
        raise SchemaError(table, [f"column '{c}': missing" for c in missing])
    df, problems = _parse_times(df[list(schema.columns)], schema)
    if problems:
        raise SchemaError(table, problems)
    try:
        out = schema.validate(df, lazy=True)
    except SchemaErrors as err:
        raise SchemaError(table, _describe(err.failure_cases)) from None
    if table == "calendar":
        bad = out.index[out["end"] < out["start"]].tolist()
        if bad:
            raise SchemaError(table, [f"column 'end' is before 'start' at rows {bad[:10]}"])
    if table == "observations":
        problems = _metric_problems(out)
        if problems:
            raise SchemaError(table, problems)
    return out.reset_index(drop=True)


def _metric_problems(obs: pd.DataFrame) -> list[str]:
    problems = []
    for metric in obs["metric"].unique():
        bounds = metric_range(metric)
        if bounds is None:
            continue
        lo, hi = bounds
        value = obs["value"][obs["metric"] == metric]
        bad = value[(value < lo) | ((value > hi) if hi is not None else False)]
        if len(bad):
            want = f">= {lo}" if hi is None else f"between {lo} and {hi}"
            problems.append(f"column 'value' of metric '{metric}' must be {want} at rows "
                            f"{_rows(bad)}")
    return problems


def _rows(values: pd.Series) -> str:
    """'3 (-1.0), 7 (-2.0) and 4 more': the row labels and values of the first ten."""
    shown = ", ".join(f"{r} ({_py(v)!r})" for r, v in list(values.items())[:10])
    return shown + (f" and {len(values) - 10} more" if len(values) > 10 else "")


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def _schema(table: str) -> pa.DataFrameSchema:
    try:
        return SCHEMAS[table]
    except KeyError:
        raise KeyError(f"unknown table '{table}'; the data model has {', '.join(SCHEMAS)}") from None


def _parse_times(df: pd.DataFrame, schema: pa.DataFrameSchema):
    """Parse timestamp columns leniently (mixed ISO forms), naming rows that do not parse."""
    problems, parsed = [], {}
    for c, col in schema.columns.items():
        if col.dtype is None or "datetime" not in str(col.dtype) or \
                isinstance(df[c].dtype, pd.DatetimeTZDtype):
            continue
        parsed[c], problem = _parse_time_column(df[c], c)
        problems += [problem] if problem else []
    return df.assign(**parsed), problems


def timestamps(values: pd.Series, table: str, column: str = "ts") -> pd.Series:
    """``values`` as UTC timestamps, by the rules of ``validate``; else ``SchemaError``."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    parsed, problem = _parse_time_column(values, column)
    if problem:
        raise SchemaError(table, [problem])
    return parsed


def _parse_time_column(values: pd.Series, c: str):
    """(parsed values, problem or None) of one column.

    Numbers are refused, not read as epochs: whether 1717200000 is seconds,
    milliseconds or nanoseconds is a guess, and pandas' guess (nanoseconds)
    silently files the row in 1970.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        is_number = pd.Series(False, index=values.index)  # already times (naive: taken as UTC)
    elif pd.api.types.is_numeric_dtype(values.dtype):
        is_number = values.notna()
    else:
        is_number = values.map(lambda v: isinstance(v, numbers.Number) and not pd.isna(v)).astype(bool)
    if is_number.any():
        return values, (f"column '{c}' holds numbers, not timestamps, at rows "
                        f"{_rows(values[is_number])} (the unit of an epoch number is a guess: "
                        "write ISO 8601, e.g. 2026-06-01T10:00Z)")
    parsed = pd.to_datetime(values, utc=True, format="mixed", errors="coerce")
    bad = values.index[parsed.isna() & values.notna()].tolist()
    if bad:
        shown = ", ".join(f"{r} ({values[r]!r})" for r in bad[:10])
        return parsed, f"column '{c}' is not a timestamp at rows {shown}"
    return parsed, None


def _row_label(label) -> str:
    """A row's position as a number when the index is numbered, else the label itself (a frame
    from a library caller may be indexed by anything)."""
    try:
        return str(int(label))
    except (TypeError, ValueError):
        return repr(label)


def _describe(cases: pd.DataFrame) -> list[str]:
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        column = "(table)" if column is None or pd.isna(column) else column
        rows = [i for i in group["index"].tolist() if i is not None and not pd.isna(i)]
        values = group["failure_case"].tolist()
        if rows:
            shown = ", ".join(f"{_row_label(r)} ({v!r})" for r, v in list(zip(rows, values))[:10])
            more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
            problems.append(f"column '{column}' fails {check} at rows {shown}{more}")
        else:
            problems.append(f"column '{column}' fails {check}: {values[0]}")
    return problems
