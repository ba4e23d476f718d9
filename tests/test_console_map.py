"""The operator console's map layers: cameras' fields of view from their ground calibration, the
simulated city's cameras.yml, the recommended units' road routes, and the HoloViews layers.

Geometry against known homographies; the rest on a real simulated city (rendered clips, real
engine, real road network), rendered through Bokeh.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import subprocess
import sys

import holoviews as hv
import numpy as np
import pandas as pd
import pytest
import shapely

from safecity.app import views
from safecity.app.engine import LiveEngine, ReplayEngine
from safecity.config.cameras import EXAMPLE, CameraConfig, load_installation
from safecity.data import citydir
from safecity.data.geo import distance_m
from safecity.sim import city as sim
from safecity.sim.clips import scene_for

hv.extension("bokeh")

ORIGIN = {"lon": 5.3698, "lat": 43.2951}


def camera(**changes) -> CameraConfig:
    data = {"id": "cam-fov", "source": "rtsp://192.0.2.3/live", "fps": 5, "size": [480, 360]}
    return CameraConfig.model_validate({**data, **changes})


def east_north(polygon: shapely.Polygon) -> np.ndarray:
    """A lon/lat polygon's vertices as metres east/north of ORIGIN (as the camera config places them)."""
    lon, lat = np.asarray(polygon.exterior.coords).T
    return np.c_[(lon - ORIGIN["lon"]) * 111_320.0 * math.cos(math.radians(ORIGIN["lat"])),
                 (lat - ORIGIN["lat"]) * 110_574.0]


# --------------------------------------------------------------------------- field of view

# Seen from above: image (u, v) -> ground x = 0.1 u - 24, y = 36 - 0.1 v (metres): 48 x 36 m.
FLAT = [[0.1, 0, -24], [0, -0.1, 36], [0, 0, 1]]


def test_a_camera_seen_from_above_sees_its_image_rectangle():
    cam = camera(ground={"matrix": FLAT, "origin": ORIGIN})
    view = cam.field_of_view(max_range_m=100)
    xy = east_north(view)
    assert xy[:, 0].min() == pytest.approx(-24, abs=0.01) and xy[:, 0].max() == pytest.approx(24, abs=0.01)
    assert xy[:, 1].min() == pytest.approx(0, abs=0.01) and xy[:, 1].max() == pytest.approx(36, abs=0.01)
    assert shapely.Polygon(xy).area == pytest.approx(48 * 36, rel=1e-3)
    corners = cam.image_to_lonlat([[0, 0], [480, 0], [480, 360], [0, 360]])
    assert all(view.exterior.distance(shapely.Point(c)) < 1e-9 for c in corners)


def test_the_range_cuts_the_view_to_a_disc_around_the_camera():
    cam = camera(ground={"matrix": FLAT, "origin": ORIGIN})
    xy = east_north(cam.field_of_view(max_range_m=30))
    assert np.hypot(*xy.T).max() <= 30 + 0.01
    expected = shapely.box(-24, 0, 24, 36).intersection(shapely.Point(0, 0).buffer(30, quad_segs=256))
    assert shapely.Polygon(xy).area == pytest.approx(expected.area, rel=0.01)
    # a camera standing elsewhere than the ground origin: the disc is around where it stands
    moved = camera(ground={"matrix": FLAT, "origin": ORIGIN},
                   position={"lon": ORIGIN["lon"], "lat": ORIGIN["lat"] + 36 / 110_574.0})
    xy = east_north(moved.field_of_view(max_range_m=30))
    assert np.hypot(xy[:, 0], xy[:, 1] - 36).max() <= 30 + 0.01
    assert xy[:, 1].min() > 0.5  # the near edge is now out of range


# A pinhole 10 m above the ground, focal length 400 px, horizon at row 100 of a 480 x 360 image:
# the rows above 100 show the sky. Ground y = f H / (v - 100) ahead, x = (u - 240) y / f.
F, H, HORIZON = 400.0, 10.0, 100.0
PINHOLE = [[H, 0, -H * 240], [0, 0, F * H], [0, 1, -HORIZON]]


def test_a_perspective_view_is_cut_below_the_horizon_and_at_the_range():
    cam = camera(ground={"matrix": PINHOLE, "origin": ORIGIN})
    view = cam.field_of_view(max_range_m=60)
    assert view.is_valid and not view.is_empty
    xy = east_north(view)
    distance = np.hypot(*xy.T)
    assert distance.max() == pytest.approx(60, abs=0.05)  # the fan's rim
    assert xy[:, 1].min() == pytest.approx(F * H / (360 - HORIZON), abs=0.01)  # the bottom row
    half_angle = math.atan(240 / F)  # the image's sides
    assert np.all(np.abs(np.arctan2(xy[:, 0], xy[:, 1])) <= half_angle + 1e-6)
    wedge = shapely.Polygon([(0, 0), (-1000 * math.tan(half_angle), 1000),
                             (1000 * math.tan(half_angle), 1000)])
    expected = (wedge.intersection(shapely.box(-1e4, F * H / (360 - HORIZON), 1e4, 1e4))
                .intersection(shapely.Point(0, 0).buffer(60, quad_segs=256)))
    assert shapely.Polygon(xy).area == pytest.approx(expected.area, rel=0.01)


def test_the_bearing_turns_the_view_on_the_map():
    east = east_north(camera(ground={"matrix": PINHOLE, "origin": ORIGIN, "bearing_deg": 90})
                      .field_of_view(max_range_m=60))
    assert east[:, 0].min() > 0  # looking east: everything seen is east of the camera
    centre = shapely.Polygon(east).centroid
    assert abs(math.degrees(math.atan2(centre.x, centre.y)) - 90) < 0.5


def test_the_example_installation_cameras_have_a_field_of_view():
    quay = load_installation(EXAMPLE).camera("quai-du-port-1")
    view = quay.field_of_view()
    at = quay.position  # the range is counted from where the camera stands
    lon, lat = np.asarray(view.exterior.coords).T
    assert view.area > 0 and distance_m(at.lon, at.lat, lon, lat).max() <= 60 + 0.05
    marks = quay.image_to_lonlat([m.image for m in quay.ground.points])
    inside = [view.buffer(1e-9).contains(shapely.Point(m)) for m in marks]
    assert all(inside)  # its calibration marks are in view (all within range)


def test_a_camera_not_placed_on_the_map_has_no_field_of_view():
    with pytest.raises(ValueError, match="camera 'cam-fov'.*ground"):
        camera(pixels_per_metre=30).field_of_view()
    with pytest.raises(ValueError, match="camera 'cam-fov'.*origin"):
        camera(ground={"matrix": FLAT}).field_of_view()
    with pytest.raises(ValueError, match="positive"):
        camera(ground={"matrix": FLAT, "origin": ORIGIN}).field_of_view(max_range_m=0)
    with pytest.raises(ValueError, match="camera 'cam-fov'.*size"):
        camera(size=None, ground={"matrix": FLAT, "origin": ORIGIN}).field_of_view()


# --------------------------------------------------------------------------- the simulated city


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory):
    """A one-day city, simulated with its clips (the cameras play them), as the demo's is:
    ``--out`` relative to the working directory, as ``dev.sh demo`` gives it (the clips' paths
    in cameras.yml were once written relative to it, not to the city's folder)."""
    parent = tmp_path_factory.mktemp("console-map")
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", "city", "--days", "1"],
                   check=True, capture_output=True, cwd=parent)
    return parent / "city"


@pytest.fixture(scope="module")
def city(city_dir):
    return citydir.read_city(city_dir)


def test_the_simulated_cameras_yml_validates_and_places_every_camera(city_dir, city):
    assert (city_dir / "cameras.yml").read_text().count("source: clips/") == len(city.cameras.cameras)
    # what simulate built is what the file gives back (sources written relative to the city)
    built = sim.camera_installation(city.sensors, city.nodes, city_dir / "clips")
    assert load_installation(city_dir / "cameras.yml").model_dump() == built.model_dump()
    sensors = city.sensors[city.sensors["kind"] == "camera"].set_index("sensor_id")
    assert [c.id for c in city.cameras.cameras] == list(sensors.index)
    nodes = city.nodes.set_index("node_id")
    for cam in city.cameras.cameras:
        row = sensors.loc[cam.id]
        meta = json.loads(row["metadata"])
        assert cam.source == str(city_dir / "clips" / f"{meta['clip']}.avi")
        assert (cam.position.lon, cam.position.lat) == (row["lon"], row["lat"])
        assert (cam.ground.origin.lon, cam.ground.origin.lat) == (row["lon"], row["lat"])
        # it looks along its street: from the street's first node through the camera
        node = nodes.loc[meta["node_id"]]
        street = math.degrees(math.atan2(
            (row["lon"] - node["lon"]) * math.cos(math.radians(row["lat"])), row["lat"] - node["lat"]))
        assert abs((cam.ground.bearing_deg - street + 180) % 360 - 180) < 0.5
        # and its ground mapping agrees with its clip's scale across the street
        scene = scene_for(meta["clip"])
        mid = 0.6 * scene["size"][1]
        (x0, _), (x1, _) = cam.image_to_ground([[200, mid], [280, mid]])
        assert 80 / (x1 - x0) == pytest.approx(scene["pixels_per_metre"], rel=0.01)
        view = cam.field_of_view()
        lon, lat = np.asarray(view.exterior.coords).T
        gap = distance_m(row["lon"], row["lat"], lon, lat)
        assert view.area > 0 and gap.min() < 15 and gap.max() <= 60 + 0.05


def test_a_city_without_cameras_yml_has_no_cameras(tmp_path):
    assert citydir.read_cameras(tmp_path) is None


def test_the_engine_lists_each_cameras_field_once(city, tmp_path):
    engine = LiveEngine(city, tmp_path / "state")
    fields = engine.camera_fields()
    assert list(fields.columns) == ["camera_id", "lon", "lat", "geometry"]
    assert list(fields["camera_id"]) == [c.id for c in city.cameras.cameras]
    for row, cam in zip(fields.itertuples(), city.cameras.cameras):
        assert row.geometry.equals(cam.field_of_view())
        assert (row.lon, row.lat) == (cam.position.lon, cam.position.lat)
    assert engine.camera_fields() is fields  # worked out once
    bare = LiveEngine(dataclasses.replace(city, cameras=None), tmp_path / "bare")
    assert bare.camera_fields().empty
    assert list(bare.camera_fields().columns) == ["camera_id", "lon", "lat", "geometry"]


@pytest.fixture(scope="module")
def replay(city, tmp_path_factory):
    """The demo's engine an hour or so into the day, with a few located incidents."""
    engine = ReplayEngine(city, tmp_path_factory.mktemp("replay"), speed=3600)
    while engine.incident_queue()["lon"].notna().sum() < 3:
        engine.step(1)
    return engine


def test_routes_follow_the_roads_from_each_recommended_unit_to_the_incident(city, replay):
    edges = set(zip(city.edges["u"], city.edges["v"]))
    node_at = city.nodes.set_index("node_id")[["lon", "lat"]]
    units = replay.unit_status().set_index("unit_id")
    checked = 0
    for inc in replay.incident_queue().dropna(subset=["lon", "lat"]).itertuples():
        routes = replay.routes(inc.incident_id)
        rec = replay.recommended(inc.incident_id, top=3)
        rec = rec[rec["reachable"]]
        assert list(routes.columns) == ["unit_id", "kind", "travel_time_s", "distance_m", "path", "eta"]
        assert list(routes["unit_id"]) == list(rec["unit_id"])
        assert np.array_equal(routes["travel_time_s"], rec["travel_time_s"])
        assert np.array_equal(routes["distance_m"], rec["distance_m"])
        now = pd.Timestamp(replay.now, tz="UTC")
        assert (routes["eta"] == now + pd.to_timedelta(routes["travel_time_s"], unit="s")).all()
        scene = replay.network.nearest_node(inc.lon, inc.lat)[0]
        for route, nodes in zip(routes.itertuples(), rec["route"]):
            start = replay.network.nearest_node(units.at[route.unit_id, "lon"],
                                                units.at[route.unit_id, "lat"])[0]
            assert nodes[0] == start and nodes[-1] == scene
            assert route.path == [tuple(node_at.loc[n]) for n in nodes]
            assert all(hop in edges for hop in itertools.pairwise(nodes))
            checked += 1
    assert checked >= 3


def test_routes_are_worked_out_again_once_something_changed(replay):
    incident = replay.incident_queue().dropna(subset=["lon", "lat"]).iloc[0]["incident_id"]
    first = replay.routes(incident)
    assert len(first) > 0
    replay.dispatch(first["unit_id"].iloc[0], incident, actor="tester")
    after = replay.routes(incident)
    assert first["unit_id"].iloc[0] not in set(after["unit_id"])  # no longer available
    assert replay.routes("no-such-incident").empty


# --------------------------------------------------------------------------- layers


def glyph_rows(obj) -> list[tuple[str, int]]:
    """(glyph type, rows in its data source) of every renderer of the Bokeh figure."""
    fig = hv.render(obj, backend="bokeh")
    return [(r.glyph.__class__.__name__, len(next(iter(r.data_source.data.values()), [])))
            for r in fig.renderers]


NOW = pd.Timestamp("2026-06-01 12:00:00", tz="UTC")


def incidents_table() -> pd.DataFrame:
    rows = [("i1", "gunshot", 1, "open", 5.37, 43.30, NOW - pd.Timedelta(minutes=3), ["a", "b", "c"]),
            ("i2", "something_new", 5, "open", 5.38, 43.31, NOW - pd.Timedelta(hours=2), ["d"]),
            ("i3", "medical", 2, "dispatched", None, None, NOW, ["e"]),
            ("i4", "fire", 3, "open", 5.39, 43.29, NOW - pd.Timedelta(seconds=42),
             [f"f{k}" for k in range(9)])]
    return pd.DataFrame([{"incident_id": i, "kind": k, "priority": p, "status": s, "lon": lon, "lat": lat,
                          "ts": ts, "event_ids": json.dumps(ids)} for i, k, p, s, lon, lat, ts, ids in rows])


def test_incident_markers_show_kind_priority_sources_and_age():
    points = views.incident_markers(incidents_table(), NOW.tz_convert(None))  # a naive clock is UTC
    assert glyph_rows(points) == [("Scatter", 3)]  # the one without a place is left out
    data = points.data.set_index("incident_id")
    assert data.loc["i1", "color"] == views.PRIORITY_COLORS[1] and data.loc["i1", "marker"] == "star"
    assert data.loc["i2", "color"] == views.PRIORITY_COLORS[5] and data.loc["i2", "marker"] == "circle"
    assert data.loc["i1", "age"] == "3 min ago" and data.loc["i4", "age"] == "42 s ago"
    assert data.loc["i2", "age"] == "2 h ago"
    assert list(data["sources"]) == [3, 1, 9]
    assert data.loc["i2", "size"] < data.loc["i1", "size"] < data.loc["i4", "size"]
    assert data.loc["i4", "size"] == 10 + 4 * views.MAX_SOURCES_SHOWN  # clipped
    assert data.loc["i2", "alpha"] < data.loc["i1", "alpha"] < data.loc["i4", "alpha"] <= 1
    assert glyph_rows(views.incident_markers(incidents_table().iloc[:0], NOW)) == [("Scatter", 0)]


def test_camera_and_route_layers_draw_on_the_zone_map(city, replay):
    fields = replay.camera_fields()
    assert glyph_rows(views.camera_fields(fields)) == [("MultiPolygons", len(fields))]
    assert glyph_rows(views.camera_positions(fields)) == [("Scatter", len(fields))]
    incident = replay.incident_queue().dropna(subset=["lon", "lat"]).iloc[0]["incident_id"]
    routes = replay.routes(incident)
    rows = glyph_rows(views.route_paths(routes))
    assert sum(n for glyph, n in rows if glyph == "MultiLine") == len(routes) > 0
    assert rows[-1] == ("Text", len(routes))
    labels = views.route_paths(routes).values()[-1].data["text"].tolist()
    assert labels == [f"{u} ETA {views.duration_text(t)}" for u, t in
                      zip(routes["unit_id"], routes["travel_time_s"])]
    empty = glyph_rows(views.route_paths(routes.iloc[:0]))
    assert len(empty) == len(rows) and all(n == 0 for _, n in empty)  # the same layers, nothing in them
    layers = (views.incident_markers(replay.incident_queue(), replay.now) * views.camera_fields(fields)
              * views.camera_positions(fields) * views.route_paths(routes))
    drawn = glyph_rows(views.on_zone_map(city.zones, layers))
    assert ("MultiPolygons", len(fields)) in drawn and ("Text", len(routes)) in drawn
    # over tiles: the same tables in Web Mercator metres
    tiled = views.to_web_mercator(routes)
    x, y = hv.util.transform.lon_lat_to_easting_northing(*np.asarray(routes["path"].iloc[0]).T)
    assert np.allclose(np.asarray(tiled["path"].iloc[0]), np.c_[x, y])


@pytest.mark.parametrize(("age", "text"), [
    (pd.Timedelta(seconds=2), "just now"), (pd.Timedelta(seconds=42), "42 s ago"),
    (pd.Timedelta(minutes=3, seconds=59), "3 min ago"), (pd.Timedelta(hours=2, minutes=5, seconds=30),
                                                         "2 h 5 min ago"),
    (pd.Timedelta(hours=2), "2 h ago"), (pd.Timedelta(days=1, hours=2), "1 d 2 h ago"),
    (-pd.Timedelta(minutes=3), "in 3 min")])
def test_age_text(age, text):
    assert views.age_text(NOW - age, NOW) == text
    assert views.age_text((NOW - age).tz_convert(None), NOW) == text  # naive is UTC
    assert views.age_text(pd.NaT, NOW) == ""


@pytest.mark.parametrize(("ts", "now", "text"), [
    ("2026-06-01 12:03:27.6", "2026-06-01 20:00", "14:03:28"),          # summer: UTC+2
    ("2026-01-15 12:03:27.4", "2026-01-15 20:00", "13:03:27"),          # winter: UTC+1
    ("2026-06-01 12:03:27", "2026-06-02 12:00", "2026-06-01 14:03:27"),  # not today: with the date
    ("2026-06-01 22:30:00", "2026-06-01 23:00", "00:30:00"),             # already tomorrow in Paris
    ("2026-06-01 21:30:00", "2026-06-01 22:30", "2026-06-01 23:30:00"),  # Paris' yesterday, UTC's today
])
def test_local_time_is_the_citys_clock_to_the_second(ts, now, text):
    assert views.local_time(pd.Timestamp(ts, tz="UTC"), "Europe/Paris", now=pd.Timestamp(now, tz="UTC")) == text
    assert views.local_time(pd.Timestamp(ts), "Europe/Paris", now=pd.Timestamp(now)) == text  # naive: UTC
