"""The city directory: one folder holding a city's store, geography, ground truth and ``city.yml``.

``safecity simulate`` writes one, the dashboards, the replay engine and the
dispatch commands read one; this module is the only place that knows its
layout::

    history/, state.sqlite        the store (sensors, calendar, observations, events, units)
    city.yml                      the city's time zone and holidays (``CityConfig``)
    cameras.yml                   the cameras, when known (an ``Installation``, ``config.cameras``)
    clips/                        the simulated cameras' scripted clips, when rendered
    zones.geojson                 the zones
    network/nodes.parquet         road nodes (node_id, lon, lat)
    network/edges.parquet         directed road edges with travel times
    stations.parquet              police, fire and ambulance stations
    truth/<name>.parquet          ground truth (anomalies, incidents, dispatches), when known
    city.json                     the arguments the city was made with, when simulated

A directory without ``city.yml`` is a city in ``DEFAULT_CITY``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from safecity.config.city import DEFAULT_CITY, CityConfig, load_city
from safecity.data import geo, schema
from safecity.data.tables import read_table

if TYPE_CHECKING:  # the camera config pulls in OpenCV: loaded only when a city has cameras
    from safecity.config.cameras import Installation

#: The tables kept in the store, in the order they are written.
STORE_TABLES = ("sensors", "calendar", "observations", "events", "units")
NETWORK_DIR = "network"
CITY_FILE = "city.yml"
CAMERAS_FILE = "cameras.yml"
PARAMS_FILE = "city.json"


@dataclass
class CityData:
    """Everything a city directory holds: data-model tables, geography, truth and the city's config."""

    sensors: pd.DataFrame
    observations: pd.DataFrame
    events: pd.DataFrame
    units: pd.DataFrame
    calendar: pd.DataFrame
    zones: pd.DataFrame
    nodes: pd.DataFrame
    edges: pd.DataFrame
    stations: pd.DataFrame
    truth: dict[str, pd.DataFrame] = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    config: CityConfig = DEFAULT_CITY
    cameras: Installation | None = None


def write_city(city: CityData, out_dir: str | os.PathLike) -> Path:
    """Write the tables through the store, and the rest as files beside it (see the layout above)."""
    from safecity.data.store import Store

    out = Path(out_dir)
    store = Store(out)
    try:
        for table in STORE_TABLES:
            store.append(table, getattr(city, table))
    finally:
        store.state.close()
    (out / NETWORK_DIR).mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    (out / "zones.geojson").write_text(json.dumps(geo.zones_to_geojson(city.zones)), encoding="utf-8")
    city.nodes.to_parquet(out / NETWORK_DIR / "nodes.parquet", index=False)
    city.edges.to_parquet(out / NETWORK_DIR / "edges.parquet", index=False)
    city.stations.to_parquet(out / "stations.parquet", index=False)
    for name, frame in city.truth.items():
        frame.to_parquet(out / "truth" / f"{name}.parquet", index=False)
    (out / PARAMS_FILE).write_text(json.dumps(city.params, indent=2), encoding="utf-8")
    write_config(city.config, out)
    if city.cameras is not None:
        write_cameras(city.cameras, out)
    return out


def write_config(config: CityConfig, out_dir: str | os.PathLike) -> Path:
    """Write ``city.yml`` into a city directory (the fields ``load_city`` reads back)."""
    path = Path(out_dir) / CITY_FILE
    path.write_text(yaml.safe_dump(config.model_dump(), sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
    return path


def read_city(out_dir: str | os.PathLike, store: bool = True) -> CityData:
    """Load a city directory (clips, when there are some, stay on disk in ``clips/``).

    ``store=False`` leaves the store's tables empty and the store untouched:
    for commands that need only the geography, stations and truth. A missing
    or unreadable file raises ``FileNotFoundError`` or ``tables.TableFileError``
    naming it.
    """
    out = Path(out_dir)
    tables = _read_store(out) if store else {t: schema.empty(t) for t in STORE_TABLES}
    nodes, edges = read_network(out)
    return CityData(
        **tables,
        zones=geo.zones_from_geojson(json.loads((out / "zones.geojson").read_text(encoding="utf-8"))),
        nodes=nodes, edges=edges, stations=read_stations(out), truth=read_truth(out),
        params=read_params(out), config=read_config(out), cameras=read_cameras(out))


def _read_store(out: Path) -> dict[str, pd.DataFrame]:
    from safecity.data.store import Store

    store = Store(out)
    try:
        return {t: store.read(t) for t in STORE_TABLES}
    finally:
        store.state.close()


def read_config(out_dir: str | os.PathLike) -> CityConfig:
    """The directory's ``city.yml``, or ``DEFAULT_CITY`` when it has none."""
    path = Path(out_dir) / CITY_FILE
    return load_city(path) if path.exists() else DEFAULT_CITY


def write_cameras(installation: Installation, out_dir: str | os.PathLike) -> Path:
    """Write ``cameras.yml`` into a city directory; sources inside it are written relative to it,
    so the directory can move. Validated on the way back (``read_cameras``), as at any start."""
    out = Path(out_dir).resolve()
    data = installation.model_dump(mode="json", exclude_none=True)
    for camera in data["cameras"]:
        source = Path(camera["source"])
        if source.is_absolute() and source.is_relative_to(out):
            camera["source"] = source.relative_to(out).as_posix()
    path = out / CAMERAS_FILE
    tmp = path.with_suffix(".yml.tmp")  # never a half-written file for a reader to choke on
    tmp.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None),
                   encoding="utf-8")
    tmp.replace(path)
    return path


def read_cameras(out_dir: str | os.PathLike) -> Installation | None:
    """The directory's validated ``cameras.yml``, or None when it has none (``ConfigError`` when wrong)."""
    path = Path(out_dir) / CAMERAS_FILE
    if not path.exists():
        return None
    from safecity.config.cameras import load_installation

    return load_installation(path)


def read_network(out_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The road network's ``(nodes, edges)`` tables."""
    net = Path(out_dir) / NETWORK_DIR
    return read_table(net / "nodes.parquet"), read_table(net / "edges.parquet")


def read_stations(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The stations table (station_id, kind, name, lon, lat, node_id)."""
    return read_table(Path(out_dir) / "stations.parquet")


def read_truth(out_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The ground-truth tables by name (empty for a city whose truth is unknown)."""
    return {p.stem: read_table(p) for p in sorted((Path(out_dir) / "truth").glob("*.parquet"))}


def read_params(out_dir: str | os.PathLike) -> dict:
    """The arguments the city was simulated with (empty when there is no ``city.json``)."""
    path = Path(out_dir) / PARAMS_FILE
    return json.loads(path.read_text()) if path.exists() else {}
