"""Several servers on one PostgreSQL state: what changed since a server last looked, and
the events of the incidents the servers share.

Each server's engine keeps incidents, unit positions and its fusion in memory, so that
twenty sessions read memory rather than the database. When two servers share one state
(``--state postgresql://...``), each must learn what the other wrote:

- **What changed**: triggers on the state tables append ``(seq, table, key)`` to
  ``state_changes`` for every inserted or updated row, whoever wrote it (a server, a CLI
  command), and ``NOTIFY safecity_state`` when the transaction commits. A server reads
  the rows after the last ``seq`` it saw, then the current rows of those keys. Every
  writer holds ``PostgresState``'s advisory writer lock, so transactions commit in
  ``seq`` order and reading ``seq > last`` never skips a committed change.
- **Which events make an incident**: a server fuses the events posted to it; to link
  an event to an incident another server made, it needs that incident's events, which
  are in the other server's inbox. ``incident_events`` keeps them (each event's row
  as JSON, and its incident), written in the transaction that stores the incident.

Old change records are pruned after ``KEEP_CHANGES``; an incident's events go with the
incident (retention). A server that fell further behind than that reloads everything.
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

import pandas as pd
import psycopg

from safecity.data import schema
from safecity.data.inbox import json_rows
from safecity.data.postgres import PostgresState
from safecity.data.state import STATE_ORDER, STATE_SCHEMA

#: The channel a commit that changed the state notifies (one per database, every schema).
CHANNEL = "safecity_state"
#: How long change records are kept: far longer than any server's polling interval.
KEEP_CHANGES = pd.Timedelta(hours=1)

_SQL = f"""
CREATE TABLE IF NOT EXISTS state_changes (
    seq BIGSERIAL PRIMARY KEY, ts TIMESTAMPTZ NOT NULL DEFAULT now(),
    tbl TEXT NOT NULL, key TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS state_changes_ts ON state_changes (ts);
CREATE TABLE IF NOT EXISTS incident_events (
    event_id TEXT PRIMARY KEY, incident_id TEXT NOT NULL, ts TIMESTAMPTZ NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS incident_events_incident ON incident_events (incident_id);
CREATE OR REPLACE FUNCTION safecity_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO state_changes (tbl, key) VALUES (TG_TABLE_NAME, to_jsonb(NEW) ->> TG_ARGV[0]);
    PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);
    RETURN NULL;
END $$;
""" + "".join(
    f"CREATE OR REPLACE TRIGGER {table}_changed AFTER INSERT OR UPDATE ON {table} "
    f"FOR EACH ROW EXECUTE FUNCTION safecity_state_changed('{key}');\n"
    for table, key in STATE_ORDER.items())


class SharedState:
    """The change feed and the incidents' events of a ``PostgresState`` several servers share.

    Writes go through ``state`` (in its transactions, under its writer lock); reads and
    the wait for a notification use connections of their own, so a server waiting for
    another's transaction still learns what changed.
    """

    def __init__(self, state: PostgresState):
        self.state = state
        self._reader: psycopg.Connection | None = None
        self._listener: psycopg.Connection | None = None
        self._read_lock = threading.Lock()
        with state.transaction() as conn:  # under the writer lock: two first starts race on DDL
            conn.execute(_SQL)

    # ------------------------------------------------------------------ connections
    @contextlib.contextmanager
    def _reading(self) -> Iterator[psycopg.Connection]:
        """The reading connection (autocommit), opened again after a lost one."""
        with self._read_lock:
            if self._reader is None or self._reader.closed:
                self._reader = self.state._connect()
            try:
                yield self._reader
            except psycopg.OperationalError:
                self._reader.close()  # the next call connects again
                raise

    def _read(self, sql: str, args=()) -> list[tuple]:
        with self._reading() as conn:
            return conn.execute(sql, args).fetchall()

    def close(self) -> None:
        for conn in (self._reader, self._listener):
            if conn is not None:
                conn.close()

    # ------------------------------------------------------------------ changes
    def last_change(self) -> int:
        """The newest change's ``seq`` (0 before any)."""
        return int(self._read("SELECT COALESCE(max(seq), 0) FROM state_changes")[0][0])

    def changes(self, after: int) -> tuple[int, dict[str, list[str]], bool]:
        """``(newest seq, {table: changed keys}, complete)`` for the changes after ``after``.

        ``complete`` is False when changes after ``after`` were pruned already: the
        caller must read everything again.
        """
        rows = self._read("SELECT seq, tbl, key FROM state_changes WHERE seq > %s ORDER BY seq",
                          (after,))
        changed: dict[str, list[str]] = {}
        for _, table, key in rows:
            keys = changed.setdefault(table, [])
            if key not in keys:
                keys.append(key)
        complete = True
        if after and rows and rows[0][0] > after + 1:  # a gap: rolled back, or pruned?
            oldest = self._read("SELECT min(seq) FROM state_changes")[0][0]
            complete = oldest is not None and oldest <= after + 1
        return (rows[-1][0] if rows else after), changed, complete

    def wait(self, timeout: float) -> bool:
        """Block until a commit changed the state (True) or ``timeout`` seconds passed."""
        if self._listener is None or self._listener.closed:
            self._listener = self.state._connect()
            self._listener.execute(f"LISTEN {CHANNEL}")
        try:
            return any(True for _ in self._listener.notifies(timeout=timeout, stop_after=1))
        except psycopg.OperationalError:
            self._listener.close()
            raise

    def read(self, table: str, keys: list[str] | None = None) -> pd.DataFrame:
        """The current rows of ``table`` with these keys (all with None), as ``PostgresState.read``."""
        key = STATE_ORDER[table]
        where, args = ("", ()) if keys is None else (f" WHERE {key}::text = ANY(%s)", (list(keys),))
        with self._reading() as conn:
            cur = conn.execute(f"SELECT * FROM {table}{where} ORDER BY {key}", args)
            df = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
        for col in ("ts", "alarm_ts")[:1 + (table == "verdicts")]:
            df[col] = pd.to_datetime(df[col], utc=True)
        return schema.validate(df, STATE_SCHEMA[table]) if table in STATE_SCHEMA else df

    def prune(self) -> None:
        """Forget old change records, and the events of incidents no longer stored."""
        with self._reading() as conn:
            conn.execute("DELETE FROM state_changes WHERE ts < now() - %s",
                         (KEEP_CHANGES.to_pytimedelta(),))
            conn.execute(
                "DELETE FROM incident_events e WHERE NOT EXISTS "
                "(SELECT 1 FROM incidents i WHERE i.incident_id = e.incident_id)")

    # ------------------------------------------------------------------ incidents' events
    def put_events(self, members: pd.DataFrame) -> None:
        """Store events with the incident they belong to (``members``: events + incident_id).

        Call it in the transaction that stores the incidents, so that another server
        never reads an incident without its events.
        """
        if members.empty:
            return
        events = members[schema.columns("events")]
        rows = [(r["event_id"], inc, pd.Timestamp(r["ts"]).to_pydatetime(),
                 json.dumps(r, sort_keys=True, default=str))
                for r, inc in zip(json_rows(events), members["incident_id"])]
        with self.state.transaction() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO incident_events (event_id, incident_id, ts, body) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (event_id) DO UPDATE SET incident_id = EXCLUDED.incident_id"
                " WHERE incident_events.incident_id <> EXCLUDED.incident_id", rows)

    def events(self, incident_ids: list[str] | None = None, event_ids: list[str] | None = None,
               ) -> pd.DataFrame:
        """The stored events of these incidents (or with these ids): validated events + incident_id."""
        if incident_ids is not None:
            got = self._read("SELECT incident_id, body FROM incident_events "
                             "WHERE incident_id = ANY(%s) ORDER BY ts, event_id", (list(incident_ids),))
        else:
            got = self._read("SELECT incident_id, body FROM incident_events "
                             "WHERE event_id = ANY(%s) ORDER BY ts, event_id", (list(event_ids or []),))
        if not got:
            return schema.empty("events").assign(incident_id=pd.Series(dtype=object))
        frame = pd.DataFrame([json.loads(b) for _, b in got], columns=schema.columns("events"))
        return schema.validate(frame, "events").assign(incident_id=[i for i, _ in got])


def open_shared(state) -> SharedState | None:
    """The ``SharedState`` of a PostgreSQL state store; None for SQLite (one server)."""
    return SharedState(state) if isinstance(state, PostgresState) else None

