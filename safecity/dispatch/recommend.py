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
    kind = latest["kind"].to_numpy()
    pick = np.flatnonzero((latest["status"].to_numpy() == "available")
                          & np.fromiter((k in wanted for k in kind), bool, len(kind)))
    if not len(pick):
        return _empty(f"no available unit of kind {', '.join(kinds)}")

    net = network.with_roadworks(calendar, at) if calendar is not None and at is not None else network
    snapped = net.nearest_node(np.r_[incident_lon, latest["lon"].to_numpy(float)[pick]],
                               np.r_[incident_lat, latest["lat"].to_numpy(float)[pick]])
    scene, starts = int(snapped[0]), snapped[1:]
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
        "status": latest["status"].to_numpy()[pick][order], "travel_time_s": travel,
        "eta": (when + pd.to_timedelta(np.where(ok, travel, np.nan), unit="s")
                if when is not None else pd.NaT),
        "distance_m": np.where(ok, net.route_lengths_m(routes), np.inf),
        "route": routes, "reachable": ok,
        "reason": np.where(ok, "", reason or "no road route from this unit to the incident"),
    })  # in RECOMMEND_COLUMNS order (``columns=`` would reindex: a tenth of the call)
    at_scene = net.positions([scene])[0]
    scene_lon, scene_lat = net.nodes["lon"].to_numpy()[at_scene], net.nodes["lat"].to_numpy()[at_scene]
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


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
