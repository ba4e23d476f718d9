"""The road network as a routable graph: travel times, routes and roadworks.

Dispatch asks one question many times: how long from each unit to this
incident? One reverse Dijkstra from the incident (scipy's C implementation on
the transposed CSR matrix) answers it for every node at once, so ranking 500
units costs one shortest-path tree, not 500 queries.

A ``RoadNetwork`` holds the two tidy tables of a city directory's ``network/`` (``data.citydir``)
(``nodes``: node_id, lon, lat; ``edges``: u, v, length_m, road_class,
speed_kmh, travel_time_s) and the matrices built from them. It loads the
synthetic city (``from_tables``) or any OpenStreetMap extract (``from_osm``).
Roadworks from the calendar close or slow the edges near them
(``with_roadworks``), which returns a new network and leaves this one alone.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

NODE_COLUMNS = ["node_id", "lon", "lat"]
EDGE_COLUMNS = ["u", "v", "length_m", "road_class", "speed_kmh", "travel_time_s"]

#: Default speeds (km/h) by OSM ``highway`` class when ``maxspeed`` is missing
#: (urban French defaults: 50 in town, faster on roads built for it).
OSM_SPEEDS = {
    "motorway": 110.0, "motorway_link": 70.0, "trunk": 90.0, "trunk_link": 50.0,
    "primary": 50.0, "primary_link": 40.0, "secondary": 50.0, "secondary_link": 40.0,
    "tertiary": 40.0, "tertiary_link": 30.0, "unclassified": 30.0, "residential": 30.0,
    "living_street": 10.0, "service": 20.0, "road": 30.0, "busway": 30.0,
}
DEFAULT_SPEED_KMH = 30.0

#: Roadworks affect edges passing within this many metres of their point.
ROADWORKS_RADIUS_M = 100.0

#: ``tree_to_nearest``'s first time bound: the k-th unit's crow-flies distance
#: at the network's median pace, times this. Detours lengthen the way, faster
#: roads shorten it; a bound too short only costs a retry with four times it,
#: one too long a wider search. 1.0 was the fastest of 1 to 3 on a validation
#: grid (bench/dispatch.py's with another seed); answers do not depend on it.
BOUND_FACTOR = 1.0

# Dijkstra treats a zero weight in a sparse matrix as "no edge" in some paths;
# a millisecond floor keeps zero-length OSM segments routable.
_MIN_TIME_S = 1e-3

# ``nearest_node`` remembers the points of queries of more points than this (units tables).
_SNAP_MEMO_MIN = 16


class RoadNetwork:
    """A directed road graph with travel times, ready for many fast shortest-path trees."""

    def __init__(self, nodes: pd.DataFrame, edges: pd.DataFrame):
        self.nodes = nodes[NODE_COLUMNS].reset_index(drop=True)
        self.edges = edges[EDGE_COLUMNS].reset_index(drop=True)
        ids = self.nodes["node_id"].to_numpy(np.int64)
        self._ids = ids
        self._lon, self._lat = self.nodes["lon"].to_numpy(float), self.nodes["lat"].to_numpy(float)
        self._index = pd.Index(ids)
        if not self._index.is_unique:
            raise ValueError("nodes.node_id must be unique")
        self._sorter = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._sorter]
        u = self._index.get_indexer(self.edges["u"].to_numpy(np.int64))
        v = self._index.get_indexer(self.edges["v"].to_numpy(np.int64))
        if (u < 0).any() or (v < 0).any():
            raise ValueError("edges refer to node ids missing from nodes")
        n = len(ids)
        time = np.maximum(self.edges["travel_time_s"].to_numpy(float), _MIN_TIME_S)
        usable = np.isfinite(time) & (u != v)
        # Parallel edges: keep the fastest, and its length, so routes and distances agree.
        order = np.lexsort((time[usable], v[usable], u[usable]))
        uu, vv, tt = u[usable][order], v[usable][order], time[usable][order]
        ll = self.edges["length_m"].to_numpy(float)[usable][order]
        first = np.ones(len(uu), bool)
        first[1:] = (uu[1:] != uu[:-1]) | (vv[1:] != vv[:-1])
        uu, vv, tt, ll = uu[first], vv[first], tt[first], ll[first]
        self._graph = csr_matrix((tt, (uu, vv)), shape=(n, n))
        self._reverse = self._graph.T.tocsr()
        self._edge_keys = uu.astype(np.int64) * n + vv  # sorted: lexsort by (u, v)
        self._edge_length = ll
        # Median seconds per metre, to turn a crow-flies distance into a first time bound.
        self._pace = float(np.median(tt[ll > 0] / ll[ll > 0])) if (ll > 0).any() else 1.0
        self._origin = (float(self.nodes["lon"].mean()), float(self.nodes["lat"].mean()))
        self._tree = cKDTree(np.column_stack(self._xy(self.nodes["lon"], self.nodes["lat"])))
        self._roadworks_cache: dict = {}
        self._snapped: tuple | None = None  # sorted points (lon + i lat) of the last many-point query, their nodes

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_tables(cls, nodes: pd.DataFrame, edges: pd.DataFrame) -> "RoadNetwork":
        """The network of the synthetic city (or any tables of the same shape)."""
        return cls(nodes, edges)

    @classmethod
    def from_osm(cls, path: str | os.PathLike, network_type: str = "driving") -> "RoadNetwork":
        """A network from an OpenStreetMap extract (``.osm.pbf``), read with pyrosm.

        One-way streets keep one direction; travel time is length over
        ``maxspeed`` when tagged, else the class default of ``OSM_SPEEDS``.
        """
        from pyrosm import OSM
        from pyrosm.graphs import get_directed_edges

        try:
            osm_nodes, osm_edges = OSM(str(path)).get_network(network_type=network_type, nodes=True)
        except Exception as err:  # pyrosm, protobuf and zlib raise many types for a corrupt file
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{path}: not a readable OSM PBF extract: {message}") from None
        if osm_edges is None or len(osm_edges) == 0:
            raise ValueError(f"{path}: no {network_type} network in this extract")
        osm_nodes, osm_edges = get_directed_edges(osm_nodes, osm_edges, network_type=network_type)
        return cls(*osm_tables(osm_nodes, osm_edges))

    # ------------------------------------------------------------------ queries

    def nearest_node(self, lon, lat) -> np.ndarray:
        """The id of the nearest node to each point (vectorised).

        The points of the last query of many (a units table) are remembered
        with their nodes: a unit that has not moved since is not snapped again,
        in whatever order the table comes, since snapping 500 points with the
        KD-tree costs as much as the bounded search itself.
        """
        lon, lat = np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float))
        key = np.empty(len(lon), complex)  # a point as one number: sortable, comparable
        key.real, key.imag = lon, lat
        ids = np.empty(len(key), self._ids.dtype)
        miss = np.ones(len(key), bool)
        known = self._snapped  # one read: another thread may replace it
        if known is not None and len(known[0]) and len(key):
            keys, known_ids = known
            at = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            miss = keys[at] != key  # NaN never matches: snapped (and failing) as before
            ids[~miss] = known_ids[at[~miss]]
        if miss.any():
            x, y = self._xy(lon[miss], lat[miss])
            ids[miss] = self._ids[self._tree.query(np.column_stack([x, y]))[1]]
        if len(key) > _SNAP_MEMO_MIN:
            order = np.argsort(key)
            self._snapped = (key[order], ids[order])
        return ids

    def node_lonlat(self, node_id: int) -> tuple[float, float]:
        """Longitude and latitude of one node."""
        at = self._position(node_id)
        return float(self._lon[at]), float(self._lat[at])

    def travel_times_to(self, node_id: int, at=None, calendar: pd.DataFrame | None = None) -> np.ndarray:
        """Seconds from every node (in ``nodes`` order) to ``node_id``; inf where unreachable.

        One reverse Dijkstra: index it at the units' nodes (``positions``) to rank them all.
        """
        return self._current(at, calendar).tree_to(node_id)[0]

    def travel_times_from(self, node_id: int, at=None, calendar: pd.DataFrame | None = None) -> np.ndarray:
        """Seconds from ``node_id`` to every node (in ``nodes`` order); inf where unreachable."""
        net = self._current(at, calendar)
        return dijkstra(net._graph, indices=net._position(node_id))

    def route(self, from_node: int, to_node: int, at=None,
              calendar: pd.DataFrame | None = None) -> list[int]:
        """The fastest path as node ids, ``[]`` when there is none."""
        net = self._current(at, calendar)
        _, nxt = net.tree_to(to_node)
        return net._follow(net._position(from_node), nxt, net._position(to_node))

    def route_length_m(self, route: list[int]) -> float:
        """Road length of a route (node ids), in metres; 0 for an empty or one-node route."""
        return float(self.route_lengths_m([route])[0])

    def route_lengths_m(self, routes: list[list[int]]) -> np.ndarray:
        """Road length of each route (node ids), in metres, in one vectorised pass."""
        sizes = np.array([len(r) for r in routes], np.int64)
        out = np.zeros(len(routes))
        if sizes.sum() == 0:
            return out
        idx = self.positions(np.concatenate([np.asarray(r, np.int64) for r in routes]))
        ends = np.cumsum(sizes)
        hop = np.ones(len(idx), bool)
        hop[ends[sizes > 0] - 1] = False  # the last node of a route starts no hop
        a = idx[hop]
        b = idx[np.flatnonzero(hop) + 1]
        length = self._edge_length[np.searchsorted(self._edge_keys, a.astype(np.int64) * len(self._ids) + b)]
        owner = np.repeat(np.arange(len(routes)), sizes)[hop]
        return np.bincount(owner, weights=length, minlength=len(routes))

    def polyline(self, route: list[int]) -> list[list[float]]:
        """A route as [[lon, lat], ...] for a map."""
        idx = self._index.get_indexer(np.asarray(route, np.int64))
        return self.nodes[["lon", "lat"]].to_numpy()[idx].tolist()

    def to_networkx(self):
        """The same graph in networkx (weights ``travel_time_s``), for checks and analysts."""
        from safecity.data.geo import to_networkx

        return to_networkx(self.nodes, self.edges)

    # ------------------------------------------------------------------ roadworks

    def with_roadworks(self, calendar: pd.DataFrame | None, at, radius_m: float = ROADWORKS_RADIUS_M,
                       factor: float | None = None) -> "RoadNetwork":
        """A new network with edges near roadworks active at ``at`` closed, or slowed.

        Active means ``kind == "roadworks"`` and ``start <= at < end``. An edge
        is affected when it passes within ``radius_m`` of the roadworks point.
        ``factor`` None closes it; a number multiplies its travel time. A
        ``speed_factor`` column in the calendar, where set, overrides ``factor``
        per row. The original network is unchanged.
        """
        active = active_roadworks(calendar, at)
        if active.empty:
            return self
        per_row = (active["speed_factor"] if "speed_factor" in active
                   else pd.Series(np.nan, index=active.index))
        key = (tuple(active["calendar_id"].astype(str)), tuple(per_row.astype(float).fillna(-1.0)),
               float(active["lon"].sum()), float(active["lat"].sum()), radius_m, factor)
        if key in self._roadworks_cache:
            return self._roadworks_cache[key]
        mult = np.ones(len(self.edges))
        ex, ey = self._xy(self.nodes["lon"].to_numpy(), self.nodes["lat"].to_numpy())
        u = self._index.get_indexer(self.edges["u"].to_numpy(np.int64))
        v = self._index.get_indexer(self.edges["v"].to_numpy(np.int64))
        ax, ay, bx, by = ex[u], ey[u], ex[v], ey[v]
        for lon, lat, f in zip(active["lon"], active["lat"], per_row):
            px, py = self._xy(lon, lat)
            near = _segment_distance(px, py, ax, ay, bx, by) <= radius_m
            f = factor if pd.isna(f) else float(f)
            mult[near] = np.maximum(mult[near], np.inf if f is None else f)
        edges = self.edges.copy()
        edges["travel_time_s"] = edges["travel_time_s"] * mult
        edges["speed_kmh"] = edges["speed_kmh"] / mult
        net = RoadNetwork(self.nodes, edges[np.isfinite(edges["travel_time_s"])])
        if len(self._roadworks_cache) > 32:
            self._roadworks_cache.clear()
        self._roadworks_cache[key] = net
        return net

    def _current(self, at, calendar) -> "RoadNetwork":
        return self if calendar is None or at is None else self.with_roadworks(calendar, at)

    def positions(self, node_ids) -> np.ndarray:
        """Row positions in ``nodes`` of node ids (-1 for unknown ids), to index ``travel_times_*``."""
        # A binary search in the sorted ids: a pandas Index lookup costs more per call than a
        # whole bounded search's worth of recommendation work.
        ids = np.atleast_1d(np.asarray(node_ids, np.int64))
        if not len(self._sorted_ids):
            return np.full(ids.shape, -1, np.intp)
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), len(self._sorted_ids) - 1)
        return np.where(self._sorted_ids[at] == ids, self._sorter[at], -1)

    def _position(self, node_id) -> int:
        pos = self.positions(int(node_id))[0]
        if pos < 0:
            raise KeyError(f"node {node_id} is not in the network")
        return int(pos)

    def tree_to(self, node_id: int, at=None, calendar: pd.DataFrame | None = None,
                limit: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        """Times to ``node_id`` from every node, and each node's next hop towards it.

        The next hop is a position in ``nodes`` (< 0 where there is none).
        ``limit`` (seconds) stops the search there: farther nodes get inf and
        no next hop, as if unreachable (see ``tree_to_nearest``).

        Routes from many origins to one scene come from this one tree (see
        ``follow``): the predecessor of x in the tree rooted at the target on
        the reversed graph is the node after x on the forward path x -> target.
        With roadworks, follow the tree on ``with_roadworks(calendar, at)``.
        """
        net = self._current(at, calendar)
        return dijkstra(net._reverse, indices=net._position(node_id), return_predecessors=True,
                        limit=limit)

    def tree_to_nearest(self, node_id: int, origins, k: int, attempts: int = 2
                        ) -> tuple[np.ndarray, np.ndarray, bool]:
        """``tree_to`` cut short once it holds the ``k`` fastest of ``origins`` (node ids).

        Returns the times from each origin (inf beyond the bound or
        unreachable), the next hops, and whether the search was complete. When
        it was cut short, at least ``k`` origins have finite times and they are
        exactly the ``k`` fastest, with the same times and routes as the full
        tree (every origin left out is farther than the bound, and ties at the
        k-th time lie inside it). The bound starts from the k-th crow-flies
        distance (``BOUND_FACTOR``) and grows fourfold per attempt; when
        ``attempts`` fail (fewer than ``k`` origins can reach the scene, say)
        the full tree answers.
        """
        scene, starts = self._position(node_id), self.positions(origins)
        if 0 < k <= len(starts):
            xy = self._tree.data
            crow = np.hypot(*(xy[starts] - xy[scene]).T)
            bound = max(BOUND_FACTOR * self._pace * float(np.partition(crow, k - 1)[k - 1]), 1.0)
            for _ in range(attempts):
                times, nxt = dijkstra(self._reverse, indices=scene, return_predecessors=True, limit=bound)
                if np.isfinite(times[starts]).sum() >= k:
                    return times[starts], nxt, False
                bound *= 4.0
        times, nxt = self.tree_to(node_id)
        return times[starts], nxt, True

    def follow(self, from_node: int, next_hop: np.ndarray, to_node: int) -> list[int]:
        """The route (node ids) from ``from_node`` along the next hops of ``tree_to(to_node)``; [] if none."""
        return self._follow(self._position(from_node), next_hop, self._position(to_node))

    def follow_many(self, from_nodes, next_hop: np.ndarray, to_node: int) -> list[list[int]]:
        """``follow`` for many origins at once (the tree walked as a Python list: far faster)."""
        positions, target = self.positions(from_nodes), self._position(to_node)
        # A handful of routes walk the array; many walk it as a list (no numpy scalar per hop).
        hops = next_hop.tolist() if len(positions) > 20 else next_hop
        return [self._follow(int(p), hops, target) for p in positions]

    # ------------------------------------------------------------------ internals

    def _follow(self, start: int, nxt: np.ndarray, target: int) -> list[int]:
        if start != target and nxt[start] < 0:
            return []
        path, at = [start], start
        while at != target:
            at = int(nxt[at])
            path.append(at)
        return self._ids[path].tolist()

    def _xy(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Metres east/north of the network's centre (equirectangular; fine at city scale)."""
        lon0, lat0 = self._origin
        k = np.cos(np.radians(lat0))
        return ((np.asarray(lon, float) - lon0) * 111_320.0 * k,
                (np.asarray(lat, float) - lat0) * 110_574.0)

    def __repr__(self) -> str:
        return f"RoadNetwork({len(self.nodes)} nodes, {len(self.edges)} edges)"


# --------------------------------------------------------------------------- helpers


def active_roadworks(calendar: pd.DataFrame | None, at) -> pd.DataFrame:
    """The calendar's roadworks rows with a position, running at ``at``."""
    if calendar is None or at is None or len(calendar) == 0:
        return pd.DataFrame(columns=["calendar_id", "lon", "lat"])
    at = pd.Timestamp(at)
    at = at.tz_localize("UTC") if at.tz is None else at.tz_convert("UTC")
    start = pd.to_datetime(calendar["start"], utc=True)
    end = pd.to_datetime(calendar["end"], utc=True)
    mask = ((calendar["kind"] == "roadworks") & (start <= at) & (at < end)
            & calendar["lon"].notna() & calendar["lat"].notna())
    return calendar[mask.to_numpy()]


def osm_tables(osm_nodes: pd.DataFrame, osm_edges: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """pyrosm's directed nodes/edges as the ``nodes``/``edges`` tables, with travel times."""
    nodes = pd.DataFrame({"node_id": osm_nodes["id"].to_numpy(np.int64),
                          "lon": osm_nodes["lon"].to_numpy(float),
                          "lat": osm_nodes["lat"].to_numpy(float)}).drop_duplicates("node_id")
    road_class = osm_edges.get("highway", pd.Series("road", index=osm_edges.index)).fillna("road").astype(str)
    default = road_class.map(OSM_SPEEDS).fillna(DEFAULT_SPEED_KMH).to_numpy(float)
    tagged = (parse_maxspeed(osm_edges["maxspeed"]) if "maxspeed" in osm_edges
              else np.full(len(osm_edges), np.nan))
    speed = np.where(np.isfinite(tagged) & (tagged > 0), tagged, default)
    length = pd.to_numeric(osm_edges["length"], errors="coerce").fillna(0.0).to_numpy(float)
    edges = pd.DataFrame({"u": osm_edges["u"].to_numpy(np.int64), "v": osm_edges["v"].to_numpy(np.int64),
                          "length_m": length, "road_class": road_class.to_numpy(),
                          "speed_kmh": speed, "travel_time_s": length / (speed / 3.6)})
    edges = edges[edges["u"].isin(nodes["node_id"]) & edges["v"].isin(nodes["node_id"])]
    return nodes.reset_index(drop=True), edges.reset_index(drop=True)


def parse_maxspeed(values: pd.Series) -> np.ndarray:
    """OSM ``maxspeed`` tags to km/h ("50", "30 mph", "FR:urban"...); NaN when unreadable."""
    zones = {"urban": 50.0, "rural": 80.0, "zone30": 30.0, "zone:30": 30.0, "walk": 6.0,
             "living_street": 10.0, "motorway": 130.0, "trunk": 110.0}
    text = values.astype("string").str.strip().str.lower()
    first = text.str.split(";").str[0]
    number = pd.to_numeric(first.str.extract(r"^(\d+(?:\.\d+)?)")[0], errors="coerce")
    number = number.where(~first.str.contains("mph", na=False), number * 1.609344)
    named = first.str.split(":").str[-1].map(zones)
    return number.fillna(named).to_numpy(float, na_value=np.nan)


def _segment_distance(px, py, ax, ay, bx, by) -> np.ndarray:
    """Distance from point p to each segment a-b (arrays), in the same units."""
    dx, dy = bx - ax, by - ay
    norm = dx * dx + dy * dy
    t = np.divide((px - ax) * dx + (py - ay) * dy, norm, out=np.zeros_like(norm), where=norm > 0)
    t = np.clip(t, 0, 1)
    return np.hypot(ax + t * dx - px, ay + t * dy - py)
