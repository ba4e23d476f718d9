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
  ingesting the same batch twice stores it once. A row whose key is stored (or
  repeated in its batch) with other values is a conflict: the batch is refused
  whole, naming the keys. Reference tables (sensors, calendar) and state
  tables are upserts: the latest version of a key wins.
- Serialised: writers of history and reference tables hold one lock file in
  the data directory (``.writer.lock``) from reading the stored keys to the
  rename, so concurrent processes neither duplicate keys nor lose upserts;
  SQLite serialises the state (``BEGIN IMMEDIATE``). Under the lock, what a
  crashed writer left (``.tmp-*`` files, ``.deleting-*`` days) is removed.
- Validated: every write goes through ``schema.validate`` first, so a bad
  batch is refused whole with an error naming table, column and rows.

``StateStore`` is the small interface the rest of the package uses for
operational state; ``SQLiteState`` implements it, and ``PostgresState``
(``safecity.data.postgres``) replaces it without touching callers:
``open_state`` picks one from a ``--state`` value.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock

from safecity.config.addresses import redact
from safecity.data import schema
from safecity.data.state import (STATE_KEY, STATE_ORDER, STATE_SCHEMA, STATE_TABLES, SQLState,
                                  StateStore, check_table)
from safecity.data.state import utc as _utc


def os_user() -> str:
    """Who started this process, for the audit: the OS login name, else ``uid:N``."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no name (a container's arbitrary user)
        return f"uid:{os.getuid()}"


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

#: Default retention in days. Positions of staff (units) are kept shortest;
#: the audit log longest, since it is what an oversight body asks for.
DEFAULT_RETENTION_DAYS = {
    "observations": 365, "events": 365, "units": 30,
    "incidents": 365, "verdicts": 3 * 365, "audit_log": 3 * 365,
}

#: A temporary file or half-deleted day this old, seen under the writer lock, is
#: a crashed writer's; younger ones may belong to a writer of an older version.
STALE_SECONDS = 10 * 60
#: How long a writer waits for the lock before giving up with ``filelock.Timeout``.
LOCK_TIMEOUT = 300.0


class ConflictError(schema.SchemaError):
    """Rows whose key is already stored (or repeated in the batch) with other values."""


def parse_time(value, name: str = "time") -> pd.Timestamp:
    """``value`` as a UTC timestamp, or a ``ValueError`` naming ``name`` and the value."""
    try:
        ts = _utc(value)
    except (ValueError, TypeError, OverflowError):
        ts = None
    if ts is None or pd.isna(ts):
        raise ValueError(f"{name} {value!r} is not a date or time "
                         "(expected ISO 8601, e.g. 2026-06-01 or 2026-06-01T10:00Z)")
    return ts


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


def _remove_stale(folder: Path) -> None:
    """Remove temporary files and half-deleted days that a killed writer left behind."""
    if not folder.exists():
        return
    limit = time.time() - STALE_SECONDS
    for path in [*folder.rglob(".tmp-*.parquet"), *folder.glob(".deleting-*")]:
        with contextlib.suppress(FileNotFoundError):
            if path.lstat().st_mtime < limit:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink()


def _read_parts(files: list[Path], columns=None) -> pd.DataFrame | None:
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files]).to_pandas()


def _content_name(df: pd.DataFrame) -> str:
    digest = hashlib.sha1(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return f"part-{digest.hexdigest()[:20]}.parquet"


class ParquetHistory:
    """Append-only, day-partitioned Parquet tables plus upserted reference tables."""

    def __init__(self, root: str | os.PathLike, lock_path: str | os.PathLike | None = None,
                 lock_timeout: float = LOCK_TIMEOUT):
        self.root = Path(root)
        self.lock_path = Path(lock_path) if lock_path is not None else self.root / ".writer.lock"
        self.lock_timeout = lock_timeout
        self._lock: FileLock | None = None

    @contextlib.contextmanager
    def writing(self, table: str) -> Iterator[None]:
        """Hold the writer lock (shared by every process on this data directory)."""
        if self._lock is None:  # created on first write: readers create nothing
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self.lock_path), timeout=self.lock_timeout)
        with self._lock:
            _remove_stale(self.root / table)
            yield

    def append(self, table: str, df: pd.DataFrame) -> int:
        """Store the rows of ``df`` not stored yet; return how many were new.

        Raises ``ConflictError`` (storing nothing) when a key comes with values
        other than those stored or than another row of the batch.
        """
        df = schema.validate(df, table)
        if table in REFERENCE_TABLES:
            with self.writing(table):
                return self._upsert_reference(table, df)
        if table not in HISTORY_TABLES:
            raise ValueError(f"'{table}' is not a history table ({', '.join(HISTORY_TABLES)})")
        keys = list(KEYS[table])
        df = df.drop_duplicates()  # the same row twice is a re-send, not a conflict
        _refuse_conflicts(table, keys, df[df.duplicated(keys, keep=False)], None)
        days = df["ts"].dt.tz_convert("UTC").dt.strftime("%Y-%m-%d")
        with self.writing(table):
            # every day is checked before any is written: a conflict stores nothing
            batches = [(folder, self._new_rows(table, rows, folder))
                       for folder, rows in ((self.root / table / f"date={day}", rows)
                                            for day, rows in df.groupby(days, sort=True))]
            added = 0
            for folder, rows in batches:
                if len(rows):
                    rows = rows.reset_index(drop=True)
                    _atomic_write_table(pa.Table.from_pandas(rows, preserve_index=False),
                                        folder / _content_name(rows))
                    added += len(rows)
        return added

    def _new_rows(self, table: str, rows: pd.DataFrame, folder: Path) -> pd.DataFrame:
        keys = list(KEYS[table])
        stored = _read_parts(_parts(folder))
        if stored is None or stored.empty:
            return rows
        stored = stored.drop_duplicates(keys)  # duplicates an unlocked older version stored
        both = rows.merge(stored, on=keys, how="left", suffixes=("", " (stored)"), indicator=True)
        _refuse_conflicts(table, keys, both[both["_merge"] == "both"], " (stored)")
        return rows[(both["_merge"] == "left_only").to_numpy()]

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
        if not self.days(table):
            return 0
        with self.writing(table):
            for day_dir in self.days(table):
                day = pd.Timestamp(day_dir.name.split("=", 1)[1], tz="UTC")
                if day + timedelta(days=1) <= cutoff:
                    trash = day_dir.with_name(f".deleting-{day_dir.name}-{uuid.uuid4().hex[:6]}")
                    os.replace(day_dir, trash)  # readers stop seeing it at once
                    shutil.rmtree(trash)
                    dropped += 1
        return dropped


def _refuse_conflicts(table: str, keys: list[str], rows: pd.DataFrame, suffix: str | None) -> None:
    """Raise ``ConflictError`` naming the keys whose rows disagree.

    ``rows`` are the batch's rows sharing a key, compared with each other
    (``suffix`` None), or batch rows merged with the stored row of their key,
    whose columns end in ``suffix``.
    """
    if rows.empty:
        return
    if suffix is None:  # rows are distinct already: any key seen twice disagrees with itself
        clash = rows
    else:
        others = [c for c in rows.columns if c + suffix in rows.columns]
        differs = pd.Series(False, index=rows.index)
        for c in others:
            a, b = rows[c], rows[c + suffix]
            differs |= ~((a == b) | (a.isna() & b.isna()))
        clash = rows[differs]
    if clash.empty:
        return
    shown = clash.drop_duplicates(keys)
    names = "; ".join(", ".join(f"{k}={row[k]}" if k == "ts" else f"{k}={row[k]!r}" for k in keys)
                      for _, row in shown.head(10).iterrows())
    more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
    where = "rows already stored" if suffix is not None else "other rows of the same batch"
    raise ConflictError(table, [f"{len(shown)} key(s) come with values that differ from "
                                f"{where}: {names}{more} (re-sending identical rows is fine; "
                                "a correction must not silently keep the old value)"])


# --------------------------------------------------------------------------- state

_SQL = """
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY, ts TEXT NOT NULL, kind TEXT NOT NULL,
    priority INTEGER NOT NULL, confidence REAL NOT NULL, status TEXT NOT NULL,
    lon REAL, lat REAL, summary TEXT NOT NULL, event_ids TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS unit_status (
    unit_id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
    lon REAL NOT NULL, lat REAL NOT NULL, ts TEXT NOT NULL, station TEXT);
CREATE TABLE IF NOT EXISTS verdicts (
    alarm_id TEXT PRIMARY KEY, alarm_type TEXT NOT NULL, kind TEXT NOT NULL, sensor_id TEXT,
    alarm_ts TEXT NOT NULL, score REAL, verdict TEXT NOT NULL, reason TEXT, actor TEXT NOT NULL,
    ts TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log (
    audit_id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_ts ON audit_log (ts);
"""
def _iso(ts) -> str:
    return _utc(ts).isoformat()


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """WAL mode; SQLite answers "locked" at once (no busy wait) while another opener switches."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SQLiteState(SQLState):
    """``StateStore`` on one SQLite file (WAL mode, one transaction per call)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a writer may hold the database while it waits for the history's lock: wait for it
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=LOCK_TIMEOUT)
        _switch_to_wal(self._conn)
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
        df = self.checked_rows(table, df)
        cols = list(df.columns)
        rows = [tuple(_sql_value(v) for v in r) for r in df.itertuples(index=False)]
        key = STATE_KEY[table]
        update = ", ".join(f"{c}=excluded.{c}" for c in cols if c != key)
        newer = " WHERE excluded.ts >= unit_status.ts" if table == "unit_status" else ""
        sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
               f"ON CONFLICT({key}) DO UPDATE SET {update}{newer}")
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - before

    def read(self, table: str) -> pd.DataFrame:
        check_table(table)
        df = pd.read_sql_query(f"SELECT * FROM {table} ORDER BY {STATE_ORDER[table]}", self._conn)
        for col in ("ts", "alarm_ts")[:1 + (table == "verdicts")]:
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        if table in STATE_SCHEMA:
            df = schema.validate(df, STATE_SCHEMA[table])
        return df


def _sql_value(v):
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return _iso(v)
    if hasattr(v, "item"):
        return v.item()
    return v


def open_state(spec: str | None, data_dir: str | os.PathLike) -> StateStore:
    """The state store a ``--state`` value names.

    ``None`` or ``"sqlite"``: ``state.sqlite`` in ``data_dir`` (nothing to
    install); a ``postgresql://`` or ``postgres://`` URL: that database
    (``PostgresState``). Anything else is a ``ValueError`` naming the value,
    with any password in it hidden.
    """
    if spec is None or spec.strip().lower() == "sqlite":
        return SQLiteState(Path(data_dir) / "state.sqlite")
    if re.match(r"postgres(ql)?://", spec.strip(), re.IGNORECASE):
        from safecity.data.postgres import PostgresState

        return PostgresState(spec.strip())
    raise ValueError(f"state store {redact(spec)!r} is neither 'sqlite' nor a "
                     "postgresql:// URL (e.g. postgresql://user@host:5432/safecity)")


# --------------------------------------------------------------------------- facade

class Store:
    """One data directory: ``append``/``read`` any data-model table, enforce retention."""

    def __init__(self, data_dir: str | os.PathLike, retention_days: dict | None = None,
                 state: StateStore | None = None, lock_timeout: float = LOCK_TIMEOUT):
        self.data_dir = Path(data_dir)
        self.lock_path = self.data_dir / ".writer.lock"
        self.history = ParquetHistory(self.data_dir / "history", self.lock_path, lock_timeout)
        self._state = state
        self._state_lock = threading.Lock()
        self.retention_days = {**DEFAULT_RETENTION_DAYS, **(retention_days or {})}
        if self.retention_days["audit_log"] < DEFAULT_RETENTION_DAYS["audit_log"]:
            raise ValueError(f"audit_log retention must be at least "
                             f"{DEFAULT_RETENTION_DAYS['audit_log']} days: the audit is what "
                             "an oversight body reads, and it records the deletions themselves")

    @property
    def state(self) -> StateStore:
        """The operational state, opened on first use so that readers of history create nothing."""
        with self._state_lock:  # threads sharing a store open it once
            if self._state is None:
                self._state = SQLiteState(self.data_dir / "state.sqlite")
        return self._state

    def append(self, table: str, df: pd.DataFrame) -> int:
        """Store a batch of ``table``; return the number of new or changed rows."""
        if table in ("incidents", "verdicts"):  # operational state, replaced by key
            return self.state.upsert(table, df)
        if table != "units":
            return self.history.append(table, df)
        with self.state.transaction():  # positions and current status change together
            added = self.history.append(table, df)
            if len(df):
                self.state.upsert("unit_status", df)
        return added

    def read(self, table: str, start=None, end=None, columns=None) -> pd.DataFrame:
        if table in STATE_TABLES:
            return self.state.read(table)
        return self.history.read(table, start, end, columns)

    def enforce_retention(self, now=None, actor: str | None = None) -> dict:
        """Delete what is older than each table's retention; audit what was deleted.

        ``now`` (default: the clock) replays retention as of an earlier time; a
        ``now`` in the future is refused, since it would delete data still within
        its retention. The audit log's own cutoff and the record of this run
        always use the real clock (``now`` is kept as a detail), so no argument
        can erase or back-date the audit.
        """
        real = pd.Timestamp.now(tz="UTC")
        now = real if now is None else parse_time(now, "now")
        if now > real:
            raise ValueError(f"now {now.isoformat()} is in the future (the clock says "
                             f"{real.isoformat()}): that would delete data still within "
                             "its retention; shorten retention_days instead")
        deleted = {}
        for table, days in self.retention_days.items():
            cutoff = (real if table == "audit_log" else now) - pd.Timedelta(days=days)
            if table in HISTORY_TABLES:
                deleted[table] = self.history.drop_days_before(table, cutoff)
            elif table in STATE_TABLES:
                deleted[table] = self.state.delete_before(table, cutoff)
        self.state.audit(actor or os_user(), "enforce_retention", "store",
                         {"deleted": deleted, "retention_days": self.retention_days,
                          "now": now.isoformat()})
        return deleted
