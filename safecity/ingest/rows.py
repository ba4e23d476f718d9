"""What a posted row must look like, checked before anything is stored.

A source posts a JSON array of objects. ``parse_rows`` turns it into one of the data
model's tables or raises ``RowError`` naming the row (its position in the array) and
the field at fault; a batch with one bad row is refused whole. Timestamps must carry
their zone (``2026-06-01T10:00:00+02:00`` or ``...Z``): a camera's local time taken for
UTC would shift every event by hours without anyone noticing.

Police-log entries are free text typed by people: they become ``police_log`` events
whose text stays in ``details`` (fusion only ever shows it quoted and escaped).
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Sequence

import pandas as pd

from safecity.data import schema

#: Per API table: (required fields, optional fields) of one posted object.
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "events": (("event_id", "ts", "kind", "source"),
               ("sensor_id", "lon", "lat", "score", "details")),
    "observations": (("ts", "sensor_id", "metric", "value"), ()),
    "units": (("unit_id", "ts", "lon", "lat"), ("status", "kind", "station")),
    "police-log": (("ts", "text"), ("entry_id", "place", "lon", "lat", "unit_id")),
}
_NUMBERS = {"lon", "lat", "score", "value"}
_TEXT_LIMIT = 10_000  # characters of one free-text field


class RowError(ValueError):
    """A posted batch is refused: ``row`` (position, or None for the whole body) and ``field``."""

    def __init__(self, message: str, row: int | None = None, field: str | None = None):
        self.row, self.field = row, field
        where = "".join([f"row {row}" if row is not None else "",
                         f", field '{field}'" if field else ""])
        super().__init__(f"{where}: {message}" if where else message)


def parse_rows(table: str, rows: Any, latest=None) -> pd.DataFrame:
    """The posted ``rows`` of API table ``table`` as a validated data-model frame.

    ``latest`` (a UTC time) refuses rows stamped after it: a source whose clock runs
    ahead would otherwise hold the live view's data in the future. Identical events
    repeated in the batch are kept once.

    ``units`` rows may lack ``kind``/``status``/``station`` (an AVL box sends where it
    is, not what it is): they come back missing, for ``complete_units`` to fill.
    """
    if table not in FIELDS:
        raise RowError(f"unknown table {table!r} (expected one of {', '.join(FIELDS)})")
    if not isinstance(rows, list):
        raise RowError(f"the body must be a JSON array of objects, got {type(rows).__name__}")
    required, optional = FIELDS[table]
    records = [_check_row(i, row, required, optional) for i, row in enumerate(rows)]
    if latest is not None:
        for i, r in enumerate(records):
            if r["ts"] > latest:
                raise RowError(f"{r['ts'].isoformat()} is in the future (the server's clock says "
                               f"{latest.isoformat()} plus its allowance): check the source's clock",
                               i, "ts")
    if table == "events":
        for i, r in enumerate(records):
            if r["kind"] not in schema.EVENT_KINDS:
                raise RowError(f"unknown kind {r['kind']!r:.60} (known: "
                               f"{', '.join(schema.EVENT_KINDS)})", i, "kind")
    if table == "police-log":
        records = [_police_log_event(r) for r in records]
        table = "events"
    if table == "units":
        df = pd.DataFrame(records, columns=list(required + optional))
        _validate_positions(df)
        return df
    df = pd.DataFrame(records, columns=schema.columns(table))
    if table == "events":  # the same event twice in one batch is a re-send, not an error
        df = df[~df.astype(str).duplicated()].reset_index(drop=True)
    return _validate(df, table)


def complete_units(df: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """AVL rows with each unit's kind, station (and status unless given) from ``known``.

    ``known`` is the current ``unit_status``; a unit neither known nor posted with
    its ``kind`` is refused, naming its first row; a new unit without a status is
    ``available``.
    """
    known = known.set_index("unit_id") if len(known) else pd.DataFrame(
        columns=["kind", "status", "station"])
    out = df.copy()
    for col, default in (("kind", None), ("station", None), ("status", "available")):
        fill = (out["unit_id"].map(known[col]) if col in known else pd.Series(None, index=out.index)).astype(object)
        if default is not None:
            fill = fill.fillna(default)
        out[col] = out[col].where(out[col].notna(), fill)
    unknown = out.index[out["kind"].isna()]
    if len(unknown):
        i = int(unknown[0])
        raise RowError(f"unit {out.at[i, 'unit_id']!r} is not registered: send its 'kind' "
                       f"({', '.join(schema.UNIT_KINDS)}) with its first position", i, "kind")
    return _validate(out[schema.columns("units")], "units")


def _check_row(i: int, row: Any, required: Sequence[str], optional: Sequence[str]) -> dict:
    if not isinstance(row, dict):
        raise RowError(f"expected a JSON object, got {type(row).__name__}", i)
    for name in required:
        if row.get(name) is None or row.get(name) == "":
            raise RowError("missing", i, name)
    unknown = sorted(set(row) - set(required) - set(optional))
    if unknown:
        raise RowError(f"unknown field(s); expected {', '.join(required + tuple(optional))}",
                       i, unknown[0])
    out = {}
    for name, value in row.items():
        if name == "ts":
            out[name] = _parse_ts(i, value)
        elif name in _NUMBERS:
            out[name] = _number(i, name, value)
        elif name == "details":
            out[name] = value if value is None or isinstance(value, str) else json.dumps(
                value, sort_keys=True, ensure_ascii=False)
        elif value is None:
            out[name] = None
        elif not isinstance(value, str):
            raise RowError(f"expected text, got {type(value).__name__} {value!r:.60}", i, name)
        elif len(value) > _TEXT_LIMIT:
            raise RowError(f"longer than {_TEXT_LIMIT} characters", i, name)
        else:
            out[name] = value
    return out


def _parse_ts(i: int, value: Any) -> pd.Timestamp:
    if not isinstance(value, str):
        raise RowError(f"expected an ISO 8601 time with its zone, got {type(value).__name__}",
                       i, "ts")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise RowError(f"{value!r:.60} is not an ISO 8601 time", i, "ts") from None
    if pd.isna(ts):
        raise RowError(f"{value!r:.60} is not a time", i, "ts")
    if ts.tz is None:
        raise RowError(f"{value!r:.60} has no zone: add Z or an offset such as +01:00", i, "ts")
    return ts.tz_convert("UTC")


def _number(i: int, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RowError(f"expected a finite number, got {value!r:.60}", i, name)
    return float(value)


def _police_log_event(entry: dict) -> dict:
    """A police-log entry as a ``police_log`` event; its id is the entry's, or its content's hash."""
    details = {"text": entry["text"]}
    for name in ("place", "unit_id"):
        if entry.get(name):
            details[name] = entry[name]
    event_id = entry.get("entry_id") or "plog-" + hashlib.sha1(json.dumps(
        [entry["ts"].isoformat(), entry["text"], entry.get("place")]).encode()).hexdigest()[:16]
    return {"event_id": event_id, "ts": entry["ts"], "kind": "police_log", "sensor_id": None,
            "lon": entry.get("lon"), "lat": entry.get("lat"), "score": None,
            "source": "police_log", "details": json.dumps(details, sort_keys=True,
                                                          ensure_ascii=False)}


def _validate_positions(df: pd.DataFrame) -> None:
    for col, bound in (("lon", 180), ("lat", 90)):
        bad = df.index[df[col].abs() > bound]
        if len(bad):
            raise RowError(f"{df.at[bad[0], col]} is outside -{bound}..{bound}", int(bad[0]), col)
    for col, allowed in (("status", schema.UNIT_STATUSES), ("kind", schema.UNIT_KINDS)):
        bad = df.index[df[col].notna() & ~df[col].isin(allowed)]
        if len(bad):
            raise RowError(f"{df.at[bad[0], col]!r} is not one of {', '.join(allowed)}",
                           int(bad[0]), col)


def _validate(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """``schema.validate``, its error re-raised as a ``RowError`` naming the first bad row."""
    try:
        return schema.validate(df, table)
    except schema.SchemaError as err:
        raise RowError("; ".join(err.problems)) from None
