"""Which unit to send: the available units of the needed kinds, ranked by road travel time.

The ranking is one reverse shortest-path tree from the incident
(``RoadNetwork.tree_to``): every unit's time to the scene at once, and each
unit's route by following the tree's next hops. For the best few (``top``) the
tree stops once it holds them (``RoadNetwork.tree_to_nearest``): same ranking,
times and routes, a small part of the city searched. A unit that cannot reach
the scene (closed roads, a disconnected island) is listed last with
``reachable=False``; when none can, the answer says so in ``reason`` rather
than raising, because a dispatcher needs an answer either way.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from safecity.data.geo import distance_m
from safecity.dispatch.network import RoadNetwork

RECOMMEND_COLUMNS = ["unit_id", "kind", "status", "travel_time_s", "eta", "distance_m",
                     "route", "reachable", "reason"]


def current_units(units: pd.DataFrame) -> pd.DataFrame:
    """The latest row per unit of a ``units`` table (its current state)."""
    if units.empty or units["unit_id"].is_unique:
        return units
    return units.sort_values("ts", kind="stable").groupby("unit_id", sort=False).tail(1)


def rank_units(times, tiebreak=None) -> np.ndarray:
    """Candidate positions, best first: smallest ``times``, ties by ``tiebreak`` (default: position).

    The one rule every dispatcher uses to choose a unit (``recommend``, the
    policies of ``dispatch.policies``, the synthetic city's dispatcher): pass
    road travel times, or straight-line distances for a crow-flies choice.
    Unreachable candidates (inf or NaN) come last. numpy rather than DataFrame
    sorts: this runs per incident and must stay in milliseconds.
    """
    times = np.asarray(times, float)
    tiebreak = np.arange(len(times)) if tiebreak is None else np.asarray(tiebreak)
    return np.lexsort((tiebreak, times, ~np.isfinite(times)))


def recommend(incident_lon: float, incident_lat: float, units: pd.DataFrame, network: RoadNetwork,
              kinds: Iterable[str] = ("police",), at=None, calendar: pd.DataFrame | None = None,
              top: int | None = 5) -> pd.DataFrame:
    """Available units of ``kinds`` ranked by road travel time to the incident.

    Returns unit_id, kind, status, travel_time_s (inf when unreachable), eta
    (``at``, else the latest unit report, plus the travel time), distance_m
    (road length of the route), route (node ids, unit to scene; [] when
    unreachable), reachable and reason (why a unit has no route; empty
    otherwise). Reachable units come first, fastest first; ``top`` keeps the
    best ``top`` reachable ones (None keeps all). When no unit can reach the
    scene every candidate is returned, marked unreachable, and
    ``result.attrs["reason"]`` says why. Roadworks in ``calendar`` active at
    ``at`` close the roads near them.
    """
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not kinds:  # a camera offline or tampered: a technician's job, not a unit's
        return _empty("this incident needs no unit")
    latest = current_units(units)
    when = _utc(at) if at is not None else (pd.Timestamp(latest["ts"].max()) if len(latest) else None)
    # numpy columns rather than DataFrame masks: this runs per incident, in milliseconds.
    wanted = set(kinds)
    kind, status = latest["kind"].to_numpy(), latest["status"].to_numpy()
    pick = np.flatnonzero((status == "available")
                          & np.fromiter((k in wanted for k in kind), bool, len(kind)))
    if not len(pick):
        return _empty(f"no available unit of kind {', '.join(kinds)}")

    net = network.with_roadworks(calendar, at) if calendar is not None and at is not None else network
    scene = int(net.nearest_node(incident_lon, incident_lat)[0])
    # All units, then the picked ones: the network remembers the last snapping, so
    # units that have not moved since the last incident are not snapped again.
    starts = net.nearest_node(latest["lon"].to_numpy(float), latest["lat"].to_numpy(float))[pick]
    # Cut short (not complete), the search holds the best ``top``: inf beyond them means "farther".
    times, nxt, complete = net.tree_to_nearest(scene, starts, top or 0)
    unit_ids = latest["unit_id"].to_numpy()[pick]

    reachable = np.isfinite(times)
    n_ok = int(reachable.sum())
    reason = ""
    if not complete:  # only the units inside the bound can be the best: rank those alone
        inside = np.flatnonzero(reachable)
        order = inside[rank_units(times[inside], tiebreak=unit_ids[inside].astype(str))]
    else:
        order = rank_units(times, tiebreak=unit_ids.astype(str))
    if complete and n_ok == 0:
        reason = (f"no road route from any available {'/'.join(kinds)} unit to the incident "
                  f"(node {scene}): the scene is cut off (disconnected roads or closures)")
    elif top is not None:
        order = order[: min(top, n_ok)]
    ok = reachable[order]
    routes = [[] for _ in range(len(order))]
    for i, r in zip(np.flatnonzero(ok), net.follow_many(starts[order][ok], nxt, scene)):
        routes[i] = r
    travel = times[order]
    out = pd.DataFrame({
        "unit_id": unit_ids[order].astype(str), "kind": kind[pick][order],
        "status": status[pick][order], "travel_time_s": travel,
        "eta": _eta(when, travel, ok),
        "distance_m": np.where(ok, net.route_lengths_m(routes), np.inf),
        "route": routes, "reachable": ok,
        "reason": np.where(ok, "", reason or "no road route from this unit to the incident"),
    }, copy=False)  # in RECOMMEND_COLUMNS order (``columns=`` would reindex: a tenth of the call);
    # every array is new to this call, and copy-on-write guards them anyway
    scene_lon, scene_lat = net.node_lonlat(scene)
    out.attrs["reason"] = reason
    out.attrs["scene_node"] = scene
    out.attrs["scene_offset_m"] = float(distance_m(incident_lon, incident_lat, scene_lon, scene_lat))
    return out


def _empty(reason: str) -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype=object) for c in RECOMMEND_COLUMNS})
    out["travel_time_s"] = out["travel_time_s"].astype(float)
    out["reachable"] = out["reachable"].astype(bool)
    out.attrs["reason"] = reason
    return out


def _eta(when: pd.Timestamp | None, travel: np.ndarray, ok: np.ndarray):
    """``when + pd.to_timedelta(travel, unit="s")`` (NaT where not ``ok``), the same values and
    dtype, in a fifth of its time: pandas' float parsing and index arithmetic were a tenth
    of a recommendation."""
    if when is None:
        return pd.NaT
    # Nanoseconds as pandas makes them: whole seconds, plus the fraction rounded to 9 digits
    # and truncated; whole seconds only stay in microseconds.
    seconds = np.where(ok, travel, 0.0)
    whole = np.trunc(seconds)
    step = (whole.astype(np.int64) * 1_000_000_000
            + (np.round(seconds - whole, 9) * 1e9).astype(np.int64)).view("m8[ns]")
    step[~ok] = np.timedelta64("NaT")
    step_unit = "us" if (seconds == whole).all() else "ns"
    unit = "ns" if "ns" in (when.unit, step_unit) else "us" if "us" in (when.unit, step_unit) else when.unit
    start = (when.tz_convert("UTC").tz_localize(None) if when.tz else when).as_unit(unit)
    values = start.to_datetime64() + step.astype(f"m8[{step_unit}]").astype(f"m8[{unit}]")
    if when.tz is None:
        return pd.DatetimeIndex(values)
    # Naive values with a UTC dtype are read as UTC instants, then shown in ``when``'s zone.
    out = pd.DatetimeIndex(values, dtype=pd.DatetimeTZDtype(unit, "UTC"))
    return out if str(when.tz) == "UTC" else out.tz_convert(when.tz)


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
