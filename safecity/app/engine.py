"""The live engine: one replay of the city per server process, shared by every browser session.

``ReplayEngine`` replays a recorded (or synthetic) city on a simulated clock:
each ``step`` moves ``now`` forward by ``speed`` simulated seconds per wall
second, fuses the events seen so far into incidents and keeps them in a
``Store`` where operators' dispatches and their audit records go.
``get_engine`` starts one engine per process and advances it from one
background thread; sessions only read its state (and call ``dispatch``), so
opening a second browser never starts a second pipeline.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import param

from safecity.incidents import fusion
from safecity.dispatch import units as unit_ops
from safecity.dispatch.recommend import recommend
from safecity.dispatch.network import RoadNetwork
from safecity.data.citydir import CityData, read_city
from safecity.data.store import Store

#: Simulated seconds per wall second by default: three days of the demo city replay in ~1.5 h.
DEFAULT_SPEED = 60.0


class ReplayEngine(param.Parameterized):
    """A city replayed on a simulated clock: incidents so far, units, and the operators' store."""

    now = param.Date(doc="The simulated moment: events up to it have happened.")
    speed = param.Number(default=DEFAULT_SPEED, bounds=(0, None),
                         doc="Simulated seconds per wall second.")
    tick = param.Integer(default=0, doc="How many times the engine has advanced.")
    version = param.Integer(default=0, doc="Bumped whenever incidents, units or the audit change.")

    def __init__(self, city: CityData, state_dir: str | os.PathLike, start=None, **params):
        self.city = city
        self.store = Store(state_dir)
        self.network = RoadNetwork.from_tables(city.nodes, city.edges)
        self._lock = threading.RLock()
        events = city.events.sort_values("ts", kind="stable").reset_index(drop=True)
        self._events = events
        if start is None:  # an hour in, so an operator opening the page sees a queue at once
            start = events["ts"].min() + pd.Timedelta(hours=1) if len(events) else city.units["ts"].min()
        params.setdefault("now", _naive_utc(start))
        super().__init__(**params)
        self._n_seen = -1
        self.incidents = fusion.fuse(events.iloc[:0])[0]
        # Register every unit as the operators' store knows it: its state at the start.
        roster = city.units[city.units["ts"] <= self._now_utc()]
        roster = (roster if len(roster) else city.units).sort_values("ts").drop_duplicates(
            "unit_id", keep="last")
        if self.store.read("unit_status").empty:
            self.store.append("units", roster.reset_index(drop=True))
        self._refresh()

    def _now_utc(self) -> pd.Timestamp:
        return pd.Timestamp(self.now, tz="UTC")

    def step(self, wall_seconds: float = 1.0) -> None:
        """Advance the clock by ``wall_seconds * speed`` and take in the events that happened."""
        with self._lock:
            end = _naive_utc(self._events["ts"].max()) if len(self._events) else None
            new = pd.Timestamp(self.now) + pd.Timedelta(seconds=wall_seconds * self.speed)
            if end is not None:
                new = min(new, max(end, pd.Timestamp(self.now)))
            self.now = new.to_pydatetime(warn=False)
            self._refresh()
            self.tick += 1

    def _refresh(self) -> None:
        n = int((self._events["ts"] <= self._now_utc()).sum())
        if n == self._n_seen:
            return
        self._n_seen = n
        fused, _ = fusion.fuse(self._events.iloc[:n])
        known = set(self.store.read("incidents")["incident_id"])
        fresh = fused[~fused["incident_id"].isin(known)]
        if len(fresh):  # never upsert known ones: that would reopen a dispatched incident
            self.store.append("incidents", fresh)
        self.incidents = fused
        self.version += 1

    def inject(self, events: pd.DataFrame) -> None:
        """Take in events that arrive while the replay runs (a live feed, a benchmark's marker).

        Events stamped at or before ``now`` reach the incidents at once, not at the next step.
        """
        with self._lock:
            self._events = pd.concat([self._events, events], ignore_index=True).sort_values(
                "ts", kind="stable").reset_index(drop=True)
            self._n_seen = -1  # fuse again even if the count of events so far looks unchanged
            self._refresh()

    def incident_queue(self) -> pd.DataFrame:
        """The incidents so far, newest first, with the status operators gave them."""
        with self._lock:
            status = self.store.read("incidents").set_index("incident_id")["status"]
            inc = self.incidents.assign(status=self.incidents["incident_id"].map(status)
                                        .fillna(self.incidents["status"]))
        return inc.sort_values(["priority", "ts"], ascending=[True, False]).reset_index(drop=True)

    def unit_status(self) -> pd.DataFrame:
        with self._lock:
            return self.store.read("unit_status").sort_values("unit_id").reset_index(drop=True)

    def positions(self) -> pd.DataFrame:
        """Each unit's last replayed report at ``now``."""
        u = self.city.units[self.city.units["ts"] <= self._now_utc()]
        return u.sort_values("ts").drop_duplicates("unit_id", keep="last").reset_index(drop=True)

    def audit(self, last: int = 10) -> pd.DataFrame:
        with self._lock:
            log = self.store.read("audit_log")
        return log.sort_values("audit_id", ascending=False).head(last).reset_index(drop=True)

    def recommended(self, incident_id: str, top: int = 5) -> pd.DataFrame:
        """Available units ranked by travel time to the incident (the kinds it needs)."""
        inc = self.incidents[self.incidents["incident_id"] == incident_id]
        if inc.empty or pd.isna(inc["lon"].iloc[0]):
            return self.unit_status().query("status == 'available'")
        kinds = fusion.DEFAULT_NEEDS.get(inc["kind"].iloc[0], {"police": 1}).keys()
        return recommend(float(inc["lon"].iloc[0]), float(inc["lat"].iloc[0]), self.unit_status(),
                         self.network, kinds=tuple(kinds), top=top)

    def dispatch(self, unit_id: str, incident_id: str, actor: str) -> pd.Series:
        """Send a unit: its status and the incident change, and the audit log records who did it."""
        with self._lock:
            row = unit_ops.dispatch(self.store, unit_id, incident_id, actor,
                                    ts=max(self._now_utc(), pd.Timestamp.now(tz="UTC")))
            self.version += 1
        return row


def _naive_utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tz is not None else ts


_ENGINES: dict[str, ReplayEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(data_dir: str | os.PathLike, state_dir: str | os.PathLike | None = None,
               speed: float | None = None, interval_s: float = 1.0,
               run: bool = True) -> ReplayEngine:
    """The process's one engine for ``data_dir``, created and started on the first call.

    ``state_dir`` (default ``$SAFECITY_STATE_DIR``, else a new temporary folder)
    holds the operators' store; ``speed`` defaults to ``$SAFECITY_REPLAY_SPEED``.
    """
    key = str(Path(data_dir).resolve())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            state_dir = state_dir or os.environ.get("SAFECITY_STATE_DIR") or tempfile.mkdtemp(
                prefix="safecity-live-")
            speed = speed if speed is not None else float(
                os.environ.get("SAFECITY_REPLAY_SPEED", DEFAULT_SPEED))
            engine = ReplayEngine(read_city(data_dir), state_dir, speed=speed)
            if run:
                _start(engine, interval_s)
            _ENGINES[key] = engine
    return engine


def _start(engine: ReplayEngine, interval_s: float) -> None:
    def loop() -> None:
        last = time.monotonic()
        while True:
            time.sleep(interval_s)
            now = time.monotonic()
            try:
                engine.step(now - last)
            except Exception as exc:  # a bad batch must not stop the live view
                engine.param.warning(f"replay step failed: {exc}")
            last = now

    threading.Thread(target=loop, name="safecity-replay", daemon=True).start()
