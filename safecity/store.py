"""Embedded storage: history as partitioned Parquet, operational state in SQLite.

Layout under one data directory::

    history/observations/date=2026-06-01/part-<hash>.parquet   (also events, units)
    history/sensors/data.parquet                                (also calendar)
    state.sqlite                                                (incidents, unit_status, audit_log)

Why this shape: Parquet partitions by day are what pandas, Dask and DuckDB read
directly, and retention is deleting whole days; SQLite gives transactions for
the small, often-updated operational state with no server to run.

Guarantees
- Atomic: every file appears through ``os.replace`` of a fully written, fsynced
  temporary file, and SQLite changes run in one transaction, so a crash leaves
  the previous state readable. A batch spanning several days is committed day
  by day; re-sending it completes it.
- Idempotent: rows are keyed (``KEYS``); rows already stored are skipped, so
  ingesting the same batch twice stores it once. Reference tables (sensors,
  calendar) and state tables are upserts: the latest version of a key wins.
- Validated: every write goes through ``schema.validate`` first, so a bad
  batch is refused whole with an error naming table, column and rows.

``StateStore`` is the small interface the rest of the package uses for
operational state; ``SQLiteState`` implements it, and a PostgreSQL
implementation can replace it without touching callers.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Iterator, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema

#: Columns that identify a row: a row whose key is stored already is not stored again.
KEYS = {
    "observations": ("ts", "sensor_id", "metric"),
    "events": ("event_id",),
    "units": ("unit_id", "ts"),
    "sensors": ("sensor_id",),
    "calendar": ("calendar_id",),
    "incidents": ("incident_id",),
}
HISTORY_TABLES = ("observations", "events", "units")  # partitioned by day of ``ts``
REFERENCE_TABLES = ("sensors", "calendar")            # one file, upserted
STATE_TABLES = ("incidents", "unit_status", "audit_log")

#: Default retention in days. Positions of staff (units) are kept shortest;
#: the audit log longest, since it is what an oversight body asks for.
DEFAULT_RETENTION_DAYS = {
    "observations": 365, "events": 365, "units": 30,
    "incidents": 365, "audit_log": 3 * 365,
}


# --------------------------------------------------------------------------- files

def _atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}.parquet"  # dot files are ignored by readers
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parts(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def _read_parts(files: list[Path], columns=None) -> pd.DataFrame | None:
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files]).to_pandas()


def _content_name(df: pd.DataFrame) -> str:
    digest = hashlib.sha1(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return f"part-{digest.hexdigest()[:20]}.parquet"


class ParquetHistory:
    """Append-only, day-partitioned Parquet tables plus upserted reference tables."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def append(self, table: str, df: pd.DataFrame) -> int:
        """Store the rows of ``df`` not stored yet; return how many were new."""
        df = schema.validate(df, table)
        if table in REFERENCE_TABLES:
            return self._upsert_reference(table, df)
        if table not in HISTORY_TABLES:
            raise ValueError(f"'{table}' is not a history table ({', '.join(HISTORY_TABLES)})")
        df = df.drop_duplicates(list(KEYS[table]))
        added = 0
        days = df["ts"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
        for day, rows in df.groupby(days, sort=True):
            folder = self.root / table / f"date={day}"
            rows = self._new_rows(table, rows, folder)
            if len(rows):
                rows = rows.reset_index(drop=True)
                _atomic_write_table(pa.Table.from_pandas(rows, preserve_index=False),
                                    folder / _content_name(rows))
                added += len(rows)
        return added

    def _new_rows(self, table: str, rows: pd.DataFrame, folder: Path) -> pd.DataFrame:
        keys = list(KEYS[table])
        stored = _read_parts(_parts(folder), columns=keys)
        if stored is None or stored.empty:
            return rows
        seen = pd.MultiIndex.from_frame(stored[keys])
        return rows[~pd.MultiIndex.from_frame(rows[keys]).isin(seen)]

    def _upsert_reference(self, table: str, df: pd.DataFrame) -> int:
        path = self.root / table / "data.parquet"
        old = _read_parts([path]) if path.exists() else schema.empty(table)
        old = schema.validate(old, table)
        keys = list(KEYS[table])
        merged = pd.concat([old, df], ignore_index=True).drop_duplicates(keys, keep="last")
        changed = len(pd.concat([old, merged]).drop_duplicates(keep=False))
        if changed:
            _atomic_write_table(pa.Table.from_pandas(merged.reset_index(drop=True),
                                                     preserve_index=False), path)
        return changed

    def read(self, table: str, start=None, end=None, columns=None) -> pd.DataFrame:
        """Rows of ``table`` with ``start <= ts < end`` (both optional)."""
        folder = self.root / table
        if table in REFERENCE_TABLES:
            out = _read_parts(_parts(folder), columns)
            return schema.empty(table) if out is None else out
        start, end = _utc(start), _utc(end)
        files = []
        for day_dir in self.days(table):
            day = pd.Timestamp(day_dir.name.split("=", 1)[1], tz="UTC")
            if start is not None and day + timedelta(days=1) <= start:
                continue
            if end is not None and day >= end:
                continue
            files += _parts(day_dir)
        out = _read_parts(files, columns)
        if out is None:
            out = schema.empty(table) if columns is None else schema.empty(table)[columns]
        if "ts" in out and (start is not None or end is not None):
            mask = pd.Series(True, index=out.index)
            if start is not None:
                mask &= out["ts"] >= start
            if end is not None:
                mask &= out["ts"] < end
            out = out[mask]
        return out.reset_index(drop=True)

    def days(self, table: str) -> list[Path]:
        folder = self.root / table
        return sorted(p for p in folder.glob("date=*") if p.is_dir()) if folder.exists() else []

    def drop_days_before(self, table: str, cutoff: pd.Timestamp) -> int:
        """Delete whole day partitions older than ``cutoff``; return how many."""
        dropped = 0
        for day_dir in self.days(table):
            day = pd.Timestamp(day_dir.name.split("=", 1)[1], tz="UTC")
            if day + timedelta(days=1) <= cutoff:
                trash = day_dir.with_name(f".deleting-{day_dir.name}-{uuid.uuid4().hex[:6]}")
                os.replace(day_dir, trash)  # readers stop seeing it at once
                shutil.rmtree(trash)
                dropped += 1
        return dropped


# --------------------------------------------------------------------------- state

class StateStore(Protocol):
    """Operational state: what a PostgreSQL backend must also provide."""

    def upsert(self, table: str, df: pd.DataFrame) -> int: ...
    def read(self, table: str) -> pd.DataFrame: ...
    def audit(self, actor: str, action: str, target: str = "", details: dict | None = None,
              ts=None) -> None: ...
    def delete_before(self, table: str, cutoff: pd.Timestamp) -> int: ...
    def transaction(self) -> contextlib.AbstractContextManager: ...


_SQL = """
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL,
    priority INTEGER NOT NULL, confidence REAL NOT NULL, status TEXT NOT NULL,
    lon REAL, lat REAL, summary TEXT NOT NULL, event_ids TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS unit_status (
    unit_id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
    lon REAL NOT NULL, lat REAL NOT NULL, ts TEXT NOT NULL, station TEXT);
CREATE TABLE IF NOT EXISTS audit_log (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_ts ON audit_log (ts);
"""
_STATE_SCHEMA = {"incidents": "incidents", "unit_status": "units"}
_STATE_KEY = {"incidents": "incident_id", "unit_status": "unit_id"}


def _utc(ts) -> pd.Timestamp | None:
    """A UTC timestamp; naive input is taken as UTC."""
    if ts is None:
        return None
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _iso(ts) -> str:
    return _utc(ts).isoformat()


class SQLiteState:
    """``StateStore`` on one SQLite file (WAL mode, one transaction per call)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SQL)
        self._depth = 0

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Group several changes (a status change and its audit record) into one."""
        outer = self._depth == 0
        if outer:
            self._conn.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield self._conn
        except BaseException:
            self._depth -= 1
            if outer:
                self._conn.execute("ROLLBACK")
            raise
        self._depth -= 1
        if outer:
            self._conn.execute("COMMIT")

    def upsert(self, table: str, df: pd.DataFrame) -> int:
        """Insert or replace rows by key; an invalid batch changes nothing."""
        if table not in _STATE_SCHEMA:
            raise ValueError(f"'{table}' is not a state table ({', '.join(_STATE_SCHEMA)})")
        df = schema.validate(df, _STATE_SCHEMA[table])
        if table == "unit_status":  # only the newest report of each unit is its state
            df = df.sort_values("ts").drop_duplicates("unit_id", keep="last")
        cols = list(df.columns)
        rows = [tuple(_sql_value(v) for v in r) for r in df.itertuples(index=False)]
        key = _STATE_KEY[table]
        update = ", ".join(f"{c}=excluded.{c}" for c in cols if c != key)
        newer = " WHERE excluded.ts >= unit_status.ts" if table == "unit_status" else ""
        sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
               f"ON CONFLICT({key}) DO UPDATE SET {update}{newer}")
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - before

    def read(self, table: str) -> pd.DataFrame:
        if table not in STATE_TABLES:
            raise ValueError(f"'{table}' is not a state table ({', '.join(STATE_TABLES)})")
        df = pd.read_sql_query(f"SELECT * FROM {table}", self._conn)
        df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
        if table in _STATE_SCHEMA:
            df = schema.validate(df, _STATE_SCHEMA[table])
        return df

    def audit(self, actor: str, action: str, target: str = "", details: dict | None = None,
              ts=None) -> None:
        """Append one record to the audit log (who did what to what, and when)."""
        ts = _iso(pd.Timestamp.now(tz="UTC") if ts is None else ts)
        with self.transaction() as conn:
            conn.execute("INSERT INTO audit_log (ts, actor, action, target, details) "
                         "VALUES (?, ?, ?, ?, ?)",
                         (ts, actor, action, target, json.dumps(details or {}, sort_keys=True)))

    def delete_before(self, table: str, cutoff: pd.Timestamp) -> int:
        if table not in STATE_TABLES:
            raise ValueError(f"'{table}' is not a state table ({', '.join(STATE_TABLES)})")
        with self.transaction() as conn:
            return conn.execute(f"DELETE FROM {table} WHERE ts < ?", (_iso(cutoff),)).rowcount


def _sql_value(v):
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return _iso(v)
    if hasattr(v, "item"):
        return v.item()
    return v


# --------------------------------------------------------------------------- facade

class Store:
    """One data directory: ``append``/``read`` any data-model table, enforce retention."""

    def __init__(self, data_dir: str | os.PathLike, retention_days: dict | None = None,
                 state: StateStore | None = None):
        self.data_dir = Path(data_dir)
        self.history = ParquetHistory(self.data_dir / "history")
        self._state = state
        self.retention_days = {**DEFAULT_RETENTION_DAYS, **(retention_days or {})}

    @property
    def state(self) -> StateStore:
        """The operational state, opened on first use so that readers of history create nothing."""
        if self._state is None:
            self._state = SQLiteState(self.data_dir / "state.sqlite")
        return self._state

    def append(self, table: str, df: pd.DataFrame) -> int:
        """Store a batch of ``table``; return the number of new or changed rows."""
        if table == "incidents":
            return self.state.upsert("incidents", df)
        added = self.history.append(table, df)
        if table == "units" and len(df):
            self.state.upsert("unit_status", df)
        return added

    def read(self, table: str, start=None, end=None, columns=None) -> pd.DataFrame:
        if table in STATE_TABLES:
            return self.state.read(table)
        return self.history.read(table, start, end, columns)

    def enforce_retention(self, now=None, actor: str = "system") -> dict:
        """Delete what is older than each table's retention; audit what was deleted."""
        now = pd.Timestamp.now(tz="UTC") if now is None else _utc(now)
        deleted = {}
        for table, days in self.retention_days.items():
            cutoff = now - pd.Timedelta(days=days)
            if table in HISTORY_TABLES:
                deleted[table] = self.history.drop_days_before(table, cutoff)
            elif table in STATE_TABLES:
                deleted[table] = self.state.delete_before(table, cutoff)
        self.state.audit(actor, "enforce_retention", "store",
                         {"deleted": deleted, "retention_days": self.retention_days}, ts=now)
        return deleted
