"""Camera installation files: what loads, what each mistake says, and the scene the stages get."""
from __future__ import annotations

import copy
import re

import cv2
import numpy as np
import pytest
import yaml

from safecity.video.sources import VideoSource
from safecity.config.cameras import (
    EXAMPLE,
    CameraConfig,
    ConfigError,
    load_cameras,
    load_installation,
)
from safecity.data.geo import distance_m
from safecity.sim.clips import SCENARIOS, scene_for

CAMERA = {
    "id": "cam-3",
    "source": "rtsp://192.0.2.3/live",
    "fps": 5,
    "size": [640, 480],
    "zones": {"plaza": [[100, 200], [400, 200], [400, 450], [100, 450]],
              "gate": [[500, 100], [600, 100], [600, 300], [500, 300]]},
    "forbidden_zones": ["gate"],
    "flow": {"plaza": 0},
    "pixels_per_metre": 30,
}


def write(tmp_path, *cameras, name="cameras.yml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"cameras": list(cameras)}, sort_keys=False))
    return path


def edited(**changes):
    camera = copy.deepcopy(CAMERA)
    for key, value in changes.items():
        if value is None:
            camera.pop(key)
        else:
            camera[key] = value
    return camera


def error_of(tmp_path, *cameras) -> str:
    with pytest.raises(ConfigError) as info:
        load_cameras(write(tmp_path, *cameras))
    return str(info.value)


# --------------------------------------------------------------------------- loading


def test_a_valid_camera_loads(tmp_path):
    (camera,) = load_cameras(write(tmp_path, CAMERA))
    assert camera.id == "cam-3" and camera.fps == 5.0
    assert camera.flow["plaza"] == (1.0, 0.0)
    assert camera.privacy.blur is True  # blur is the default
    assert camera.repeated_presence.enabled is False and camera.repeated_presence.ttl_s == 86_400
    assert "repeated_presence" not in camera.scene()["detectors"]


def test_example_installation_loads_with_the_scene_keys_of_the_simulator():
    installation = load_installation(EXAMPLE)
    assert len(installation.cameras) >= 2
    reference = scene_for("normal")
    for camera in installation.cameras:
        scene = camera.scene()
        missing = set(reference) - {"scenario"} - set(scene)
        assert not missing, f"{camera.id}: {missing}"
        assert scene["camera_id"] == camera.id
        assert all(len(poly) >= 3 and len(poly[0]) == 2 for poly in scene["zones"].values())
        assert set(scene["forbidden_zones"]) <= set(scene["zones"])
        assert np.isclose(np.hypot(*scene["flow_direction"]), 1.0)
        assert scene["pixels_per_metre"] > 0
        assert scene["privacy"] == {"blur": True, "reason": ""}
    quay = installation.camera("quai-du-port-1")
    assert np.asarray(quay.scene()["homography"]).shape == (3, 3)
    assert (quay.scene()["lon"], quay.scene()["lat"]) == (quay.position.lon, quay.position.lat)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_from_scene_round_trips_the_simulator_scenes(scenario):
    scene = scene_for(scenario)
    camera = CameraConfig.from_scene(scene, "synthetic-1", "0")
    back = camera.scene()
    for key, value in scene.items():
        if key != "scenario":
            assert back[key] == value, key
    again = CameraConfig.from_scene(back, "synthetic-1", "0")
    assert again == camera


def test_relative_sources_are_read_from_beside_the_file(tmp_path):
    frames = tmp_path / "site" / "frames"
    frames.mkdir(parents=True)
    for k in range(4):
        cv2.imwrite(str(frames / f"{k}.png"), np.full((48, 64, 3), 10 * k, np.uint8))
    (camera,) = load_cameras(write(tmp_path / "site", edited(source="frames", fps=4)))
    source = VideoSource.from_config(camera)
    got = list(source)
    assert [f.image[0, 0, 0] for f in got] == [0, 10, 20, 30]
    assert (got[1].ts - got[0].ts).total_seconds() == 0.25  # a folder is read at the camera's fps
    assert source.health().camera_id == "cam-3"


# --------------------------------------------------------------------------- ground mapping


def test_calibration_marks_land_on_their_ground_points_and_lonlat():
    quay = load_installation(EXAMPLE).camera("quai-du-port-1")
    marks = quay.ground.points
    ground = quay.image_to_ground([m.image for m in marks])
    assert np.allclose(ground, [m.ground for m in marks], atol=1e-6)
    lonlat = quay.image_to_lonlat([m.image for m in marks])
    origin = quay.ground.origin
    assert np.allclose(lonlat[3], [origin.lon, origin.lat])  # the mark at ground (0, 0)
    # Metres on the ground are metres on the map.
    for (lon, lat), m in zip(lonlat, marks):
        assert abs(distance_m(origin.lon, origin.lat, lon, lat) - np.hypot(*m.ground)) < 0.05
    # The ground +y axis points at bearing_deg (20 degrees east of north).
    lon, lat = quay.image_to_lonlat([marks[0].image])[0]
    east = (lon - origin.lon) * 111_320.0 * np.cos(np.radians(origin.lat))
    north = (lat - origin.lat) * 110_574.0
    bearing = np.degrees(np.arctan2(east, north))
    assert abs(bearing - 20) < 0.1


def test_a_plain_scale_maps_pixels_to_metres(tmp_path):
    camera = edited(ground={"origin": {"lon": 5.37, "lat": 43.29}, "bearing_deg": 90})
    (camera,) = load_cameras(write(tmp_path, camera))
    assert np.allclose(camera.image_to_ground([[30, 0], [0, 60]]), [[1, 0], [0, -2]])
    assert camera.homography is None and camera.scene()["pixels_per_metre"] == 30
    lon, lat = camera.image_to_lonlat([[0, -300]])[0]  # 10 m up the image = 10 m east
    assert lat == pytest.approx(43.29) and distance_m(5.37, 43.29, lon, lat) == pytest.approx(10, abs=0.01)


def test_a_3x3_matrix_is_accepted_and_gives_the_local_scale(tmp_path):
    matrix = [[0.05, 0, 0], [0, 0.05, 0], [0, 0, 1]]  # 20 px per metre everywhere
    (camera,) = load_cameras(write(tmp_path, edited(pixels_per_metre=None, ground={"matrix": matrix})))
    assert camera.scene()["pixels_per_metre"] == pytest.approx(20)
    assert np.allclose(camera.image_to_ground([[40, 20]]), [[2, 1]])


# --------------------------------------------------------------------------- each mistake, named


def test_polygon_with_two_points(tmp_path):
    bad = edited(zones={**CAMERA["zones"], "plaza": [[0, 0], [10, 10]]})
    message = error_of(tmp_path, bad)
    assert re.search(r"cameras\.yml: camera 'cam-3': zones\.plaza: a polygon needs at least 3 points",
                     message), message


def test_polygon_that_crosses_itself(tmp_path):
    bowtie = [[100, 200], [400, 450], [400, 200], [100, 450]]
    message = error_of(tmp_path, edited(zones={**CAMERA["zones"], "plaza": bowtie}))
    assert "camera 'cam-3': zones.plaza: the polygon crosses itself" in message


def test_zone_outside_the_image(tmp_path):
    message = error_of(tmp_path, edited(zones={**CAMERA["zones"], "gate": [[500, 100], [700, 100], [600, 300]]}))
    assert "camera 'cam-3': zones.gate: point (700, 100) is outside the 640x480 image" in message


def test_unknown_key_with_a_suggestion(tmp_path):
    message = error_of(tmp_path, edited(loitering_limt_s=30))
    assert "camera 'cam-3': loitering_limt_s: unknown key (did you mean 'loitering_limit_s'?)" in message


def test_unknown_nested_key(tmp_path):
    message = error_of(tmp_path, edited(privacy={"blurr": False}))
    assert "camera 'cam-3': privacy.blurr: unknown key" in message


def test_wrong_type(tmp_path):
    message = error_of(tmp_path, edited(fps="fast"))
    assert "camera 'cam-3': fps: Input should be a valid number" in message and "'fast'" in message
    message = error_of(tmp_path, edited(zones={"plaza": [[1, 2], [3, "x"], [5, 1]]}, forbidden_zones=[],
                                        flow={}))
    assert "camera 'cam-3': zones.plaza[1]" in message


def test_forbidden_zone_that_is_not_a_zone(tmp_path):
    message = error_of(tmp_path, edited(forbidden_zones=["gate", "roof"]))
    assert "camera 'cam-3': forbidden_zones: 'roof' is not one of the zones (gate, plaza)" in message


def test_flow_for_an_unknown_zone(tmp_path):
    message = error_of(tmp_path, edited(flow={"corridor": [1, 0]}))
    assert "camera 'cam-3': flow: 'corridor' is not one of the zones" in message


def test_zero_flow_vector(tmp_path):
    message = error_of(tmp_path, edited(flow={"plaza": [0, 0]}))
    assert "camera 'cam-3': flow.plaza: a direction vector cannot be [0, 0]" in message


def test_duplicate_camera_ids(tmp_path):
    message = error_of(tmp_path, CAMERA, edited(source="rtsp://192.0.2.4/live"))
    assert "cameras.yml: camera 'cam-3': id: the same id is used by cameras #1 and #2" in message


def test_homography_with_three_pairs(tmp_path):
    points = [{"image": [0, 0], "ground": [0, 0]}, {"image": [10, 0], "ground": [1, 0]},
              {"image": [0, 10], "ground": [0, 1]}]
    message = error_of(tmp_path, edited(ground={"points": points}))
    assert ("camera 'cam-3': ground: points: a homography needs at least 4 image/ground point pairs, got 3"
            in message)


def test_degenerate_homography(tmp_path):
    on_a_line = [{"image": [0, 0], "ground": [0, 0]}, {"image": [10, 0], "ground": [1, 0]},
                 {"image": [20, 0], "ground": [2, 0]}, {"image": [30, 0.0], "ground": [3, 0]},
                 {"image": [0, 10], "ground": [0, 1]}]
    message = error_of(tmp_path, edited(ground={"points": on_a_line}))
    assert "camera 'cam-3': ground: points: the image points are degenerate" in message
    singular = [[1, 2, 3], [2, 4, 6], [0, 0, 1]]
    message = error_of(tmp_path, edited(ground={"matrix": singular}))
    assert "camera 'cam-3': ground: matrix: the homography is degenerate" in message


def test_blur_off_without_a_reason(tmp_path):
    message = error_of(tmp_path, edited(privacy={"blur": False}))
    assert "camera 'cam-3': privacy: blur is false but no reason is given" in message
    (camera,) = load_cameras(write(tmp_path, edited(privacy={"blur": False, "reason": "court order 42"})))
    assert camera.scene()["privacy"] == {"blur": False, "reason": "court order 42"}


def test_missing_source(tmp_path):
    message = error_of(tmp_path, edited(source=None))
    assert "cameras.yml: camera 'cam-3': source: missing (required)" in message


def test_source_file_that_does_not_exist(tmp_path):
    message = error_of(tmp_path, edited(source="recordings/monday.mp4"))
    assert "camera 'cam-3': source:" in message and "monday.mp4: no such video file" in message


def test_opt_in_and_plug_in_detectors_are_checked(tmp_path):
    message = error_of(tmp_path, edited(detectors=["loitering", "repeated_presence"]))
    assert "camera 'cam-3': detectors: repeated_presence is opt-in" in message
    message = error_of(tmp_path, edited(detectors=["weapon"]))
    assert "camera 'cam-3': detectors: weapon detection needs a plug-in model" in message
    message = error_of(tmp_path, edited(detectors=["teleportation"]))
    assert "camera 'cam-3': detectors[0]: Input should be 'loitering'" in message
    message = error_of(tmp_path, edited(pixels_per_metre=None))
    assert "camera 'cam-3': detectors: excessive_density needs square metres" in message
    message = error_of(tmp_path, edited(plugins=[{"path": "models/weapons.onnx", "kind": "weapon"}]))
    assert "camera 'cam-3': plugins[0].path:" in message and "weapons.onnx: no such model file" in message


def test_enabled_repeated_presence_and_a_plug_in(tmp_path):
    (tmp_path / "guns.onnx").write_bytes(b"")  # existence is what the configuration checks
    camera = edited(repeated_presence={"enabled": True, "ttl_s": 3600},
                    plugins=[{"path": "guns.onnx", "kind": "weapon", "classes": ["gun"]}],
                    detectors=["forbidden_zone", "weapon"])
    (camera,) = load_cameras(write(tmp_path, camera))
    scene = camera.scene()
    assert scene["detectors"] == ["forbidden_zone", "weapon", "repeated_presence"]
    assert scene["repeat_enabled"] and scene["repeat_ttl_s"] == 3600
    # The section as a dict, ready for video.events.repeated_presence.RepeatedPresenceRule(scene, **settings).
    assert scene["repeated_presence"] == {"enabled": True, "ttl_s": 3600, "count": 3, "window_s": 3600}
    assert scene["plugins"][0]["path"] == str(tmp_path / "guns.onnx")


def test_every_mistake_is_reported_at_once_with_its_camera(tmp_path):
    other = edited(id="cam-4", source="rtsp://192.0.2.4/live", fps=-1)
    message = error_of(tmp_path, edited(forbidden_zones=["roof"]), other)
    assert "camera 'cam-3': forbidden_zones" in message and "camera 'cam-4': fps" in message


def test_a_camera_without_an_id_is_named_by_its_position(tmp_path):
    message = error_of(tmp_path, CAMERA, edited(id=None, source="rtsp://192.0.2.4/live"))
    assert "camera #2: id: missing (required)" in message


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.yml: no such configuration file"):
        load_cameras(tmp_path / "nowhere.yml")
    broken = tmp_path / "broken.yml"
    broken.write_text("cameras:\n  - id: a\n    zones: {plaza: [[1, 2]\n")
    with pytest.raises(ConfigError, match=r"broken.yml: line \d+ not valid YAML"):
        load_cameras(broken)
    empty = tmp_path / "empty.yml"
    empty.write_text("cameras: []\n")
    with pytest.raises(ConfigError, match="empty.yml: cameras: List should have at least 1 item"):
        load_cameras(empty)
