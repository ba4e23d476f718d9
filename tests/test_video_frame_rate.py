"""The camera's frame rate: a pipeline runs at the rate its source's frames are stamped at, and
the event rules decide in seconds, whatever that rate (UP-Fall is 18 fps, ABODA 29.97, Mall 2).

The scripted clips are written as real video files (OpenCV, MJPG), once at 10 frames a second
and once with every other frame at 5, and run through the whole pipeline by a camera that
states no frame rate of its own."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import supervision as sv

from safecity.sim.clips import render_clip
from safecity.video import events as ev
from safecity.video.pipeline import CameraPipeline


def _write(path, frames, fps: float) -> str:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return str(path)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """kind -> (scene without fps, {fps: video file}): seed 0's clip at 10 and at 5 frames a second."""
    folder = tmp_path_factory.mktemp("rates")
    out = {}
    for kind in ("fire", "person_on_ground", "abandoned_object"):
        clip = render_clip(kind, seed=0)
        scene = {k: v for k, v in clip.scene.items() if k != "fps"}
        out[kind] = scene, {10: _write(folder / f"{kind}10.avi", clip.frames, 10),
                            5: _write(folder / f"{kind}5.avi", clip.frames[::2], 5)}
    return out


def _events(scene: dict, path: str, kind: str) -> tuple[CameraPipeline, list[dict]]:
    pipe = CameraPipeline({**scene, "camera_id": kind, "detectors": [kind]}, health=False)
    found = []
    for frame in pipe.frames(path):
        found.extend(pipe.process(frame).events)
    return pipe, found


def test_a_pipeline_runs_at_its_video_files_own_rate(tmp_path):
    frames = [np.full((48, 64, 3), 40 * k % 255, np.uint8) for k in range(6)]
    path = _write(tmp_path / "clip.avi", frames, 18)
    pipe = CameraPipeline({"camera_id": "c"})
    assert pipe.fps == 10  # nothing known yet
    got = list(pipe.frames(path))
    assert pipe.fps == pytest.approx(18)
    assert (got[1].ts - got[0].ts).total_seconds() == pytest.approx(1 / 18)
    # every frame-counted duration follows: 2 s of warm-up, 3 s of a lost track, 50 s of background
    assert pipe.warmup_frames == 36 and pipe.tracker.max_lost == 54 and pipe.finder.background.history == 900
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{k}.png"), frame)
    slow = CameraPipeline({"camera_id": "mall", "fps": 2})
    list(slow.frames(folder))
    # the warm-up's 2 s are 4 frames at 2 fps: too few for a background model to learn the
    # street, so the whole view stays blurred for the 20 frames it had at the 10 fps assumed before
    assert slow.fps == 2 and slow.warmup_frames == 20 and slow.tracker.max_lost == 6


@pytest.mark.parametrize("kind", ["fire", "person_on_ground", "abandoned_object"])
def test_a_rule_decides_in_seconds_at_any_frame_rate(written, kind):
    scene, paths = written[kind]
    when = {}
    for fps, path in paths.items():
        pipe, found = _events(scene, path, kind)
        assert pipe.fps == fps
        assert len(found) == 1, f"{kind} at {fps} fps: {found}"
        when[fps] = found[0]["time_s"]
    assert abs(when[10] - when[5]) <= 0.5, when


def _dispersal(fps: float, moving_s: tuple[float, float], n: int = 8, end_s: float = 6.0) -> list[dict]:
    """``n`` people (60 px tall, far apart on a ring) stand still, walk straight out from the
    ring's centre at 2 m/s during ``moving_s``, then stand still again: what crowd movement sees."""
    rule = ev.CrowdMovementRule({})
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    found = []
    for f in range(int(end_s * fps)):
        t = f / fps
        out = 70.0 * (min(max(t, moving_s[0]), moving_s[1]) - moving_s[0])  # 2 m/s at 60 px per 1.7 m
        cx, cy = 320 + (150 + out) * np.cos(angles), 240 + (150 + out) * np.sin(angles)
        xyxy = np.stack([cx - 12, cy - 60, cx + 12, cy], 1).astype(np.float32)
        detections = sv.Detections(xyxy=xyxy, class_id=np.zeros(n, int), tracker_id=np.arange(1, n + 1),
                                   data={"class_name": np.array(["person"] * n)})
        found.extend(rule.update(f, t, None, detections))
    return found


def test_crowd_movement_decides_in_seconds_and_needs_frames_agreeing():
    when = {}
    for fps in (2, 10, 25):
        found = _dispersal(fps, (2.0, 5.0))
        assert [e["direction"] for e in found] == ["dispersal"], (fps, found)
        when[fps] = found[0]["time_s"]
    assert max(when.values()) - min(when.values()) <= 1.0, when
    # at 2 frames a second, the half-second hold is two frames: two frames of a chance agreement
    # are not a crowd dispersing (the same second at 10 frames a second is ten frames: it is)
    assert _dispersal(2, (2.0, 3.0)) == []
    assert len(_dispersal(10, (2.0, 3.0))) == 1
