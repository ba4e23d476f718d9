"""The inbox: where a posted row is durable the moment it is acknowledged.

A live source posts small batches, many per second. Writing each into the Parquet
history would mean a file per batch and a read of the day's keys before each, so
rows first go into one SQLite file (WAL, ``synchronous=FULL``): a batch is one
transaction, committed before the server answers 202, so an acknowledged row
survives a SIGKILL or a power cut. Keys are unique in the inbox, so a re-sent row
is counted as a duplicate and stored once. ``flush`` moves what is not yet in the
history into it in large batches (the history's own key check makes a flush
interrupted half-way safe to repeat); flushed rows stay in the inbox for
``keep_days`` to answer duplicates and to restart the live engine, then ``prune``
drops them.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterator

import pandas as pd

from safecity.data import schema
from safecity.data.store import KEYS, ConflictError, Store

TABLES = ("events", "observations", "units")

_SQL = """
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tbl TEXT NOT NULL, key TEXT NOT NULL, ts TEXT NOT NULL, body TEXT NOT NULL,
    source TEXT NOT NULL, received TEXT NOT NULL, flushed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tbl, key));
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (flushed, tbl, seq);
CREATE INDEX IF NOT EXISTS inbox_ts ON inbox (tbl, ts);
"""


def _key(table: str, row: dict) -> str:
    return "\x1f".join(str(row[k]) for k in KEYS[table])


def json_rows(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON-able dicts: times as UTC ISO strings, missing values as None."""
    out = df.astype(object).where(df.notna(), None)
    for col in out.columns:
        if isinstance(df[col].dtype, pd.DatetimeTZDtype):
            out[col] = [None if v is None else pd.Timestamp(v).isoformat() for v in out[col]]
    return out.to_dict("records")


class Inbox:
    """Acknowledged rows of the history tables, before and shortly after they reach Parquet."""

    def __init__(self, path: str | os.PathLike, keep_days: float = 7.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keep_days = keep_days
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SQL)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def add(self, table: str, df: pd.DataFrame, source: str) -> pd.DataFrame:
        """Store the validated rows of ``df``; return those that were new (the rest repeat).

        One transaction: when it returns, the new rows are on disk. A key already
        stored with other values refuses the whole batch (``ConflictError``), as the
        history does; for ``units`` a repeated (unit, ts) is a duplicate whatever its
        status, since the server fills a missing status from the unit's state.
        """
        if table not in TABLES:
            raise ValueError(f"'{table}' is not an inbox table ({', '.join(TABLES)})")
        records = json_rows(df)
        bodies = [json.dumps(r, sort_keys=True, default=str) for r in records]
        keys = [_key(table, r) for r in records]
        first: dict[str, int] = {}
        for i, (k, b) in enumerate(zip(keys, bodies)):
            if k in first and (table != "units" and bodies[first[k]] != b):
                raise ConflictError(table, [f"rows {first[k]} and {i} share the key {k!r} "
                                            "with different values"])
            first.setdefault(k, i)
        now = pd.Timestamp.now(tz="UTC").isoformat()
        with self._transaction() as conn:
            stored = {}
            unique = list(first)
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                q = f"SELECT key, body FROM inbox WHERE tbl = ? AND key IN ({','.join('?' * len(chunk))})"
                stored.update(conn.execute(q, [table, *chunk]).fetchall())
            clash = [k for k in stored if table != "units" and stored[k] != bodies[first[k]]]
            if clash:
                raise ConflictError(table, [f"{len(clash)} key(s) already stored with other values: "
                                            + ", ".join(repr(k) for k in clash[:10])
                                            + " (re-sending identical rows is fine)"])
            new = [i for k, i in first.items() if k not in stored]
            conn.executemany(
                "INSERT INTO inbox (tbl, key, ts, body, source, received) VALUES (?, ?, ?, ?, ?, ?)",
                [(table, keys[i], records[i]["ts"], bodies[i], source, now) for i in new])
        return df.iloc[sorted(new)].reset_index(drop=True)

    def read(self, table: str, since=None, pending_only: bool = False) -> pd.DataFrame:
        """Rows of ``table`` in the inbox (with ``ts >= since``), as a validated frame."""
        q, args = "SELECT body FROM inbox WHERE tbl = ?", [table]
        if since is not None:
            q += " AND ts >= ?"
            args.append(pd.Timestamp(since).tz_convert("UTC").isoformat())
        if pending_only:
            q += " AND flushed = 0"
        with self._lock:
            rows = [json.loads(b) for (b,) in self._conn.execute(q + " ORDER BY seq", args)]
        return _frame(table, rows)

    def flush(self, store: Store, batch: int = 50_000) -> int:
        """Move rows not yet in ``store``'s history there; return how many were moved."""
        moved = 0
        for table in TABLES:
            while True:
                with self._lock:
                    got = self._conn.execute(
                        "SELECT seq, body FROM inbox WHERE flushed = 0 AND tbl = ? ORDER BY seq "
                        "LIMIT ?", (table, batch)).fetchall()
                if not got:
                    break
                df = _frame(table, [json.loads(b) for _, b in got])
                # the history skips keys it has (a flush interrupted after its write)
                store.history.append(table, df.drop_duplicates(list(KEYS[table])))
                with self._transaction() as conn:
                    conn.executemany("UPDATE inbox SET flushed = 1 WHERE seq = ?",
                                     [(s,) for s, _ in got])
                moved += len(got)
        return moved

    def pending(self) -> int:
        """Rows acknowledged but not yet in the history (the queue depth)."""
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM inbox WHERE flushed = 0").fetchone()[0]

    def last_seen(self) -> dict[str, str]:
        """Each source's latest receipt time (ISO), for the health endpoint."""
        with self._lock:
            return dict(self._conn.execute("SELECT source, max(received) FROM inbox GROUP BY source"))

    def prune(self, now=None) -> int:
        """Forget flushed rows received more than ``keep_days`` ago; return how many."""
        now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
        cutoff = (now - pd.Timedelta(days=self.keep_days)).isoformat()
        with self._transaction() as conn:
            return conn.execute("DELETE FROM inbox WHERE flushed = 1 AND received < ?",
                                (cutoff,)).rowcount


def _frame(table: str, rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return schema.empty(table)
    return schema.validate(pd.DataFrame(rows, columns=schema.columns(table)), table)
