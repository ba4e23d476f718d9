"""Where things are in Marseille: zones, landmarks, and metre-scale geometry.

Zones are the unit every map, baseline and dispatch rule talks about. The real
zones are the city's 111 quartiers (an open-data GeoJSON the user supplies);
when that file is absent a built-in sketch of 16 arrondissement-like cells over
the real extent keeps everything runnable, so nothing downstream needs to know
which one it got. All functions take data and return data; only ``load_*`` and
``default_*`` read files.
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, mapping, shape

#: Bounding box of the commune (lon_min, lat_min, lon_max, lat_max), islands included.
MARSEILLE_BOUNDS = (5.228, 43.169, 5.533, 43.392)

#: Origin of the local metric frame: the Vieux-Port.
ORIGIN = (5.3698, 43.2951)

_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0 * np.cos(np.radians(ORIGIN[1]))

# A hand-drawn sketch of the mainland commune, clockwise from the Vieux-Port
# mouth: north along the port basins to L'Estaque, the northern hills, the
# Huveaune valley to the east, the Calanques to the south, back up the
# Corniche. Coarse on purpose (a few hundred metres); the real quartiers file
# replaces it when present.
_OUTLINE = [
    (5.360, 43.296), (5.362, 43.320), (5.320, 43.352), (5.300, 43.360),
    (5.280, 43.356), (5.280, 43.380), (5.300, 43.390), (5.320, 43.370),
    (5.355, 43.378), (5.370, 43.390), (5.385, 43.372), (5.440, 43.390),
    (5.465, 43.360), (5.452, 43.338), (5.475, 43.318), (5.530, 43.315),
    (5.530, 43.295), (5.505, 43.280), (5.525, 43.238), (5.515, 43.200),
    (5.455, 43.207), (5.400, 43.213), (5.340, 43.213), (5.364, 43.246),
    (5.376, 43.258), (5.347, 43.282), (5.360, 43.296),
]

# One seed point per arrondissement (INSEE code, label, lon, lat); the built-in
# cells are their Voronoi regions clipped to the outline.
_ARRONDISSEMENT_SEEDS = [
    ("13201", "1er", 5.378, 43.298), ("13202", "2e", 5.366, 43.316),
    ("13203", "3e", 5.381, 43.311), ("13204", "4e", 5.402, 43.306),
    ("13205", "5e", 5.402, 43.293), ("13206", "6e", 5.380, 43.288),
    ("13207", "7e", 5.359, 43.281), ("13208", "8e", 5.384, 43.255),
    ("13209", "9e", 5.458, 43.237), ("13210", "10e", 5.432, 43.274),
    ("13211", "11e", 5.469, 43.288), ("13212", "12e", 5.443, 43.307),
    ("13213", "13e", 5.437, 43.353), ("13214", "14e", 5.396, 43.347),
    ("13215", "15e", 5.365, 43.353), ("13216", "16e", 5.309, 43.364),
]

#: Places where crowds gather; the venues carry a typical capacity.
BUILTIN_LANDMARKS = pd.DataFrame(
    [
        ("Stade Vélodrome", 5.3958, 43.2698, 67_000),
        ("Le Dôme", 5.4045, 43.3153, 8_500),
        ("Palais Omnisports", 5.4019, 43.2824, 6_000),
        ("Vieux-Port", 5.3741, 43.2946, 20_000),
        ("Gare Saint-Charles", 5.3805, 43.3028, None),
        ("Mucem", 5.3610, 43.2967, None),
        ("Notre-Dame de la Garde", 5.3712, 43.2839, None),
        ("Palais Longchamp", 5.3946, 43.3042, None),
    ],
    columns=["name", "lon", "lat", "capacity"],
)

ZONE_COLUMNS = ["zone_id", "name", "arrondissement", "geometry", "lon", "lat"]


# --------------------------------------------------------------------------- frames


def to_xy(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Lon/lat to metres east/north of the Vieux-Port (equirectangular, < 0.1 % error city-wide)."""
    lon, lat = np.asarray(lon, float), np.asarray(lat, float)
    return (lon - ORIGIN[0]) * _M_PER_DEG_LON, (lat - ORIGIN[1]) * _M_PER_DEG_LAT


def to_lonlat(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``to_xy``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return ORIGIN[0] + x / _M_PER_DEG_LON, ORIGIN[1] + y / _M_PER_DEG_LAT


def distance_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Ground distance in metres between points, anywhere (broadcasts like numpy).

    Equirectangular about the pair's mean latitude: under 0.1% error at city scale.
    """
    k = np.cos(np.radians((np.asarray(lat1, float) + np.asarray(lat2, float)) / 2))
    dx = (np.asarray(lon1, float) - np.asarray(lon2, float)) * 111_320.0 * k
    dy = (np.asarray(lat1, float) - np.asarray(lat2, float)) * _M_PER_DEG_LAT
    return np.hypot(dx, dy)


# --------------------------------------------------------------------------- zones


def builtin_zones() -> pd.DataFrame:
    """Sixteen arrondissement-like cells over the real extent, for when no quartiers file is at hand."""
    outline = Polygon(_OUTLINE)
    seeds = shapely.MultiPoint([(lon, lat) for _, _, lon, lat in _ARRONDISSEMENT_SEEDS])
    cells = shapely.voronoi_polygons(seeds, extend_to=outline.buffer(0.1))
    rows = []
    for code, label, lon, lat in _ARRONDISSEMENT_SEEDS:
        cell = next(c for c in cells.geoms if c.contains(Point(lon, lat)))
        geom = _largest(cell.intersection(outline))
        rows.append((code, f"Marseille {label}", code, geom))
    return _zone_frame(rows)


def load_zones(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Zones from a quartiers GeoJSON (fields ``depco``, ``nom_qua``), or the built-in cells.

    Returns zone_id (a slug of the name, stable across releases of the file),
    name, arrondissement (INSEE code, ``13201``..``13216``), geometry (shapely,
    lon/lat) and the zone's representative point as lon/lat.
    """
    if path is None:
        return builtin_zones()
    features = json.loads(Path(path).read_text(encoding="utf-8"))["features"]
    rows = []
    for f in features:
        props = f["properties"]
        name = str(props.get("nom_qua") or props.get("name"))
        rows.append((_slug(name), name.title(), str(props.get("depco", "")), shape(f["geometry"])))
    return _zone_frame(rows)


def shared_data_dir() -> Path | None:
    """The shared real-data folder: ``$SAFECITY_SHARED_DATA``, else ``<repo>/../shared/data``."""
    env = os.environ.get("SAFECITY_SHARED_DATA")
    candidate = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return candidate if candidate.is_dir() else None


def default_zones() -> pd.DataFrame:
    """The real quartiers when the shared data has them, else the built-in cells."""
    path = _shared_file("marseille_quartiers_111.geojson")
    return load_zones(path) if path else builtin_zones()


def zone_of(lon, lat, zones: pd.DataFrame) -> np.ndarray:
    """The zone_id containing each point (None outside every zone), vectorised."""
    points = shapely.points(np.atleast_1d(np.asarray(lon, float)), np.atleast_1d(np.asarray(lat, float)))
    tree = shapely.STRtree(zones["geometry"].to_numpy())
    point_idx, zone_idx = tree.query(points, predicate="intersects")
    out = np.full(len(points), None, dtype=object)
    ids = zones["zone_id"].to_numpy()
    # A point on a shared border hits two zones; keep the first so the answer is stable.
    first = np.unique(point_idx, return_index=True)[1]
    out[point_idx[first]] = ids[zone_idx[first]]
    return out


def land(zones: pd.DataFrame) -> Polygon:
    """The largest connected piece of the zones: the mainland, where roads can run."""
    return _largest(shapely.union_all(zones["geometry"].to_numpy()))


def zones_to_geojson(zones: pd.DataFrame) -> dict:
    """A GeoJSON FeatureCollection of the zones (properties: every non-geometry column)."""
    features = []
    for row in zones.itertuples(index=False):
        props = {k: _plain(v) for k, v in row._asdict().items() if k != "geometry"}
        features.append({"type": "Feature", "properties": props, "geometry": mapping(row.geometry)})
    return {"type": "FeatureCollection", "features": features}


def zones_from_geojson(collection: dict) -> pd.DataFrame:
    """Inverse of ``zones_to_geojson``."""
    rows = [{**f["properties"], "geometry": shape(f["geometry"])} for f in collection["features"]]
    frame = pd.DataFrame(rows)
    return frame[ZONE_COLUMNS + [c for c in frame.columns if c not in ZONE_COLUMNS]]


# --------------------------------------------------------------------------- landmarks


def load_landmarks(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Landmark points (name, lon, lat, capacity) from a monuments GeoJSON, or the built-in venues.

    The file has no capacities; the built-in venues' capacities are merged in by name.
    """
    if path is None:
        return BUILTIN_LANDMARKS.copy()
    features = json.loads(Path(path).read_text(encoding="utf-8"))["features"]
    rows = [(f["properties"].get("name"), *f["geometry"]["coordinates"][:2])
            for f in features if f["geometry"] and f["geometry"]["type"] == "Point"]
    frame = pd.DataFrame(rows, columns=["name", "lon", "lat"])
    capacity = dict(zip(BUILTIN_LANDMARKS["name"], BUILTIN_LANDMARKS["capacity"]))
    frame["capacity"] = frame["name"].map(capacity)
    return frame


def default_landmarks() -> pd.DataFrame:
    """The real monuments when the shared data has them, else the built-in venues."""
    path = _shared_file("marseille_monuments.geojson")
    return load_landmarks(path) if path else load_landmarks()


def to_networkx(nodes: pd.DataFrame, edges: pd.DataFrame):
    """A directed networkx graph of a road network (node attrs lon/lat, edge attrs from ``edges``)."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from((int(r.node_id), {"lon": r.lon, "lat": r.lat}) for r in nodes.itertuples())
    attrs = [c for c in edges.columns if c not in ("u", "v")]
    for row in edges.itertuples(index=False):
        d = row._asdict()
        graph.add_edge(int(d["u"]), int(d["v"]), **{k: d[k] for k in attrs})
    return graph


# --------------------------------------------------------------------------- helpers


def _zone_frame(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["zone_id", "name", "arrondissement", "geometry"])
    rep = [g.representative_point() for g in frame["geometry"]]
    frame["lon"] = [p.x for p in rep]
    frame["lat"] = [p.y for p in rep]
    return frame[ZONE_COLUMNS]


def _shared_file(name: str) -> Path | None:
    root = shared_data_dir()
    path = root / "city" / "marseille" / name if root else None
    return path if path is not None and path.is_file() else None


def _largest(geom) -> Polygon:
    if isinstance(geom, MultiPolygon) or hasattr(geom, "geoms"):
        return max((g for g in geom.geoms if isinstance(g, Polygon)), key=lambda g: g.area)
    return geom


def _slug(name: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


def _plain(value):
    if isinstance(value, (np.generic,)):
        return value.item()
    return value
