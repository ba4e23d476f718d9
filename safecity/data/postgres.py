"""Operational state in PostgreSQL: the ``StateStore`` that ``--state postgresql://...`` opens.

It keeps what ``SQLiteState`` keeps (incidents, unit_status, audit_log) with
the same semantics, for an operations centre that already runs PostgreSQL or
wants several servers on one state:

- Same tables and columns as SQLite's (times as ``TIMESTAMPTZ``, numbers as
  ``DOUBLE PRECISION``, ``audit_id`` a ``BIGSERIAL``), created when missing.
- Same answers: ``read`` returns the same validated DataFrames (UTC ``ts``,
  rows ordered by key, the audit by ``audit_id``); ``upsert`` replaces by key,
  and a unit's state changes only for a report at least as new as the stored one.
- Serialised writers, as SQLite's ``BEGIN IMMEDIATE``: every outermost
  transaction first takes one transaction-level advisory lock, so a check and
  the write that follows it (a dispatch) see no other writer in between, in
  this process or another.
- One connection, guarded by a re-entrant lock held for a whole transaction:
  a Tornado handler and a background thread never interleave statements in
  each other's transaction. Nested ``transaction()`` blocks are savepoints:
  a block that fails is undone and leaves the enclosing one usable.

The URL's password never appears in an error, a log line or a ``repr``.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator
from urllib.parse import unquote, urlsplit

import pandas as pd
import psycopg
from psycopg.conninfo import conninfo_to_dict

from safecity.config.addresses import redact
from safecity.data import schema
from safecity.data.state import STATE_KEY, STATE_ORDER, STATE_SCHEMA, SQLState, check_table, utc


#: How long a writer waits for another's transaction, as SQLite's busy timeout (seconds).
LOCK_TIMEOUT = 300
#: How long connecting may take before the server counts as unreachable (seconds).
CONNECT_TIMEOUT = 10
#: The advisory lock every writer takes: any fixed 64-bit number, the same in every process.
WRITER_LOCK = 0x5AFEC17_57A7E

_SQL = """
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, kind TEXT NOT NULL,
    priority INTEGER NOT NULL, confidence DOUBLE PRECISION NOT NULL, status TEXT NOT NULL,
    lon DOUBLE PRECISION, lat DOUBLE PRECISION, summary TEXT NOT NULL, event_ids TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS unit_status (
    unit_id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL,
    lon DOUBLE PRECISION NOT NULL, lat DOUBLE PRECISION NOT NULL, ts TIMESTAMPTZ NOT NULL,
    station TEXT);
CREATE TABLE IF NOT EXISTS verdicts (
    alarm_id TEXT PRIMARY KEY, alarm_type TEXT NOT NULL, kind TEXT NOT NULL, sensor_id TEXT,
    alarm_ts TIMESTAMPTZ NOT NULL, score DOUBLE PRECISION, verdict TEXT NOT NULL, reason TEXT,
    actor TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS audit_log (
    audit_id BIGSERIAL PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_ts ON audit_log (ts);
"""


class StateUnavailableError(ConnectionError):
    """The PostgreSQL server of the state store cannot be reached or refuses us."""


class PostgresState(SQLState):
    """``StateStore`` on a PostgreSQL database named by a ``postgresql://`` URL."""

    placeholder = "%s"

    def db_time(self, ts) -> object:
        return _pg_value(utc(ts))

    def __init__(self, url: str, connect_timeout: float = CONNECT_TIMEOUT,
                 lock_timeout: float = LOCK_TIMEOUT):
        self.address = redact(url)  # what errors, logs and repr show
        self._url = url
        self._connect_timeout = connect_timeout
        self._lock_timeout = lock_timeout
        self._lock = threading.RLock()
        self._depth = 0
        self._closed = False
        self._conn: psycopg.Connection | None = None
        try:
            with self.transaction() as conn:  # under the writer lock: two first starts race on DDL
                conn.execute(_SQL)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresState({self.address!r})"

    def _connect(self) -> psycopg.Connection:
        try:
            params = conninfo_to_dict(self._url)
            extra = {} if "connect_timeout" in params else {
                "connect_timeout": max(1, round(self._connect_timeout))}
            conn = psycopg.connect(self._url, autocommit=True, **extra)
        except psycopg.Error as exc:
            reason = redact(str(exc)).strip()  # libpq may quote a URL it cannot parse
            for secret in _passwords(self._url):
                reason = reason.replace(secret, "***")
            raise StateUnavailableError(
                f"cannot connect to the PostgreSQL state store at {self.address}: {reason}") from None
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(f"SET lock_timeout = '{int(self._lock_timeout * 1000)}ms'")
        return conn

    def _connection(self) -> psycopg.Connection:
        """The open connection; a lost one is replaced between transactions."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._conn is None or (self._conn.closed and self._depth == 0):
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """Group several changes (a status change and its audit record) into one.

        The outermost block holds the writer lock, of this process and of the
        database, until it commits or rolls back; a nested block is a savepoint.
        """
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                if self._depth == 0:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1

    def upsert(self, table: str, df: pd.DataFrame) -> int:
        """Insert or replace rows by key; an invalid batch changes nothing."""
        df = self.checked_rows(table, df)
        if df.empty:
            return 0
        cols = list(df.columns)
        rows = [tuple(_pg_value(v) for v in r) for r in df.itertuples(index=False)]
        key = STATE_KEY[table]
        update = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != key)
        newer = " WHERE EXCLUDED.ts >= unit_status.ts" if table == "unit_status" else ""
        sql = (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
               f"ON CONFLICT ({key}) DO UPDATE SET {update}{newer}")
        with self.transaction() as conn, conn.cursor() as cur:
            cur.executemany(sql, rows)
            return max(cur.rowcount, 0)

    def read(self, table: str) -> pd.DataFrame:
        check_table(table)
        with self._lock:
            cur = self._connection().execute(f"SELECT * FROM {table} ORDER BY {STATE_ORDER[table]}")
            columns = [d.name for d in cur.description]
            df = pd.DataFrame(cur.fetchall(), columns=columns)
        for col in ("ts", "alarm_ts")[:1 + (table == "verdicts")]:
            df[col] = pd.to_datetime(df[col], utc=True)
        if table in STATE_SCHEMA:
            df = schema.validate(df, STATE_SCHEMA[table])
        return df


def _passwords(url: str) -> set[str]:
    """The password of ``url`` as written and as decoded, to hide wherever a message quotes it."""
    found = set()
    with contextlib.suppress(psycopg.Error):
        found.add(conninfo_to_dict(url).get("password"))
    with contextlib.suppress(ValueError):
        raw = urlsplit(url).password
        found |= {raw, unquote(raw or "")}
    return {p for p in found if p}


def _pg_value(v):
    """A cell as psycopg adapts it: None for missing, datetimes to the microsecond."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, pd.Timestamp):
        return v.floor("us").to_pydatetime()
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v
