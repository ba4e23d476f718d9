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

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

SENSOR_KINDS = ("camera", "counter", "gunshot_detector", "panic_button", "drone")
UNIT_KINDS = ("police", "fire", "ambulance")
UNIT_STATUSES = (
    "available", "dispatched", "en_route", "on_scene", "returning", "out_of_service",
)
INCIDENT_STATUSES = ("open", "dispatched", "closed")
CALENDAR_KINDS = ("event", "school_holiday", "public_holiday", "roadworks")

#: Usual ``observations.metric`` values; other names are allowed (for example
#: ``flow_dir_0`` .. ``flow_dir_7`` for a flow-direction histogram).
METRICS = {
    "people_count": "people counted in the bin (camera or counter)",
    "occupancy": "share of the zone's area covered by people, 0..1",
    "mean_speed": "mean ground speed of tracks, m/s",
    "density": "people per square metre",
}

#: The one event taxonomy. The first eight are the situations that the French
#: experimental framework for algorithmic video (law 2023-380, art. 10; decree
#: 2023-828) allows a system to flag; the rest come from other sources.
EVENT_KINDS = {
    # legal algorithmic-video events
    "abandoned_object": "an object left unattended",
    "wrong_way": "movement against the expected flow",
    "forbidden_zone": "a person entering a forbidden or sensitive zone",
    "person_on_ground": "a person on the ground after a fall",
    "crowd_movement": "sudden convergence or dispersal of a crowd",
    "excessive_density": "people per square metre over the zone's limit",
    "fire": "fire or smoke",
    "weapon": "weapon (plug-in model only; none ships with safecity)",
    # other video and baseline findings
    "loitering": "presence in one zone longer than its limit",
    "repeated_presence": "the same anonymous person back in a zone (opt-in)",
    "anomaly": "a departure from the learned usual situation",
    "gathering_forecast": "a forecast crowd above a zone's capacity",
    # other sources
    "gunshot": "acoustic gunshot detection",
    "panic": "panic button pressed",
    "call": "emergency call",
    "police_log": "police log entry (free text, untrusted)",
    "drone": "drone observation",
}

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
    return out.reset_index(drop=True)


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
        values = pd.to_datetime(df[c], utc=True, format="mixed", errors="coerce")
        bad = df.index[values.isna() & df[c].notna()].tolist()
        if bad:
            shown = ", ".join(f"{r} ({df[c][r]!r})" for r in bad[:10])
            problems.append(f"column '{c}' is not a timestamp at rows {shown}")
        parsed[c] = values
    return df.assign(**parsed), problems


def _describe(cases: pd.DataFrame) -> list[str]:
    problems = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        column = "(table)" if column is None or pd.isna(column) else column
        rows = [i for i in group["index"].tolist() if i is not None and not pd.isna(i)]
        values = group["failure_case"].tolist()
        if rows:
            shown = ", ".join(f"{int(r)} ({v!r})" for r, v in list(zip(rows, values))[:10])
            more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
            problems.append(f"column '{column}' fails {check} at rows {shown}{more}")
        else:
            problems.append(f"column '{column}' fails {check}: {values[0]}")
    return problems
