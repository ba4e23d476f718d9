"""Several servers, one state: each engine follows what the others write to PostgreSQL.

Each ``safecity serve`` process has its own engine, which keeps incidents, unit
positions and its fusion in memory for its sessions. With ``--state postgresql://...``
several servers share one state; ``StateFollower`` keeps one engine in step with the
others:

- **Seeing their changes**: a thread waits for PostgreSQL's ``NOTIFY`` (a commit that
  changed the state), or ``poll_s`` at most, then reads what changed since it last
  looked (``data.shared.SharedState``): changed incidents replace the engine's copies
  and are adopted by its fusion (with their events, so a new event posted here joins
  an incident another server made); changed unit statuses replace its positions; any
  change bumps the engine's ``version``, which refreshes every session's page.
- **Not clobbering them**: a server fuses the events posted to it, but under the
  state's writer lock (``fusing``) and only after catching up, so an incident grown
  or acknowledged by another server a moment ago is grown from its current row, and
  two servers never fuse at once. Operators' actions (dispatch, acknowledge, close,
  verdicts) check the stored state in the same locked transaction as their write
  (``dispatch.units``, ``incidents.review``): two operators dispatching one unit at
  once from two servers, one wins and the other is told the unit is taken.
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator

import pandas as pd

from safecity.data.shared import SharedState, open_shared

log = logging.getLogger(__name__)

#: The longest a change waits to be seen when a notification is lost (seconds).
POLL_S = 2.0
#: How often old change records are pruned (seconds).
PRUNE_EVERY_S = 600.0


class StateFollower:
    """Keeps ``engine`` in step with the other servers writing its PostgreSQL state."""

    def __init__(self, engine, shared: SharedState, poll_s: float = POLL_S):
        self.engine = engine
        self.shared = shared
        self.poll_s = poll_s
        self.caught_up = 0      # how many catch-ups changed something (for health and tests)
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with engine._lock:
            self.seen = shared.last_change()  # the engine read everything on start
            self._share_own()
            self._adopt(engine.incidents, recent_only=True)

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def fusing(self) -> Iterator[None]:
        """Hold the state's writer lock, caught up with every other server's changes."""
        with self.engine._lock, self.shared.state.transaction():
            self.catch_up()
            yield

    def publish(self, changed: pd.DataFrame) -> None:
        """The events of incidents this server fused, for the other servers' fusions."""
        fusion = self.engine.fusion
        parts = [fusion.members_[i].assign(incident_id=i) for i in changed["incident_id"]
                 if i in fusion.members_]
        if parts:
            self.shared.put_events(pd.concat(parts, ignore_index=True))

    def _share_own(self) -> None:
        """On start: the events of the incidents this server's fusion holds (a restart's)."""
        records = list(self.engine.fusion.records_)
        if records:
            self.publish(pd.DataFrame({"incident_id": records}))

    # ------------------------------------------------------------------ reading
    def catch_up(self) -> bool:
        """Take in what the other servers changed since the last look; True if anything did."""
        engine = self.engine
        with engine._lock:
            seq, changed, complete = self.shared.changes(self.seen)
            if not complete:  # fell behind the pruning: read everything again
                log.warning("state changes after %s were pruned: reading the whole state", self.seen)
                changed = {"incidents": None, "unit_status": None, "audit_log": []}
            if not changed:
                return False
            if "incidents" in changed:
                self._take_incidents(self.shared.read("incidents", changed["incidents"]),
                                     whole=changed["incidents"] is None)
            if "unit_status" in changed:
                self._take_units(self.shared.read("unit_status", changed["unit_status"]),
                                 whole=changed["unit_status"] is None)
            self.seen = seq
            engine.version += 1  # every session redraws: incidents, units, audit or verdicts
            self.caught_up += 1
        return True

    def _take_incidents(self, rows: pd.DataFrame, whole: bool = False) -> None:
        engine = self.engine
        if whole:
            engine.incidents = rows.reset_index(drop=True)
        elif len(rows):
            rest = engine.incidents[~engine.incidents["incident_id"].isin(rows["incident_id"])]
            engine.incidents = pd.concat([rest, rows], ignore_index=True) if len(rest) else \
                rows.reset_index(drop=True)
        self._adopt(rows, recent_only=whole)

    def _adopt(self, rows: pd.DataFrame, recent_only: bool) -> None:
        """Give the engine's fusion these incidents (their events from the shared state)."""
        fusion = self.engine.fusion
        if recent_only and len(rows):  # older incidents cannot link to anything that arrives
            rows = rows[rows["ts"] >= rows["ts"].max() - pd.Timedelta(seconds=fusion._horizon)]
        missing = [r.incident_id for r in rows.itertuples(index=False)
                   if r.status != "merged" and not set(json.loads(r.event_ids)) <= set(
                       fusion.members_[r.incident_id]["event_id"]
                       if r.incident_id in fusion.members_ else ())]
        fusion.adopt(rows, self.shared.events(missing))

    def _take_units(self, rows: pd.DataFrame, whole: bool = False) -> None:
        engine = self.engine
        if whole:
            engine._positions = rows.reset_index(drop=True)
            return
        rest = engine._positions[~engine._positions["unit_id"].isin(rows["unit_id"])]
        engine._positions = pd.concat([rest, rows], ignore_index=True) if len(rest) else \
            rows.reset_index(drop=True)

    def events(self, event_ids) -> pd.DataFrame:
        """Events of shared incidents by id (evidence fused on another server)."""
        return self.shared.events(event_ids=list(event_ids))

    # ------------------------------------------------------------------ the thread
    def start(self) -> StateFollower:
        self._thread = threading.Thread(target=self._run, name="safecity-follower", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + 5)

    def _run(self) -> None:
        pruned = time.monotonic()
        while not self._stop.is_set():
            try:
                self.shared.wait(self.poll_s)  # a NOTIFY at once; else the poll's interval
                if self._stop.is_set():
                    return
                self.catch_up()
                if time.monotonic() - pruned >= PRUNE_EVERY_S:
                    pruned = time.monotonic()
                    self.shared.prune()
                self.last_error = None
            except Exception as exc:  # a lost connection: say so, wait, try again
                self.last_error = str(exc)
                log.warning("following the shared state failed: %s", exc)
                self._stop.wait(self.poll_s)

    def status(self) -> dict:
        """What the health report says of the following."""
        return {"seen": self.seen, "catch_ups": self.caught_up, "error": self.last_error}


def follow(engine, start: bool = True, poll_s: float = POLL_S) -> StateFollower | None:
    """Keep ``engine`` in step with other servers on its state; None for SQLite (one server)."""
    shared = open_shared(engine.store.state)
    if shared is None:
        return None
    follower = StateFollower(engine, shared, poll_s=poll_s)
    engine.shared = follower
    return follower.start() if start else follower
