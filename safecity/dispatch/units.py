"""Units: the status of each unit, its allowed transitions, and its position stream (AVL).

A unit's current state is its row of ``unit_status`` (the store's SQLite state);
its positions over time are the ``units`` history. Every status change goes
through ``check_transition``, whether an operator makes it (``set_status``,
``dispatch``) or it arrives with a position report (``ingest_positions``), so
the same rules hold everywhere and an impossible change is refused with a
``TransitionError`` before anything is written.

Allowed transitions (``TRANSITIONS``)::

    available       -> dispatched, out_of_service
    dispatched      -> en_route, available        (cancelled before leaving)
    en_route        -> on_scene, available        (cancelled on the way)
    on_scene        -> returning, available       (released on scene)
    returning       -> available, dispatched      (re-tasked on the way back)
    out_of_service  -> available

Staying in the same status is not a transition: ``set_status`` refuses it (an
operator dispatching a unit that is already dispatched has made a mistake),
while a position report with the unit's current status is just a new position.

``make_roster`` spreads a number of units over a city's stations.
"""
from __future__ import annotations

import pandas as pd

from safecity.data import schema
from safecity.data.store import Store

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "available": ("dispatched", "out_of_service"),
    "dispatched": ("en_route", "available"),
    "en_route": ("on_scene", "available"),
    "on_scene": ("returning", "available"),
    "returning": ("available", "dispatched"),
    "out_of_service": ("available",),
}
assert set(TRANSITIONS) == set(schema.UNIT_STATUSES)

#: Incidents a unit may still be dispatched to.
_DISPATCHABLE_INCIDENT = ("open", "acknowledged", "dispatched")


class TransitionError(ValueError):
    """A unit status change that the rules do not allow; nothing was changed."""

    def __init__(self, current: str, new: str, unit_id: str | None = None, where: str = ""):
        self.unit_id, self.current, self.new = unit_id, current, new
        self.allowed = TRANSITIONS.get(current, ())
        who = f"unit '{unit_id}'" if unit_id is not None else "a unit"
        allowed = ", ".join(self.allowed) or "nothing"
        super().__init__(f"{who}{where} cannot go from '{current}' to '{new}'; "
                         f"from '{current}' it may go to: {allowed}")


class UnknownUnitError(KeyError):
    """A unit that is not registered in the store (``Store.append('units', ...)`` registers)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def check_transition(current: str, new: str, unit_id: str | None = None,
                     where: str = "") -> None:
    """Raise ``TransitionError`` unless ``current -> new`` is in ``TRANSITIONS``."""
    for status in (current, new):
        if status not in TRANSITIONS:
            raise ValueError(f"unknown unit status '{status}'; statuses are "
                             f"{', '.join(schema.UNIT_STATUSES)}")
    if new not in TRANSITIONS[current]:
        raise TransitionError(current, new, unit_id, where)


def _current(store: Store, unit_id: str) -> pd.Series:
    status = store.state.read("unit_status")
    row = status[status["unit_id"] == unit_id]
    if row.empty:
        raise UnknownUnitError(f"unknown unit '{unit_id}'; register it with "
                               "Store.append('units', ...) first")
    return row.iloc[0]


def set_status(store: Store, unit_id: str, new_status: str, actor: str, ts=None,
               incident_id: str | None = None, reason: str | None = None,
               action: str = "set_status") -> pd.Series:
    """Change a unit's status and audit it in one transaction; return the new state row.

    The unit keeps its last known position. An impossible transition raises
    ``TransitionError`` and leaves status, audit log and positions unchanged.
    """
    with store.state.transaction():
        row = _current(store, unit_id)
        check_transition(row["status"], new_status, unit_id)
        now = pd.Timestamp.now(tz="UTC") if ts is None else pd.Timestamp(ts)
        now = now.tz_localize("UTC") if now.tz is None else now.tz_convert("UTC")
        # the state keeps the newest report; a change must not be older than it
        now = max(now, row["ts"])
        new = row.copy()
        new["status"], new["ts"] = new_status, now
        store.state.upsert("unit_status", new.to_frame().T)
        details = {"from": row["status"], "to": new_status}
        if incident_id is not None:
            details["incident_id"] = incident_id
        if reason is not None:
            details["reason"] = reason
        store.state.audit(actor, action, unit_id, details, ts=now)
    return new


def dispatch(store: Store, unit_id: str, incident_id: str, actor: str, ts=None) -> pd.Series:
    """An operator sends a unit to an incident: unit dispatched, incident dispatched, audited.

    All or nothing: an unknown or closed incident, or a unit that may not be
    dispatched, changes neither the unit nor the incident.
    """
    with store.state.transaction():
        incidents = store.state.read("incidents")
        incident = incidents[incidents["incident_id"] == incident_id]
        if incident.empty:
            raise KeyError(f"unknown incident '{incident_id}'")
        if incident["status"].iloc[0] not in _DISPATCHABLE_INCIDENT:
            raise ValueError(f"incident '{incident_id}' is {incident['status'].iloc[0]}; "
                             "units can only be dispatched to open incidents")
        new = set_status(store, unit_id, "dispatched", actor, ts=ts,
                         incident_id=incident_id, action="dispatch")
        if incident["status"].iloc[0] != "dispatched":
            store.state.upsert("incidents", incident.assign(status="dispatched"))
    return new


def ingest_positions(store: Store, avl: pd.DataFrame, actor: str = "avl",
                     register: bool = False, keep=None) -> int:
    """Store a batch of AVL reports (unit_id, lon, lat, ts, optional status); return rows added.

    Units must be registered; a report for an unknown unit refuses the whole
    batch with an error naming the unit and its row. With ``register`` (a full
    ``units`` table, as ``safecity store ingest units`` reads), an unknown
    unit is registered, and audited, from its earliest report, which must
    give its kind and status. A report whose status differs from the unit's
    previous one is checked with ``check_transition`` and audited. Reports not
    newer than the unit's current state are history only (this is what makes
    re-sending a batch store it once). All checks run, in one transaction with
    the writes, before anything is written.

    ``keep`` (the live server's inbox) stores the checked reports instead of the
    history and returns those that were new; only those change the state.
    """
    missing = [c for c in ("unit_id", "lon", "lat", "ts") if c not in avl.columns]
    if missing:
        raise ValueError(f"AVL batch lacks column(s) {', '.join(missing)}")
    if avl.empty:
        return 0
    if not avl.index.is_unique:  # row labels name the offending reports in errors
        avl = avl.reset_index(drop=True)
    reports = avl.assign(ts=schema.timestamps(avl["ts"], "units"))
    if "status" not in reports:
        reports["status"] = None
    with store.state.transaction():  # BEGIN IMMEDIATE: no other writer between check and write
        return _ingest_checked(store, reports, actor, register, keep)


def _ingest_checked(store: Store, reports: pd.DataFrame, actor: str, register: bool,
                    keep=None) -> int:
    state = store.state.read("unit_status").set_index("unit_id")
    unknown = ~reports["unit_id"].isin(state.index)
    new_units = pd.DataFrame()
    if unknown.any() and not register:
        shown = ", ".join(f"'{u}' (row {i})"
                          for i, u in reports.loc[unknown, "unit_id"].head(10).items())
        raise UnknownUnitError(f"AVL batch refused: unknown unit(s) {shown}; "
                               "register units with Store.append('units', ...) first")
    if unknown.any():
        new_units = _first_reports(reports[unknown])
        state = pd.concat([state, new_units.set_index("unit_id")[state.columns]])
    reports = reports.sort_values(["unit_id", "ts"], kind="stable")
    statuses, changes = [], []
    for unit_id, rows in reports.groupby("unit_id", sort=False):
        current, since = state.at[unit_id, "status"], state.at[unit_id, "ts"]
        for label, ts, status in zip(rows.index, rows["ts"], rows["status"]):
            if status is None or pd.isna(status):
                status = current if ts > since else _status_at(store, unit_id, ts, current)
            elif ts > since and status != current:
                check_transition(current, status, unit_id, where=f" (AVL row {label}, {ts})")
                changes.append((unit_id, ts, current, status))
            if ts > since:
                current = status
            statuses.append((label, status))
    reports.loc[[lab for lab, _ in statuses], "status"] = [s for _, s in statuses]
    full = reports.assign(kind=state.loc[reports["unit_id"], "kind"].to_numpy(),
                          station=state.loc[reports["unit_id"], "station"].to_numpy())
    full = schema.validate(full[schema.columns("units")], "units")
    if keep is None:
        added = store.append("units", full)
    else:
        new = keep(full)
        added = len(new)
        if added:
            store.state.upsert("unit_status", new)
        fresh = set(zip(new["unit_id"], new["ts"]))
        changes = [c for c in changes if (c[0], c[1]) in fresh]
        new_units = new_units[[(u, t) in fresh for u, t in zip(new_units["unit_id"], new_units["ts"])]] \
            if len(new_units) else new_units
    for unit in new_units.itertuples(index=False):
        store.state.audit(actor, "register_unit", unit.unit_id,
                          {"kind": unit.kind, "status": unit.status,
                           "station": None if pd.isna(unit.station) else unit.station},
                          ts=unit.ts)
    for unit_id, ts, old, new in changes:
        store.state.audit(actor, "set_status", unit_id, {"from": old, "to": new}, ts=ts)
    return added


def make_roster(stations: pd.DataFrame, n_units: int) -> pd.DataFrame:
    """The roster: half police, a quarter fire, a quarter ambulance, spread over their stations.

    ``stations`` has station_id and kind; units of a kind go round its stations
    in order. Returns unit_id (``police-01``, ...), kind and station.
    """
    n_fire = n_amb = int(round(n_units / 4))
    n_police = n_units - n_fire - n_amb
    rows = []
    for kind, n in (("police", n_police), ("fire", n_fire), ("ambulance", n_amb)):
        bases = stations[stations["kind"] == kind]["station_id"].tolist()
        rows += [{"unit_id": f"{kind}-{k + 1:02d}", "kind": kind, "station": bases[k % len(bases)]}
                 for k in range(n)]
    return pd.DataFrame(rows, columns=["unit_id", "kind", "station"])


def _first_reports(reports: pd.DataFrame) -> pd.DataFrame:
    """The registration of new units: each one's earliest report, which must be complete."""
    missing = [c for c in ("kind", "status") if c not in reports.columns]
    if missing:
        raise UnknownUnitError(f"unknown unit(s) {', '.join(map(repr, reports['unit_id'].unique()[:10]))}:"
                               f" registering them needs column(s) {', '.join(missing)}")
    first = reports.sort_values("ts", kind="stable").drop_duplicates("unit_id")
    first = first.assign(station=first["station"] if "station" in first else None)
    return schema.validate(first[schema.columns("units")], "units").set_axis(first.index)


def _status_at(store: Store, unit_id: str, ts, default: str) -> str:
    """A late report without a status takes the status the unit had then (else ``default``)."""
    past = store.read("units", end=ts + pd.Timedelta(microseconds=1))
    past = past[past["unit_id"] == unit_id]
    return past.sort_values("ts")["status"].iloc[-1] if len(past) else default
