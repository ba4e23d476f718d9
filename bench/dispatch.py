"""Benchmark of unit recommendation: rank 500 units for one incident on a 50,000+ node network.

Builds a jittered street grid (default 230 x 230 = 52,900 nodes, about
210,000 directed edges, 100 m blocks; every sixth line a 50 km/h primary,
every third a 40 km/h secondary, the rest 30 km/h residential, one street in
eight removed), places 500 random available units (police, fire, ambulance)
and times, per incident:

* ``safecity.dispatch.recommend.recommend`` (nearest nodes, one reverse Dijkstra from
  the scene with scipy, the ranking, and routes for the returned units), with
  ``top=5`` (what a dispatcher sees: the search stops once it holds the best
  five) and ``top=None`` (all 500 units ranked, the whole tree, 500 routes);
  median and p95 over ``--incidents`` incidents, and CPU time per incident;
* the baseline, the same ``top=5`` call with the whole tree searched (scipy
  single-source from the scene, the way before the bounded search), and a check
  that both give the same answers (units, order, times, routes);
* the bounded search again with units that moved since the last incident (a
  tenth of them, in a reordered table; then all of them): the network remembers
  the nearest nodes of the units it snapped (``RoadNetwork.nearest_node``), so
  this is what position reports cost a recommendation;
* the same with an active roadworks closing roads (first call builds the
  closed network, later calls reuse it);
* networkx: one ``shortest_path_length(g, unit_node, scene, weight=...)`` per
  unit (the naive way), on ``--nx-incidents`` incidents, and a check that both
  give the same times.

    .venv/bin/python bench/dispatch.py [--side 230] [--units 500] [--incidents 20] [--nx-incidents 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2026-06-01 08:00", tz="UTC")
SPEEDS = {"primary": 50.0, "secondary": 40.0, "residential": 30.0}


def grid_network(side: int, spacing_m: float = 100.0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A ``side`` x ``side`` jittered street grid as the ``nodes``/``edges`` tables (two-way streets)."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    x = j * spacing_m + rng.uniform(-0.2, 0.2, i.shape) * spacing_m
    y = i * spacing_m + rng.uniform(-0.2, 0.2, i.shape) * spacing_m
    lon = 5.30 + x.ravel() / (111_320.0 * np.cos(np.radians(43.3)))
    lat = 43.20 + y.ravel() / 110_574.0
    nodes = pd.DataFrame({"node_id": np.arange(side * side), "lon": lon, "lat": lat})
    idx = np.arange(side * side).reshape(side, side)
    a = np.concatenate([idx[:, :-1].ravel(), idx[:-1, :].ravel()])
    b = np.concatenate([idx[:, 1:].ravel(), idx[1:, :].ravel()])
    line = np.concatenate([i[:, :-1].ravel(), j[:-1, :].ravel()])
    cls = np.where(line % 6 == 0, "primary", np.where(line % 3 == 0, "secondary", "residential"))
    keep = ~((cls == "residential") & (rng.random(len(a)) < 0.125))
    a, b, cls = a[keep], b[keep], cls[keep]
    length = np.hypot(x.ravel()[a] - x.ravel()[b], y.ravel()[a] - y.ravel()[b])
    one = pd.DataFrame({"u": a, "v": b, "length_m": length, "road_class": cls})
    edges = pd.concat([one, one.rename(columns={"u": "v", "v": "u"})], ignore_index=True)
    edges["speed_kmh"] = edges["road_class"].map(SPEEDS)
    edges["travel_time_s"] = edges["length_m"] / (edges["speed_kmh"] / 3.6)
    return nodes, edges


def random_units(nodes: pd.DataFrame, n: int, rng) -> pd.DataFrame:
    """``n`` available units at random points (not on nodes: they snap like real AVL fixes)."""
    pick = rng.integers(0, len(nodes), n)
    return pd.DataFrame({
        "unit_id": [f"unit-{k:04d}" for k in range(n)],
        "kind": rng.choice(["police", "fire", "ambulance"], n),
        "status": "available",
        "lon": nodes["lon"].to_numpy()[pick] + rng.normal(0, 2e-4, n),
        "lat": nodes["lat"].to_numpy()[pick] + rng.normal(0, 2e-4, n),
        "ts": T0, "station": None,
    })


def _ms(values) -> str:
    v = np.asarray(values) * 1000
    return f"median {np.median(v):8.2f} ms   p95 {np.percentile(v, 95):8.2f} ms"


def _timed(call, scenes) -> tuple[list[float], float, list]:
    """Wall time per incident, CPU seconds per incident, and the answers."""
    times, answers, cpu = [], [], time.process_time()
    for lon, lat in scenes:
        t = time.perf_counter()
        answers.append(call(lon, lat))
        times.append(time.perf_counter() - t)
    return times, (time.process_time() - cpu) / len(scenes), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=230)
    parser.add_argument("--units", type=int, default=500)
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--nx-incidents", type=int, default=2)
    args = parser.parse_args()

    import networkx as nx

    from safecity.dispatch.recommend import recommend
    from safecity.dispatch.network import RoadNetwork

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    nodes, edges = grid_network(args.side)
    net = RoadNetwork.from_tables(nodes, edges)
    print(f"network: {len(net.nodes):,} nodes, {len(net.edges):,} directed edges "
          f"(tables {time.perf_counter() - t:.2f} s incl. RoadNetwork build)")
    units = random_units(nodes, args.units, rng)
    kinds = ("police", "fire", "ambulance")  # rank all 500
    scenes = nodes.sample(args.incidents, random_state=1)[["lon", "lat"]].to_numpy()
    scenes = scenes + rng.normal(0, 2e-4, scenes.shape)

    class FullTree(RoadNetwork):
        """The baseline: the whole reverse tree for every incident, however few units are asked for."""

        def tree_to_nearest(self, node_id, origins, k, attempts=0):
            return super().tree_to_nearest(node_id, origins, k, attempts=0)

    full = FullTree.from_tables(nodes, edges)
    recommend(*scenes[0], units, net, kinds=kinds, at=T0)  # warm-up (imports, caches)
    recommend(*scenes[0], units, full, kinds=kinds, at=T0)
    runs = {}
    for name, network, top in (("bounded", net, 5), ("full", full, 5), ("bounded", net, None)):
        times, cpu, answers = _timed(
            lambda lon, lat: recommend(lon, lat, units, network, kinds=kinds, at=T0, top=top), scenes)
        runs[name, top] = answers
        how = ("whole tree (scipy single-source), the baseline" if name == "full"
               else "bounded search" if top else "whole tree")
        print(f"recommend, {args.units} units ranked, top={top!s:4} ({len(answers[-1])} routes), {how}: "
              f"{_ms(times)}   CPU {cpu * 1000:.2f} ms   over {len(times)} incidents")
    same = all(a.equals(b) and a.attrs == b.attrs for a, b in zip(runs["bounded", 5], runs["full", 5]))
    head = all(a.equals(b.head(5)) for a, b in zip(runs["bounded", 5], runs["bounded", None]))
    print(f"top 5, bounded vs whole tree: same units, order, times and routes: {same}; "
          f"same as the first 5 of all 500 ranked: {head}")

    # Units that moved since the last incident are snapped again (the network remembers the
    # others): a tenth of them, in a table that comes in another order; then every one.
    for share, label in ((0.1, "a tenth of the units moved, the table reordered"),
                         (1.0, "every unit moved")):
        tables, lon = [], units["lon"].to_numpy().copy()
        for _ in scenes:
            lon[rng.random(len(lon)) < share] += rng.normal(0, 1e-4)
            tables.append(units.assign(lon=lon.copy()).sample(frac=1.0, random_state=len(tables)))
        times, cpu = [], time.process_time()
        for (x, y), now in zip(scenes, tables):
            t = time.perf_counter()
            recommend(x, y, now, net, kinds=kinds, at=T0)
            times.append(time.perf_counter() - t)
        print(f"recommend, top=5, bounded, {label} since the last incident: "
              f"{_ms(times)}   CPU {(time.process_time() - cpu) / len(scenes) * 1000:.2f} ms")

    mid = nodes.iloc[len(nodes) // 2]
    calendar = pd.DataFrame([{"calendar_id": "rw-1", "kind": "roadworks", "name": "Travaux",
                              "start": T0, "end": T0 + pd.Timedelta(days=2), "location": None,
                              "lon": mid["lon"], "lat": mid["lat"], "expected_attendance": None}])
    t = time.perf_counter()
    recommend(*scenes[0], units, net, kinds=kinds, at=T0, calendar=calendar)
    first = time.perf_counter() - t
    times = []
    for lon, lat in scenes:
        t = time.perf_counter()
        recommend(lon, lat, units, net, kinds=kinds, at=T0, calendar=calendar)
        times.append(time.perf_counter() - t)
    print(f"recommend with roadworks, top=5: first call {first * 1000:.0f} ms (builds the closed "
          f"network), then {_ms(times)}")

    g = nx.DiGraph()
    g.add_weighted_edges_from(zip(net.edges["u"].tolist(), net.edges["v"].tolist(),
                                  net.edges["travel_time_s"].tolist()), weight="travel_time_s")
    unit_nodes = net.nearest_node(units["lon"], units["lat"])
    nx_times, worst = [], 0.0
    for lon, lat in scenes[: args.nx_incidents]:
        scene = int(net.nearest_node(lon, lat)[0])
        t = time.perf_counter()
        brute = [nx.shortest_path_length(g, int(u), scene, weight="travel_time_s") for u in unit_nodes]
        nx_times.append(time.perf_counter() - t)
        ours = net.travel_times_to(scene)[net.positions(unit_nodes)]
        worst = max(worst, float(np.max(np.abs(np.asarray(brute) - ours))))
    if not nx_times:
        return
    print(f"networkx, one shortest_path_length per unit ({args.units} per incident): "
          f"{_ms(nx_times)}   over {len(nx_times)} incidents; max |difference| {worst:.2e} s")


if __name__ == "__main__":
    main()
