"""Response-time simulation: the same calls answered under different dispatch policies.

A discrete-event simulation over a road network. Calls arrive; after a fixed
call-handling delay a policy picks a free unit of the kind the call needs; the
unit drives from its home station, stays on scene, drives back and is free
again. A call that finds no free unit waits in a first-come queue for the next
unit of its kind. Every policy sees the same calls and the same on-scene
times (drawn once from ``seed``), so differences between policies come from
the choice of unit alone.

Policies (``POLICIES``):

``static``         the unit of the call's own district (the Voronoi cell of its
                   station among stations of that kind) first, else the
                   nearest free one by road;
``straight_line``  the nearest free unit by great-circle distance;
``road``           the nearest free unit by road travel time;
``coverage``       among free units within ``coverage_slack`` of the best
                   travel time, the one whose departure leaves the largest
                   share of the network covered within ``coverage_target_s``.

Units are dispatched only from their station (a returning unit is busy until
it is home), so each station's travel times to and from every node, computed
once, give every travel time the simulation needs: one shortest-path tree per
station and direction instead of one per call.

``network`` is anything with ``nodes`` (node_id, lon, lat), ``nearest_node``,
``travel_times_to`` and ``travel_times_from`` (``safecity.dispatch.network.RoadNetwork``).
"""
from __future__ import annotations

import heapq
import json
from collections import deque

import numpy as np
import pandas as pd

from safecity.data import geo
from safecity.dispatch.recommend import rank_units
from safecity.dispatch.units import make_roster

POLICIES = ("static", "straight_line", "road", "coverage")
UNIT_KINDS = ("police", "fire", "ambulance")

#: On-scene time per unit kind, lognormal (mu, sigma) of seconds: medians of
#: 20, 45 and 30 minutes, with a long right tail.
ON_SCENE_S = {"police": (np.log(20 * 60), 0.5), "fire": (np.log(45 * 60), 0.6),
              "ambulance": (np.log(30 * 60), 0.5)}

RESULT_COLUMNS = ["call_id", "ts", "kind", "unit_id", "station", "wait_s", "travel_s",
                  "response_s", "policy"]


# =========================================================================== inputs


def calls_from_city(city) -> pd.DataFrame:
    """One call per unit an incident of a synthetic city needs: call_id, ts, lon, lat, kind.

    An incident needing two police units becomes two calls at the same time
    and place (``INC-1:police:0``, ``INC-1:police:1``).
    """
    rows = []
    for r in city.truth["incidents"].itertuples(index=False):
        for kind, count in json.loads(r.needs or "{}").items():
            rows += [(f"{r.incident_id}:{kind}:{k}", r.ts, r.lon, r.lat, kind) for k in range(count)]
    calls = pd.DataFrame(rows, columns=["call_id", "ts", "lon", "lat", "kind"])
    return calls.sort_values(["ts", "call_id"], ignore_index=True)


def units_from_city(city) -> pd.DataFrame:
    """The city's roster with each unit's home station: unit_id, kind, station, lon, lat."""
    roster = make_roster(city.stations, int(city.params.get("n_units", 12)))
    st = city.stations.set_index("station_id")
    return roster.assign(lon=st.loc[roster["station"], "lon"].to_numpy(),
                         lat=st.loc[roster["station"], "lat"].to_numpy())


def synthetic_calls(network, n: int, days: float = 1.0, seed: int = 0, start="2026-06-01",
                    shares: dict | None = None) -> pd.DataFrame:
    """``n`` calls at random nodes, Poisson in time over ``days``: call_id, ts, lon, lat, kind.

    ``shares`` gives the mix of kinds (default 60 % police, 15 % fire, 25 %
    ambulance). Nodes are drawn uniformly, so the calls follow the density of
    the street network rather than of people; only nodes of the largest
    strongly connected piece are drawn, so every call can be reached and left.
    """
    shares = shares or {"police": 0.6, "fire": 0.15, "ambulance": 0.25}
    rng = np.random.default_rng([seed, 17])
    t = np.sort(rng.uniform(0, days * 86_400.0, n))  # n uniform times = Poisson given n
    nodes = network.nodes[main_component(network)]
    pick = rng.integers(0, len(nodes), n)
    kinds = list(shares)
    p = np.array([shares[k] for k in kinds], float)
    start = pd.Timestamp(start, tz="UTC") if pd.Timestamp(start).tz is None else pd.Timestamp(start)
    return pd.DataFrame({
        "call_id": [f"call-{k + 1:05d}" for k in range(n)],
        "ts": start + pd.to_timedelta(t, unit="s"),
        "lon": nodes["lon"].to_numpy()[pick], "lat": nodes["lat"].to_numpy()[pick],
        "kind": rng.choice(kinds, size=n, p=p / p.sum())})


def synthetic_units(network, stations: dict | None = None, per_station: int = 1,
                    seed: int = 0) -> pd.DataFrame:
    """Stations spread over the network (farthest-point sampling) with ``per_station`` units each.

    ``stations`` maps kind to number of stations (default 4 police, 3 fire, 3
    ambulance), placed on the largest strongly connected piece of the
    network. Returns unit_id, kind, station, lon, lat.
    """
    stations = stations or {"police": 4, "fire": 3, "ambulance": 3}
    core = network.nodes[main_component(network)]
    lon, lat = core["lon"].to_numpy(), core["lat"].to_numpy()
    rng = np.random.default_rng([seed, 23])
    rows = []
    for kind, n in stations.items():
        chosen = [int(rng.integers(len(lon)))]
        gap = geo.distance_m(lon, lat, lon[chosen[0]], lat[chosen[0]])
        for _ in range(n - 1):  # each next station as far as possible from the others
            chosen.append(int(np.argmax(gap)))
            gap = np.minimum(gap, geo.distance_m(lon, lat, lon[chosen[-1]], lat[chosen[-1]]))
        for s, node in enumerate(chosen):
            rows += [{"unit_id": f"{kind}-{s + 1:02d}{chr(97 + k)}", "kind": kind,
                      "station": f"{kind}-st-{s + 1:02d}", "lon": lon[node], "lat": lat[node]}
                     for k in range(per_station)]
    return pd.DataFrame(rows, columns=["unit_id", "kind", "station", "lon", "lat"])


def main_component(network) -> np.ndarray:
    """Mask over ``network.nodes``: the largest strongly connected piece.

    An extract cut out of a bigger map has one-way streets that lead out of it
    and dead ends that cannot be left; units and calls outside the main piece
    would never come back.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(network.nodes)
    u = _positions(network, network.edges["u"].to_numpy())
    v = _positions(network, network.edges["v"].to_numpy())
    graph = csr_matrix((np.ones(len(u)), (u, v)), shape=(n, n))
    _, label = connected_components(graph, directed=True, connection="strong")
    return label == np.bincount(label).argmax()


# =========================================================================== simulation


class _Stations:
    """Each home station's travel times to and from every node, and which nodes it covers."""

    def __init__(self, network, units: pd.DataFrame, target_s: float):
        name = units["station"].astype(str) if "station" in units else \
            units["lon"].round(6).astype(str) + "," + units["lat"].round(6).astype(str)
        # A station is a home of one kind of unit: a shared building is two stations.
        key = units["kind"].astype(str) + "|" + name
        first = units.assign(_key=key.to_numpy(), _name=name.to_numpy()).drop_duplicates("_key")
        self.ids = first["_name"].tolist()
        self.kind = first["kind"].tolist()
        self.lon, self.lat = first["lon"].to_numpy(float), first["lat"].to_numpy(float)
        self.node = np.asarray(network.nearest_node(self.lon, self.lat)).reshape(-1)
        self.out = np.stack([np.asarray(network.travel_times_from(int(n)), float) for n in self.node])
        self.back = np.stack([np.asarray(network.travel_times_to(int(n)), float) for n in self.node])
        self.can = np.isfinite(self.out) & np.isfinite(self.back)  # there and back again
        self.covers = self.out <= target_s
        self.of_unit = dict(zip(units["unit_id"], pd.Series(key.to_numpy()).map(
            {k: i for i, k in enumerate(first["_key"])}).to_numpy()))


def _positions(network, node_ids) -> np.ndarray:
    """Positions in ``network.nodes`` of node ids (the index of the travel-time arrays)."""
    ids = network.nodes["node_id"].to_numpy() if "node_id" in network.nodes else \
        network.nodes.index.to_numpy()
    order = np.argsort(ids)
    return order[np.searchsorted(ids, np.asarray(node_ids), sorter=order)]


def simulate_responses(network, calls: pd.DataFrame, units: pd.DataFrame, policy: str = "road",
                       dispatch_delay_s: float = 60.0, on_scene_s=None, seed: int = 0,
                       coverage_target_s: float = 480.0, coverage_slack: float = 0.2,
                       _stations: _Stations | None = None) -> pd.DataFrame:
    """Answer ``calls`` with ``units`` under ``policy``; one row per call (``RESULT_COLUMNS``).

    ``calls``: ts, lon, lat, kind (a unit kind) and optionally call_id.
    ``units``: unit_id, kind, lon, lat of the home station, optionally station.
    ``on_scene_s``: seconds on scene, a number, a ``(mu, sigma)`` lognormal
    pair, or a dict of either per kind (default ``ON_SCENE_S``).
    ``response_s`` = ``dispatch_delay_s`` + ``wait_s`` (queued until a unit is
    free) + ``travel_s``. A call whose kind has no unit, or that no unit can
    reach, gets no unit and NaN times.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    calls = _prepared_calls(calls)
    units = units.reset_index(drop=True)
    st = _stations or _Stations(network, units, coverage_target_s)
    call_pos = _positions(network, np.asarray(network.nearest_node(
        calls["lon"].to_numpy(float), calls["lat"].to_numpy(float))).reshape(-1))
    scene = _on_scene(calls["kind"].to_numpy(), on_scene_s, seed)
    ustation = np.array([st.of_unit[u] for u in units["unit_id"]], int)
    ukind = units["kind"].to_numpy()
    # The static districts: each call belongs to the nearest station of its kind.
    crow = geo.distance_m(calls["lon"].to_numpy(float)[:, None], calls["lat"].to_numpy(float)[:, None],
                          st.lon[None, :], st.lat[None, :])

    t0 = calls["ts"].min() if len(calls) else pd.Timestamp(0, tz="UTC")
    arrive = (calls["ts"] - t0).dt.total_seconds().to_numpy() + dispatch_delay_s
    free = np.ones(len(units), bool)
    queue = {k: deque() for k in set(ukind) | set(calls["kind"])}
    events = [(arrive[i], 1, i) for i in range(len(calls))]  # (time, 0 = unit free / 1 = call, id)
    heapq.heapify(events)
    chosen = np.full(len(calls), -1)
    wait = np.full(len(calls), np.nan)
    travel = np.full(len(calls), np.nan)

    def send(i, u, t):
        s = ustation[u]
        chosen[i], wait[i], travel[i] = u, t - arrive[i], st.out[s, call_pos[i]]
        free[u] = False
        heapq.heappush(events, (t + travel[i] + scene[i] + st.back[s, call_pos[i]], 0, u))

    while events:
        t, what, k = heapq.heappop(events)
        if what == 0:  # a unit is home
            free[k] = True
            waiting = queue[ukind[k]]
            for i in waiting:  # the oldest waiting call this unit can reach
                if st.can[ustation[k], call_pos[i]]:
                    waiting.remove(i)
                    send(i, k, t)
                    break
            continue
        kind = calls["kind"].iat[k]
        reach = st.can[ustation, call_pos[k]] & (ukind == kind)
        if not reach.any():
            continue  # nobody could ever come: no unit, no times
        cand = np.flatnonzero(reach & free)
        if len(cand) == 0:
            queue[kind].append(k)
            continue
        send(k, _choose(policy, cand, k, call_pos[k], st, ustation, crow, free, ukind,
                        coverage_slack), t)

    out = pd.DataFrame({
        "call_id": calls["call_id"], "ts": calls["ts"], "kind": calls["kind"],
        "unit_id": np.where(chosen >= 0, units["unit_id"].to_numpy()[chosen], None),
        "station": np.where(chosen >= 0, np.array(st.ids, object)[ustation[chosen]], None),
        "wait_s": wait, "travel_s": travel, "response_s": dispatch_delay_s + wait + travel,
        "policy": policy})
    return out[RESULT_COLUMNS]


def _choose(policy, cand, i, node, st, ustation, crow, free, ukind, slack) -> int:
    """The unit (index) that ``policy`` sends to call ``i`` among the free candidates ``cand``."""
    times = st.out[ustation[cand], node]
    if policy == "straight_line":
        return int(cand[rank_units(crow[i, ustation[cand]])[0]])
    if policy == "static":
        same_kind = [s for s in range(len(st.ids)) if st.kind[s] == ukind[cand[0]]]
        home = same_kind[int(np.argmin(crow[i, same_kind]))]
        own = cand[ustation[cand] == home]
        if len(own):
            return int(own[0])
    if policy in ("static", "road"):
        return int(cand[rank_units(times)[0]])
    # coverage: among near-best units, lose the fewest nodes covered by nobody else.
    near = cand[times <= times.min() * (1 + slack) + 1e-9]
    mates = np.flatnonzero(free & (ukind == ukind[cand[0]]))
    count = st.covers[ustation[mates]].sum(axis=0)
    lost = [(np.count_nonzero(st.covers[ustation[u]] & (count == 1)), st.out[ustation[u], node])
            for u in near]
    return int(near[min(range(len(near)), key=lambda j: lost[j])])


def _prepared_calls(calls: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("ts", "lon", "lat", "kind") if c not in calls.columns]
    if missing:
        raise ValueError(f"calls: missing column {', '.join(repr(c) for c in missing)} "
                         "(calls need ts, lon, lat, kind)")
    calls = calls.copy()
    calls["ts"] = pd.to_datetime(calls["ts"], utc=True, format="mixed")
    if "call_id" not in calls:
        calls["call_id"] = [f"call-{k + 1:05d}" for k in range(len(calls))]
    calls["call_id"] = calls["call_id"].astype(str)
    return calls.sort_values(["ts", "call_id"], kind="stable", ignore_index=True)


def _on_scene(kinds: np.ndarray, spec, seed: int) -> np.ndarray:
    """Seconds on scene per call, drawn once so that every policy gets the same ones."""
    spec = ON_SCENE_S if spec is None else spec
    rng = np.random.default_rng([seed, 5])
    z = rng.standard_normal(len(kinds))
    out = np.empty(len(kinds))
    for k, kind in enumerate(kinds):
        s = spec.get(kind, ON_SCENE_S.get(kind, (np.log(1800), 0.5))) if isinstance(spec, dict) else spec
        out[k] = float(s) if np.isscalar(s) else float(np.exp(s[0] + s[1] * z[k]))
    return out


def check_kinds(table: pd.DataFrame, what: str) -> None:
    """Refuse kinds that are not unit kinds: a call no unit can take is silently never answered."""
    kinds = table["kind"]
    bad = ~kinds.isin(UNIT_KINDS)
    if bad.any():
        unknown = sorted(map(str, kinds[bad].unique()))
        rows = ", ".join(str(i) for i in table.index[bad][:5])
        raise ValueError(f"column 'kind': unknown {what} kind(s) {', '.join(map(repr, unknown[:10]))} "
                         f"at rows {rows}; expected {', '.join(UNIT_KINDS)}")


def compare_policies(network, calls: pd.DataFrame, units: pd.DataFrame, policies=POLICIES,
                     **kwargs) -> pd.DataFrame:
    """``simulate_responses`` for each policy on the same calls, stacked; stations computed once."""
    units = units.reset_index(drop=True)
    st = _Stations(network, units, kwargs.get("coverage_target_s", 480.0))
    return pd.concat([simulate_responses(network, calls, units, p, _stations=st, **kwargs)
                      for p in policies], ignore_index=True)


# =========================================================================== figures


def summarise(results: pd.DataFrame, n_boot: int = 1000, seed: int = 0,
              reference: str = "static") -> pd.DataFrame:
    """Per policy: mean, median and 90th percentile of response_s with bootstrap 95 % CIs.

    Calls are resampled with the same draws for every policy (the calls are
    shared), so the ratios to ``reference`` (``ratio_mean``, ``ratio_p90``,
    with CIs) are paired comparisons. Also the mean travel and wait, and how
    many calls had to queue or went unanswered.
    """
    wide = results.pivot_table(index="call_id", columns="policy", values="response_s", aggfunc="first")
    wide = wide.dropna()  # calls answered under every policy, so all figures are on the same calls
    rng = np.random.default_rng([seed, 31])
    idx = rng.integers(0, len(wide), size=(n_boot, len(wide))) if len(wide) else np.zeros((n_boot, 0), int)
    stats = {"mean": np.mean, "median": np.median, "p90": lambda a, **k: np.quantile(a, 0.9, **k)}
    boots, rows = {}, []
    for policy in wide.columns:
        x = wide[policy].to_numpy()
        boots[policy] = {name: f(x[idx], axis=1) for name, f in stats.items()} if len(x) else {}
    for policy in [p for p in POLICIES if p in wide.columns] + \
            [p for p in wide.columns if p not in POLICIES]:
        x = wide[policy].to_numpy()
        one = results[results["policy"] == policy]
        row = {"policy": policy, "calls": len(x),
               "queued": int((one["wait_s"] > 0).sum()), "unanswered": int(one["unit_id"].isna().sum()),
               "mean_travel_s": float(one["travel_s"].mean()), "mean_wait_s": float(one["wait_s"].mean())}
        for name, f in stats.items():
            b = boots[policy].get(name, np.array([np.nan]))
            row[f"{name}_s"] = float(f(x)) if len(x) else np.nan
            row[f"{name}_lo"], row[f"{name}_hi"] = _ci(b)
        if reference in wide.columns and len(x):
            ref = wide[reference].to_numpy()
            for name in ("mean", "p90"):
                r = boots[policy][name] / boots[reference][name]
                row[f"ratio_{name}"] = float(stats[name](x) / stats[name](ref))
                row[f"ratio_{name}_lo"], row[f"ratio_{name}_hi"] = _ci(r)
        rows.append(row)
    return pd.DataFrame(rows)


def _ci(draws: np.ndarray) -> tuple[float, float]:
    return float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))


def figures_dict(figures: pd.DataFrame, digits: int = 1) -> dict:
    """``summarise``'s table as {policy: {calls, queued, unanswered, mean_s, mean_ci, ...}} for JSON."""
    out = {}
    for row in figures.to_dict("records"):
        d = {k: row[k] for k in ("calls", "queued", "unanswered")}
        for name in ("mean", "median", "p90"):
            d[f"{name}_s"] = _round(row[f"{name}_s"], digits)
            d[f"{name}_ci"] = [_round(row[f"{name}_lo"], digits), _round(row[f"{name}_hi"], digits)]
        d["mean_travel_s"] = _round(row["mean_travel_s"], digits)
        d["mean_wait_s"] = _round(row["mean_wait_s"], digits)
        for name in ("mean", "p90"):
            if f"ratio_{name}" in row:
                d[f"ratio_{name}"] = _round(row[f"ratio_{name}"], 3)
                d[f"ratio_{name}_ci"] = [_round(row[f"ratio_{name}_lo"], 3),
                                         _round(row[f"ratio_{name}_hi"], 3)]
        out[row["policy"]] = d
    return out


def _round(x, digits):
    return None if x is None or not np.isfinite(x) else round(float(x), digits)
