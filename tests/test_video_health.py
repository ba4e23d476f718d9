"""Camera health events (frozen, tampered, offline), counting lines and dwell time, on real
video written and read back through OpenCV."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from safecity.app.camera_runner import run_camera
from safecity.config.cameras import CameraConfig, ConfigError, load_installation
from safecity.config.event_kinds import HEALTH_KINDS
from safecity.data.store import Store
from safecity.incidents.fusion import FusionRules, fuse
from safecity.sim.clips import render_clip
from safecity.video.dwell import dwell_times
from safecity.video.health import CameraHealthCheck
from safecity.video.lines import line_counts
from safecity.video.pipeline import CameraPipeline
from safecity.video.sources import VideoSource
from tests.conftest import free_port, shared_data

FPS = 10
N = 260  # frames: 26 s at 10 fps
CHANGE_AT = 100  # the frame where the trouble starts (10 s)


@pytest.fixture(scope="module")
def street():
    return render_clip("normal", n_frames=N, fps=FPS)


def write_clip(path: Path, frames) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


class Rows:
    """A store that keeps what the pipeline appends, to read it back."""

    def __init__(self):
        self.tables: dict[str, list[pd.DataFrame]] = {}

    def append(self, table, df):
        self.tables.setdefault(table, []).append(df)
        return len(df)

    def read(self, table):
        parts = self.tables.get(table, [])
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["kind"])


def run_clip(path: Path, scene: dict, **kwargs) -> Rows:
    rows = Rows()
    source = VideoSource(path, "cam", start="2026-05-01T10:00:00Z")
    CameraPipeline(scene, rules=[], **kwargs).run(source, store=rows)
    return rows


def health_events(rows: Rows) -> pd.DataFrame:
    events = rows.read("events")
    return events[events["kind"].isin(HEALTH_KINDS)]


def seconds(events: pd.DataFrame) -> np.ndarray:
    return ((events["ts"] - pd.Timestamp("2026-05-01T10:00:00Z")).dt.total_seconds()).to_numpy()


def test_a_frozen_picture_is_raised_once_after_frozen_s(street, tmp_path):
    frames = list(street.frames)
    frames[CHANGE_AT:CHANGE_AT + 150] = [frames[CHANGE_AT]] * 150  # the player repeats one frame
    events = health_events(run_clip(write_clip(tmp_path / "frozen.avi", frames), street.scene))
    assert events["kind"].tolist() == ["camera_frozen"]
    frozen_s = CameraHealthCheck().frozen_s
    assert CHANGE_AT / FPS + frozen_s <= seconds(events)[0] <= CHANGE_AT / FPS + frozen_s + 0.2
    assert json.loads(events["details"].iloc[0])["since_s"] == pytest.approx(CHANGE_AT / FPS, abs=0.2)


def test_a_covered_lens_is_raised_as_tampered(street, tmp_path):
    frames = list(street.frames)
    rng = np.random.default_rng(3)
    for k in range(CHANGE_AT, CHANGE_AT + 60):  # a hand over the lens: dark, a little noise
        frames[k] = np.clip(rng.normal(12, 2, frames[k].shape), 0, 255).astype(np.uint8)
    events = health_events(run_clip(write_clip(tmp_path / "covered.avi", frames), street.scene))
    assert events["kind"].tolist() == ["camera_tampered"]
    assert json.loads(events["details"].iloc[0])["cause"] == "covered"
    hold, every = CameraHealthCheck().tampered_s, CameraHealthCheck().check_every_s
    assert CHANGE_AT / FPS + hold <= seconds(events)[0] <= CHANGE_AT / FPS + hold + every + 0.1


def test_a_moved_camera_is_raised_as_tampered(street, tmp_path):
    frames = list(street.frames)
    turn = np.float32([[1, 0, 60], [0, 1, 25]])  # the camera pushed: the view slides 60 px, 25 px
    frames[CHANGE_AT:] = [cv2.warpAffine(f, turn, (f.shape[1], f.shape[0]), borderMode=cv2.BORDER_REFLECT)
                          for f in frames[CHANGE_AT:]]
    events = health_events(run_clip(write_clip(tmp_path / "moved.avi", frames), street.scene))
    assert events["kind"].tolist() == ["camera_tampered"]
    assert json.loads(events["details"].iloc[0])["cause"] == "moved"
    hold, every = CameraHealthCheck().tampered_s, CameraHealthCheck().check_every_s
    assert CHANGE_AT / FPS + hold <= seconds(events)[0] <= CHANGE_AT / FPS + hold + every + 0.1


@pytest.mark.parametrize("scenario", ["normal", "excessive_density", "crowd_movement", "fire",
                                      "abandoned_object"])
def test_normal_synthetic_clips_raise_no_health_event(scenario, tmp_path):
    clip = render_clip(scenario, n_frames=300, fps=FPS)
    assert health_events(run_clip(write_clip(tmp_path / f"{scenario}.avi", clip.frames), clip.scene)).empty


def test_a_real_street_raises_no_health_event():
    video = shared_data("video/pets2009_s2l1/vtest.avi")
    check, found = CameraHealthCheck(), []
    capture = cv2.VideoCapture(str(video))
    k = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        found += check.update(k, k / 7.0, frame)  # PETS 2009 is 7 frames per second
        k += 1
    capture.release()
    assert k == 795 and found == []


def test_health_checks_can_be_turned_off(street, tmp_path):
    frames = list(street.frames)
    frames[CHANGE_AT:CHANGE_AT + 150] = [frames[CHANGE_AT]] * 150
    scene = {**street.scene, "health": {"enabled": False}}
    assert health_events(run_clip(write_clip(tmp_path / "frozen.avi", frames), scene)).empty


# ----------------------------------------------------------------- offline, fusion


def test_a_camera_that_gives_no_frame_raises_offline_into_the_store(tmp_path):
    camera = CameraConfig(id="cam-dead", source=f"rtsp://127.0.0.1:{free_port()}/stream", fps=5,
                          position={"lon": 5.37, "lat": 43.29}, detectors=["loitering"])
    store = Store(tmp_path / "store")
    summary = run_camera(camera, store, give_up_after_s=1.0)
    assert summary["status"] == "failed"
    events = store.read("events")
    assert events["kind"].tolist() == ["camera_offline"]
    assert events["sensor_id"].iloc[0] == "cam-dead"
    assert events["lon"].iloc[0] == pytest.approx(5.37)
    # it reaches the queue: fusion makes it an incident that needs no unit
    incidents, _ = fuse(events)
    assert incidents["kind"].tolist() == ["camera_offline"]
    assert incidents["priority"].iloc[0] == 4
    assert FusionRules().units_needed("camera_offline") == {}


def test_health_kinds_become_incidents_with_their_priority(street, tmp_path):
    frames = list(street.frames)
    frames[CHANGE_AT:CHANGE_AT + 60] = [np.zeros_like(f) for f in frames[CHANGE_AT:CHANGE_AT + 60]]
    scene = {**street.scene, "lon": 5.37, "lat": 43.29}
    incidents, _ = fuse(health_events(run_clip(write_clip(tmp_path / "black.avi", frames), scene)))
    assert incidents["kind"].tolist() == ["camera_tampered"]
    assert incidents["priority"].iloc[0] == 3
    assert FusionRules().units_needed("camera_tampered") == {}


# ----------------------------------------------------------------- lines and dwell


def test_people_walking_right_cross_a_downward_line_in(street, tmp_path):
    # The script's people walk left to right; a line drawn down the image has its left-hand
    # side (looking along it) on the screen's right, so they go in.
    scene = {**street.scene, "lines": {"middle": [[240, 0], [240, 360]]}}
    obs = run_clip(write_clip(tmp_path / "street.avi", street.frames), scene, bin_s=10).read("observations")
    feet = street.tracks.assign(fx=street.tracks["x"] + street.tracks["w"] / 2)
    crossed = feet.groupby("track_id")["fx"].agg(["min", "max"])
    truth = int(((crossed["min"] < 230) & (crossed["max"] > 250)).sum())
    counts = line_counts(obs)
    assert counts["camera"].unique().tolist() == [CameraPipeline(scene).camera_id]
    assert counts["line"].unique().tolist() == ["middle"]
    n_in, n_out = int(counts["in"].sum()), int(counts["out"].sum())
    assert truth >= 3
    assert 0.6 * truth <= n_in <= truth + 1 and n_out <= 1


def test_dwell_is_stored_per_bin_and_read_back_per_hour(tmp_path):
    clip = render_clip("loitering")
    obs = run_clip(write_clip(tmp_path / "loiter.avi", clip.frames), clip.scene, bin_s=10).read("observations")
    assert {"dwell_count", "dwell_mean_s", "dwell_max_s"} <= set(obs["metric"])
    assert "track_id" not in obs.columns  # per bin, never per track
    table = dwell_times(obs, zone="plaza")
    assert table["zone"].unique().tolist() == ["plaza"] and len(table) == 1
    row = table.iloc[0]
    assert row["ts"] == pd.Timestamp("2026-05-01T10:00:00Z")
    assert row["stays"] >= 1
    # the loiterer stays past the loitering limit (measured with one break of its track)
    assert row["max_s"] >= clip.scene["loitering_limit_s"]
    assert 0 < row["mean_s"] <= row["max_s"]
    plaza = obs[(obs["sensor_id"].str.endswith(":plaza")) & (obs["metric"] == "dwell_count")]
    assert int(plaza["value"].sum()) == row["stays"]
    assert dwell_times(obs, zone="plaza", start="2026-05-01T11:00:00Z").empty


# ----------------------------------------------------------------- configuration


def _write(tmp_path: Path, lines: str) -> Path:
    clip = tmp_path / "c.avi"
    clip.write_bytes(b"")
    path = tmp_path / "cameras.yml"
    path.write_text(f"""cameras:
  - id: cam-1
    source: c.avi
    fps: 5
    size: [640, 480]
    pixels_per_metre: 40
    zones:
      plaza: [[0, 0], [100, 0], [100, 100]]
    lines:
{lines}
""")
    return path


@pytest.mark.parametrize("line, message", [
    ("      gate: [[0, 0], [10, 10], [20, 0]]", "lines.gate: a line is two points"),
    ("      gate: [[5, 5], [5, 5]]", "lines.gate: a line's two points are the same point"),
    ("      gate: [[0, 0], [700, 10]]", "lines.gate: point (700, 10) is outside the 640x480 image"),
    ("      plaza: [[0, 0], [10, 10]]", "lines.plaza: a zone has the same name"),
])
def test_bad_lines_are_refused_naming_file_camera_and_field(tmp_path, line, message):
    path = _write(tmp_path, line)
    with pytest.raises(ConfigError) as err:
        load_installation(path)
    assert f"{path}: camera 'cam-1': " in str(err.value) and message in str(err.value)


def test_lines_reach_the_pipeline(tmp_path):
    camera = load_installation(_write(tmp_path, "      gate: [[0, 200], [640, 200]]")).cameras[0]
    assert camera.scene()["lines"] == {"gate": [[0.0, 200.0], [640.0, 200.0]]}
    assert CameraConfig.from_scene(camera.scene(), "cam-1", camera.source).lines == camera.lines
