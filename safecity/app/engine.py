"""The engine: one city state per server process, fed by sources, read by every session.

``LiveEngine`` takes rows the way a source sends them (``ingest(table, rows, source)``:
the ingest API's handlers, the MQTT bridge through the API, a camera worker, or the
demo's replay all call it), stores them durably in the inbox before acknowledging,
fuses arriving events into incidents incrementally (``incidents.live.LiveFusion``),
moves units from AVL reports, and keeps incidents, unit status and the audit in the
state store (SQLite by default, PostgreSQL with ``state=``). A background thread
(``get_engine``) ticks it every second: the clock, the inbox's flush into the Parquet
history, and the continuous analytics.

``ReplayEngine`` is the demo: the same engine, plus a recorded (or synthetic) city
replayed on a simulated clock that posts its events and unit positions through
``ingest`` as a source would, so the replay and a real city share every line after
ingestion. Sessions only read the engine (and call ``dispatch``): opening a second
browser never starts a second pipeline.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import param

from safecity.data.citydir import CityData, read_city
from safecity.data.inbox import Inbox, json_rows
from safecity.data.store import Store, open_state
from safecity.dispatch import units as unit_ops
from safecity.dispatch.network import RoadNetwork
from safecity.dispatch.recommend import recommend
from safecity.incidents import fusion, review
from safecity.incidents.live import LiveFusion
from safecity.ingest.rows import complete_units, parse_rows

log = logging.getLogger(__name__)

#: Simulated seconds per wall second by default: three days of the demo city replay in ~1.5 h.
DEFAULT_SPEED = 60.0
#: How often acknowledged rows move from the inbox into the Parquet history.
FLUSH_EVERY_S = 5.0


class LiveEngine(param.Parameterized):
    """A city as it happens: incidents fused from arriving events, units, the operators' store."""

    now = param.Date(doc="The engine's clock: the wall clock (UTC, naive), or a replay's.")
    tick = param.Integer(default=0, doc="How many times the engine has advanced.")
    version = param.Integer(default=0, doc="Bumped whenever incidents, units or the audit change.")
    max_ahead_s = param.Number(default=300.0, allow_None=True,
                               doc="How far ahead of the server's clock a row may be stamped.")

    #: Several servers on one PostgreSQL state: the ``app.follower.StateFollower`` that
    #: keeps this engine in step with the others (``follow``); None for one server.
    shared = None

    def __init__(self, city: CityData, state_dir: str | os.PathLike, state: str | None = None,
                 rules: fusion.FusionRules | None = None, **params):
        self.city = city
        self.state_dir = Path(state_dir)
        self.store = Store(self.state_dir, state=open_state(state, self.state_dir))
        self.inbox = Inbox(self.state_dir / "inbox.sqlite")
        self.network = RoadNetwork.from_tables(city.nodes, city.edges)
        self.fusion = LiveFusion(rules)
        self._lock = threading.RLock()
        self._pending: list[pd.DataFrame] = []  # stored events waiting for the fusion lock
        self._pending_lock = threading.Lock()
        self.started = time.time()
        self.last_seen: dict[str, pd.Timestamp] = {}      # source -> last acknowledged batch
        self.newest: dict[str, pd.Timestamp] = {}         # table -> newest row time received
        self.analytics: list = []  # callables (engine, table, new rows) run after each batch
        self.continuous = None     # LiveAnalytics: anomalies and forecasts (``start_analytics``)
        self._last_flush = time.monotonic()
        self._routes: dict[tuple, pd.DataFrame] = {}  # (version, incident, top) -> routes
        self._routes_lock = threading.Lock()
        self._camera_fields: pd.DataFrame | None = None
        params.setdefault("now", _naive_utc(pd.Timestamp.now(tz="UTC")))
        super().__init__(**params)
        self._resume()

    # ------------------------------------------------------------------ state on start
    def _resume(self) -> None:
        """Incidents, units and the open incidents' events back from the store (after a restart)."""
        stored = self.store.read("incidents")
        horizon = pd.Timedelta(seconds=self.fusion._horizon)
        since = (stored["ts"].max() - horizon) if len(stored) else None
        recent = self.inbox.read("events", since=since)
        if since is not None:
            recent = pd.concat([self.store.read("events", start=since), recent]).drop_duplicates(
                "event_id")
        self.incidents = stored
        self.fusion.seed(stored, recent)
        known = set(stored["incident_id"])
        missed = [i for i in self.fusion.records_ if i not in known]
        if missed:  # events acknowledged before a crash that came before their fusion was stored
            self._store_incidents(pd.DataFrame([self.fusion.records_[i] for i in missed]))
        self._positions = self.store.read("unit_status")
        for table in ("events", "observations", "units"):
            last = self.inbox.read(table, since=pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=1))
            if len(last):
                self.newest[table] = last["ts"].max()

    # ------------------------------------------------------------------ ingest
    def ingest(self, table: str, rows, source: str) -> dict:
        """Check, store durably, then take in a batch; ``{"accepted": n, "duplicates": m}``.

        ``rows`` are the posted JSON objects (``parse_rows`` checks them and raises
        ``RowError``). When this returns, the accepted rows are on disk.
        """
        latest = (pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=self.max_ahead_s)
                  if self.max_ahead_s is not None else None)
        df = parse_rows(table, rows, latest=latest)
        stored_table = "events" if table == "police-log" else table
        if stored_table == "units":
            with self._lock:
                new = self._take_positions(df, source)
        else:
            new = self.inbox.add(stored_table, df, source)  # its own lock and transaction
            if stored_table == "events" and len(new):
                self._fuse_pending(new)
        with self._lock:
            now = pd.Timestamp.now(tz="UTC")
            self.last_seen[source] = now
            if len(df):
                self.newest[stored_table] = max(df["ts"].max(), self.newest.get(
                    stored_table, df["ts"].max()))
        for hook in self.analytics:  # e.g. the usual-level scorer on closed bins
            hook(self, stored_table, new)
        return {"accepted": int(len(new)), "duplicates": int(len(rows) - len(new))}

    def _fuse_pending(self, new: pd.DataFrame) -> None:
        """Fuse ``new`` together with the batches other requests stored meanwhile.

        A fusion costs about the same for 1 or 500 events (bench/ingest.py), so the
        request holding the lock fuses every batch waiting for it in one go; each
        request still returns only once its events are fused.
        """
        with self._pending_lock:
            self._pending.append(new)
        with self._lock:
            with self._pending_lock:
                waiting, self._pending = self._pending, []
            if waiting:
                self._fuse(pd.concat(waiting, ignore_index=True))

    def _fuse(self, events: pd.DataFrame) -> None:
        # several servers: under the state's writer lock, after the others' changes
        with self.shared.fusing() if self.shared is not None else contextlib.nullcontext():
            changed = self.fusion.add(events, validated=True)  # by parse_rows
            if len(changed):
                self._store_incidents(changed)

    def _store_incidents(self, changed: pd.DataFrame) -> None:
        """Upsert new or changed incidents, keeping the status operators gave them."""
        status = self.incidents.set_index("incident_id")["status"]
        kept = changed["incident_id"].map(status)
        operator = kept.notna() & (changed["status"] != "merged")
        changed = changed.assign(status=changed["status"].where(~operator, kept))
        with self.store.state.transaction():  # an incident and its events, together
            self.store.state.upsert("incidents", changed)
            if self.shared is not None:  # the other servers' fusions link to it
                self.shared.publish(changed)
        rest = self.incidents[~self.incidents["incident_id"].isin(changed["incident_id"])]
        self.incidents = pd.concat([rest, changed], ignore_index=True) if len(rest) else \
            changed.reset_index(drop=True)
        self.version += 1

    def _take_positions(self, df: pd.DataFrame, source: str) -> pd.DataFrame:
        """AVL: status checked and audited as ``ingest_positions`` does, rows kept in the inbox."""
        kept: list[pd.DataFrame] = []

        def keep(full: pd.DataFrame) -> pd.DataFrame:
            kept.append(self.inbox.add("units", full, source))
            return kept[-1]

        state = self.store.state.read("unit_status")
        full = complete_units(df, state)  # a new unit must come with its kind
        register = not full["unit_id"].isin(state["unit_id"]).all()
        unit_ops.ingest_positions(self.store, full, actor=source, register=bool(register),
                                  keep=keep)
        new = kept[0] if kept else df.iloc[:0]
        if len(new):
            self._positions = self.store.state.read("unit_status")
            self.version += 1
        return new

    # ------------------------------------------------------------------ clock
    def step(self, wall_seconds: float = 1.0) -> None:
        """One tick: the clock moves on, acknowledged rows move to the history when due."""
        with self._lock:
            self.now = _naive_utc(pd.Timestamp.now(tz="UTC")).to_pydatetime(warn=False)
            self.tick += 1
        self.housekeeping()

    def start_analytics(self, **kwargs):
        """Score closed bins and keep the forecast fresh from now on (``app.analytics``)."""
        from safecity.app.analytics import LiveAnalytics

        self.continuous = LiveAnalytics(self, **kwargs)
        return self.continuous

    def housekeeping(self, force: bool = False) -> None:
        if self.continuous is not None:
            try:
                self.continuous.tick(pd.Timestamp(self.now, tz="UTC"))
            except Exception as exc:  # analytics must never stop ingestion
                self.continuous.last_error = str(exc)
        if force or time.monotonic() - self._last_flush >= FLUSH_EVERY_S:
            self._last_flush = time.monotonic()
            self.inbox.flush(self.store)

    # ------------------------------------------------------------------ what sessions read
    def incident_queue(self) -> pd.DataFrame:
        """The incidents so far (merged ones left out), most urgent and newest first."""
        with self._lock:
            inc = self.incidents[self.incidents["status"] != "merged"]
        return inc.sort_values(["priority", "ts"], ascending=[True, False]).reset_index(drop=True)

    def incidents_since(self, since=None) -> pd.DataFrame:
        """Incidents whose time is at or after ``since`` (all with None), oldest first."""
        with self._lock:
            inc = self.incidents
        if since is not None:
            inc = inc[inc["ts"] >= pd.Timestamp(since)]
        return inc.sort_values(["ts", "incident_id"]).reset_index(drop=True)

    def unit_status(self) -> pd.DataFrame:
        with self._lock:
            return self.store.read("unit_status").sort_values("unit_id").reset_index(drop=True)

    def positions(self) -> pd.DataFrame:
        """Each unit's last reported position (and its status now)."""
        with self._lock:
            return self._positions.sort_values("unit_id").reset_index(drop=True)

    def audit(self, last: int = 10) -> pd.DataFrame:
        with self._lock:
            log = self.store.read("audit_log")
        return log.sort_values("audit_id", ascending=False).head(last).reset_index(drop=True)

    def recommended(self, incident_id: str, top: int = 5) -> pd.DataFrame:
        """Available units ranked by travel time to the incident (the kinds it needs)."""
        inc = self.incidents[self.incidents["incident_id"] == incident_id]
        if inc.empty or pd.isna(inc["lon"].iloc[0]):
            return self.unit_status().query("status == 'available'")
        kinds = self.fusion.rules.units_needed(inc["kind"].iloc[0]).keys()
        return recommend(float(inc["lon"].iloc[0]), float(inc["lat"].iloc[0]), self.unit_status(),
                         self.network, kinds=tuple(kinds), top=top)

    def routes(self, incident_id: str, top: int = 3) -> pd.DataFrame:
        """The recommended units' road routes to the incident, for the map.

        Columns unit_id, kind, travel_time_s, distance_m, path (the route's
        [(lon, lat), ...] from the unit's nearest road node to the incident's)
        and eta (the engine's clock plus the travel time, UTC): ``recommended``'s
        ranking and times, its reachable units only. The routes are worked out
        once per (``version``, incident, ``top``); the ETA follows the clock.
        """
        key = (self.version, incident_id, top)
        with self._routes_lock:
            table = self._routes.get(key)
        if table is None:
            rec = self.recommended(incident_id, top=top)
            if "route" not in rec:  # an unknown or unlocated incident: nothing to route to
                table = _empty_routes()
            else:
                rec = rec[rec["reachable"].astype(bool)]
                table = pd.DataFrame({
                    "unit_id": rec["unit_id"].astype(str).to_numpy(),
                    "kind": rec["kind"].astype(str).to_numpy(),
                    "travel_time_s": rec["travel_time_s"].to_numpy(float),
                    "distance_m": rec["distance_m"].to_numpy(float),
                    "path": pd.Series([[tuple(p) for p in self.network.polyline(r)] for r in rec["route"]],
                                      dtype=object)})
            with self._routes_lock:
                if len(self._routes) >= 64 or any(k[0] != self.version for k in self._routes):
                    self._routes.clear()  # an older version's routes are stale: units moved or left
                self._routes[key] = table
        now = pd.Timestamp(self.now, tz="UTC")
        return table.assign(eta=now + pd.to_timedelta(table["travel_time_s"], unit="s"))

    def camera_fields(self) -> pd.DataFrame:
        """Each camera's place and field of view on the map (the city's ``cameras.yml``).

        Columns camera_id, lon, lat (the camera) and geometry (its field of
        view, a lon/lat polygon from its ground calibration,
        ``CameraConfig.field_of_view``); cameras without a ground mapping placed
        on the map are left out (``attrs["skipped"]``: camera id -> why). Worked out once: the installation does not change
        while the server runs.
        """
        if self._camera_fields is None:
            rows, skipped = [], {}
            cameras = self.city.cameras.cameras if self.city.cameras is not None else []
            for cam in cameras:
                try:
                    view = cam.field_of_view()
                except ValueError as exc:  # not placed on the map: said why, not drawn
                    skipped[cam.id] = str(exc)
                    continue
                at = cam.position or cam.ground.origin
                rows.append({"camera_id": cam.id, "lon": at.lon, "lat": at.lat, "geometry": view})
            fields = pd.DataFrame(rows, columns=["camera_id", "lon", "lat", "geometry"])
            fields.attrs["skipped"] = skipped
            self._camera_fields = fields
        return self._camera_fields

    def dispatch(self, unit_id: str, incident_id: str, actor: str) -> pd.Series:
        """Send a unit: its status and the incident change, and the audit log records who did it."""
        with self._lock:
            try:
                row = unit_ops.dispatch(self.store, unit_id, incident_id, actor,
                                        ts=self._action_time())
            except unit_ops.TransitionError as exc:  # e.g. an operator on another server was quicker
                raise ValueError(f"unit '{unit_id}' is {exc.current} now (another operator may "
                                 "have sent it a moment ago); choose another unit") from exc
            self.incidents.loc[self.incidents["incident_id"] == incident_id, "status"] = "dispatched"
            self.fusion.set_status(incident_id, "dispatched")
            self._positions = self.store.state.read("unit_status")
            self.version += 1
        return row

    def _set_incident(self, row: pd.Series) -> None:
        """Take an operator's change of an incident's status into the engine's copy (under the lock)."""
        self.incidents.loc[self.incidents["incident_id"] == row["incident_id"], "status"] = row["status"]
        self.fusion.set_status(row["incident_id"], row["status"])
        self.version += 1

    def acknowledge(self, incident_id: str, actor: str) -> pd.Series:
        """An operator has seen the incident (audited); it no longer counts as new."""
        with self._lock:
            row = review.acknowledge(self.store, incident_id, actor, ts=self._action_time())
            self._set_incident(row)
        return row

    def close_incident(self, incident_id: str, outcome: str, actor: str) -> pd.Series:
        """Close an incident with an outcome (``review.CLOSE_OUTCOMES``), audited."""
        with self._lock:
            row = review.close(self.store, incident_id, outcome, actor, ts=self._action_time())
            self._set_incident(row)
        return row

    def incident_events(self, incident_id: str) -> pd.DataFrame:
        """The events fused into an incident (its evidence), oldest first."""
        with self._lock:
            inc = self.incidents[self.incidents["incident_id"] == incident_id]
            members = self.fusion.members_.get(incident_id)
        if inc.empty:
            raise KeyError(f"unknown incident '{incident_id}'")
        ids = json.loads(inc["event_ids"].iloc[0])
        if members is not None and set(ids) <= set(members["event_id"]):
            found = members[members["event_id"].isin(ids)]
        else:
            found = self._events_from(inc["ts"].iloc[0] - pd.Timedelta(hours=1), ids)
        cols = [c for c in found.columns if not c.startswith("_")]
        return found[cols].sort_values(["ts", "event_id"]).reset_index(drop=True)

    def _events_from(self, since: pd.Timestamp, ids) -> pd.DataFrame:
        """Events with these ids from the inbox, then the history (for older ones)."""
        ids = set(ids)
        found = self.inbox.read("events", since=since)
        found = found[found["event_id"].isin(ids)]
        if len(found) < len(ids):
            older = self.store.read("events", start=since)
            found = pd.concat([found, older[older["event_id"].isin(ids)]]).drop_duplicates("event_id")
        if len(found) < len(ids) and self.shared is not None:  # fused on another server
            other = self.shared.events(ids - set(found["event_id"]))
            found = pd.concat([found, other[found.columns]]).drop_duplicates("event_id")
        return found

    def review(self, alarm_id: str, verdict: str, actor: str, reason: str | None = None,
               alarm_type: str | None = None) -> pd.Series:
        """Record an operator's verdict on an alarm: an incident or an event (audited).

        ``alarm_type`` None: an incident id if one is known, else an event id.
        """
        checked = review.Verdict(verdict, reason)
        with self._lock:
            inc = self.incidents[self.incidents["incident_id"] == alarm_id]
        if alarm_type == "incident" or (alarm_type is None and len(inc)):
            if inc.empty:
                raise KeyError(f"unknown incident '{alarm_id}'")
            alarm, kind = inc.iloc[0], "incident"
        else:
            alarm, kind = self._event(alarm_id), "event"
        with self._lock:
            row = review.record_verdict(self.store, alarm, kind, checked, actor,
                                        ts=self._action_time())
            self.version += 1
        return row

    def _event(self, event_id: str) -> pd.Series:
        with self._lock:
            for members in self.fusion.members_.values():
                hit = members[members["event_id"] == event_id]
                if len(hit):
                    return hit.iloc[0]
        found = self._events_from(None, [event_id])
        if found.empty:
            raise KeyError(f"unknown event '{event_id}'")
        return found.iloc[0]

    def verdicts(self) -> pd.DataFrame:
        """Every alarm's latest verdict (the ledger's input), newest first."""
        return self.store.read("verdicts").sort_values("ts", ascending=False).reset_index(drop=True)

    def _action_time(self) -> pd.Timestamp:
        """When an operator acted: the engine's clock, never before the wall clock."""
        return max(pd.Timestamp(self.now, tz="UTC"), pd.Timestamp.now(tz="UTC"))

    def health(self) -> dict:
        """What ``GET /api/v1/health`` answers: is it running, how far behind, what is queued."""
        now = pd.Timestamp.now(tz="UTC")
        lag = {t: round((now - ts).total_seconds(), 3) for t, ts in self.newest.items()}
        return {"status": "ok", "uptime_s": round(time.time() - self.started, 1),
                "lag_s": lag, "queue_depth": self.inbox.pending(),
                "sources": {s: ts.isoformat() for s, ts in sorted(self.last_seen.items())},
                "incidents": int((self.incidents["status"] != "merged").sum()),
                "analytics": self.continuous.status() if self.continuous is not None else None,
                "shared_state": self.shared.status() if self.shared is not None else None}

    def close(self) -> None:
        self.housekeeping(force=True)
        self.inbox.close()


class ReplayEngine(LiveEngine):
    """The demo: a recorded city replayed on a simulated clock, posted through ``ingest``."""

    max_ahead_s = param.Number(default=None, allow_None=True,
                               doc="None: a recorded city may be dated in the future.")
    speed = param.Number(default=DEFAULT_SPEED, bounds=(0, None),
                         doc="Simulated seconds per wall second.")

    def __init__(self, city: CityData, state_dir: str | os.PathLike, start=None, **params):
        events = city.events.sort_values("ts", kind="stable").reset_index(drop=True)
        if start is None:  # an hour in, so an operator opening the page sees a queue at once
            start = events["ts"].min() + pd.Timedelta(hours=1) if len(events) else city.units["ts"].min()
        params["now"] = _naive_utc(start)
        self._events = events
        self._avl = city.units.sort_values("ts", kind="stable").reset_index(drop=True)
        self._observations = city.observations.sort_values("ts", kind="stable").reset_index(drop=True)
        self._posted = {"events": 0, "units": 0, "observations": 0}
        super().__init__(city, state_dir, **params)
        if self.store.read("unit_status").empty:  # every unit as it was at the start
            roster = self._avl[self._avl["ts"] <= self._now_utc()]
            roster = (roster if len(roster) else self._avl).drop_duplicates("unit_id", keep="last")
            self._post("units", roster)
        self._replay()

    def _now_utc(self) -> pd.Timestamp:
        return pd.Timestamp(self.now, tz="UTC")

    def step(self, wall_seconds: float = 1.0) -> None:
        """Advance the clock by ``wall_seconds * speed`` and post what happened meanwhile."""
        with self._lock:
            end = _naive_utc(self._events["ts"].max()) if len(self._events) else None
            new = pd.Timestamp(self.now) + pd.Timedelta(seconds=wall_seconds * self.speed)
            if end is not None:
                new = min(new, max(end, pd.Timestamp(self.now)))
            self.now = new.to_pydatetime(warn=False)
            self._replay()
            self.tick += 1
        self.housekeeping()

    def _replay(self) -> None:
        now = self._now_utc()
        for table, rows in (("events", self._events), ("units", self._avl),
                            ("observations", self._observations)):
            n = int((rows["ts"] <= now).sum())
            if n > self._posted[table]:
                self._post(table, rows.iloc[self._posted[table]:n])
                self._posted[table] = n

    def _post(self, table: str, df: pd.DataFrame) -> None:
        """What a source would send: JSON-able rows (units with their kind, not their status)."""
        if table == "units":
            df = df[["unit_id", "ts", "lon", "lat", "kind", "station"]]
        self.ingest(table, json_rows(df), source="replay")

    def inject(self, events: pd.DataFrame) -> None:
        """Events that arrive while the replay runs (a benchmark's marker), taken in at once."""
        self._post("events", events)


def _empty_routes() -> pd.DataFrame:
    return pd.DataFrame({"unit_id": pd.Series(dtype=object), "kind": pd.Series(dtype=object),
                         "travel_time_s": pd.Series(dtype=float), "distance_m": pd.Series(dtype=float),
                         "path": pd.Series(dtype=object)})


def _naive_utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tz is not None else ts


_ENGINES: dict[str, LiveEngine] = {}
_ENGINES_LOCK = threading.Lock()
LIVE_ENV = "SAFECITY_LIVE"


def get_engine(data_dir: str | os.PathLike, state_dir: str | os.PathLike | None = None,
               speed: float | None = None, interval_s: float = 1.0,
               run: bool = True) -> LiveEngine:
    """The process's one engine for ``data_dir``, created and started on the first call.

    With ``$SAFECITY_LIVE=1`` (``safecity serve --live``) it is a ``LiveEngine`` fed by
    the ingest API, on ``data_dir``'s roads and zones; otherwise the demo's
    ``ReplayEngine``. ``state_dir`` (default ``$SAFECITY_STATE_DIR``, else a new
    temporary folder) holds the store; ``$SAFECITY_STATE`` may put the operational state
    in PostgreSQL; ``speed`` defaults to ``$SAFECITY_REPLAY_SPEED``.
    """
    key = str(Path(data_dir).resolve())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            state_dir = state_dir or os.environ.get("SAFECITY_STATE_DIR") or tempfile.mkdtemp(
                prefix="safecity-live-")
            state = os.environ.get("SAFECITY_STATE") or None
            if os.environ.get(LIVE_ENV) == "1":
                engine = LiveEngine(read_city(data_dir, store=False), state_dir, state=state)
            else:
                speed = speed if speed is not None else float(
                    os.environ.get("SAFECITY_REPLAY_SPEED", DEFAULT_SPEED))
                engine = ReplayEngine(read_city(data_dir), state_dir, state=state, speed=speed)
            if run:
                from safecity.app.follower import follow

                follow(engine)  # several servers on one PostgreSQL state; nothing for SQLite
                engine.start_analytics()
                _start(engine, interval_s)
            _ENGINES[key] = engine
            log.info("started the %s on %s", type(engine).__name__, key)
    return engine


def live_engine() -> LiveEngine | None:
    """The process's engine when there is one (the ingest API's handlers use it)."""
    with _ENGINES_LOCK:
        return next(iter(_ENGINES.values()), None)


def _start(engine: LiveEngine, interval_s: float) -> None:
    def loop() -> None:
        last = time.monotonic()
        while True:
            time.sleep(interval_s)
            now = time.monotonic()
            try:
                engine.step(now - last)
            except Exception as exc:  # a bad batch must not stop the live view
                engine.param.warning(f"engine step failed: {exc}")
            last = now

    threading.Thread(target=loop, name="safecity-engine", daemon=True).start()
