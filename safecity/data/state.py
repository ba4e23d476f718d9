"""Operational state (incidents, unit status, operators' verdicts on alarms, the audit log): what every backend shares.

``StateStore`` is the interface the rest of the package uses; ``store.SQLiteState``
(embedded, the default) and ``postgres.PostgresState`` (several servers, one state)
implement it on ``SQLState``, which holds what they write the same way: the audit
record and retention's deletions, in each backend's parameter style and time type.
"""
from __future__ import annotations

import contextlib
import json
from typing import Protocol

import pandas as pd

from safecity.data import schema

#: The state tables; those with a data-model schema are validated against it.
STATE_TABLES = ("incidents", "unit_status", "verdicts", "audit_log")
STATE_SCHEMA = {"incidents": "incidents", "unit_status": "units", "verdicts": "verdicts"}
STATE_KEY = {"incidents": "incident_id", "unit_status": "unit_id", "verdicts": "alarm_id"}
STATE_ORDER = {**STATE_KEY, "audit_log": "audit_id"}  # every backend reads rows in this order


class StateStore(Protocol):
    """Operational state: what a PostgreSQL backend must also provide."""

    def upsert(self, table: str, df: pd.DataFrame) -> int: ...
    def read(self, table: str) -> pd.DataFrame: ...  # rows by key; the audit by audit_id
    def audit(self, actor: str, action: str, target: str = "", details: dict | None = None,
              ts=None) -> None: ...
    def delete_before(self, table: str, cutoff: pd.Timestamp) -> int: ...
    def transaction(self) -> contextlib.AbstractContextManager: ...


def utc(ts) -> pd.Timestamp | None:
    """A UTC timestamp; naive input is taken as UTC."""
    if ts is None:
        return None
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def check_table(table: str) -> None:
    if table not in STATE_TABLES:
        raise ValueError(f"'{table}' is not a state table ({', '.join(STATE_TABLES)})")


class SQLState:
    """The audit record and retention's deletions, written alike by every SQL backend.

    A backend sets ``placeholder`` (its DB-API parameter style) and ``db_time`` (how it
    stores a time), and provides ``transaction()``.
    """

    placeholder = "?"

    @staticmethod
    def checked_rows(table: str, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` validated for a state table (of ``unit_status``, each unit's newest report)."""
        if table not in STATE_SCHEMA:
            raise ValueError(f"'{table}' is not a state table ({', '.join(STATE_SCHEMA)})")
        df = schema.validate(df, STATE_SCHEMA[table])
        if table == "unit_status":  # only the newest report of each unit is its state
            df = df.sort_values("ts").drop_duplicates("unit_id", keep="last")
        return df

    def db_time(self, ts) -> object:
        return utc(ts).isoformat()

    def audit(self, actor: str, action: str, target: str = "", details: dict | None = None,
              ts=None) -> None:
        """Append one record to the audit log (who did what to what, and when)."""
        when = self.db_time(pd.Timestamp.now(tz="UTC") if ts is None else ts)
        marks = ", ".join([self.placeholder] * 5)
        with self.transaction() as conn:
            conn.execute(f"INSERT INTO audit_log (ts, actor, action, target, details) VALUES ({marks})",
                         (when, actor, action, target, json.dumps(details or {}, sort_keys=True)))

    def delete_before(self, table: str, cutoff: pd.Timestamp) -> int:
        check_table(table)
        with self.transaction() as conn:
            return conn.execute(f"DELETE FROM {table} WHERE ts < {self.placeholder}",
                                (self.db_time(cutoff),)).rowcount
