"""``safecity events eval``: the whole pipeline on a folder of labelled clips, scored clip by clip.

The clips here are scripted ones written to disk (a video file each, and a
folder of frames), so the command's contract is checked without the real
footage; tests/test_real_footage.py runs it on the real clips.
"""
from __future__ import annotations

import json

import cv2
import pandas as pd
import pytest
from click.testing import CliRunner

from safecity.cli import main
from safecity.evaluation.real_clips import (
    FOOTAGE,
    LABELS_DIR,
    LabelsError,
    find_clips,
    footage_labels,
    pool,
    read_labels,
    run_clip,
)
from safecity.sim.clips import render_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """normal.avi and person_on_ground.avi (MJPG at 10 fps), and fire/ as a folder of PNG frames."""
    root = tmp_path_factory.mktemp("clips")
    for scenario in ("normal", "person_on_ground"):
        clip = render_clip(scenario, seed=0)
        h, w = clip.frames[0].shape[:2]
        writer = cv2.VideoWriter(str(root / f"{scenario}.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                 clip.scene["fps"], (w, h))
        for frame in clip.frames:
            writer.write(frame)
        writer.release()
    (root / "fire").mkdir()
    for i, frame in enumerate(render_clip("fire", seed=0).frames):
        cv2.imwrite(str(root / "fire" / f"{i:04d}.png"), frame)
    (root / "notes.txt").write_text("not a clip")
    return root


def _labels(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def _eval(clips, labels, *extra):
    return CliRunner().invoke(main, ["events", "eval", "--clips", str(clips), "--labels", str(labels), *extra])


def test_events_eval_scores_each_kind_clip_by_clip(clips, tmp_path):
    # An empty cell leaves a clip out for that kind; 'note' is not a kind and is ignored.
    labels = _labels(tmp_path, "file,person_on_ground,fire,note\n"
                               "normal.avi,0,0,walkers\nperson_on_ground.avi,1,,a fall\nfire,0,1,smoke\n")
    result = _eval(clips, labels, "--fps", "10")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(out["kinds"]) == {"person_on_ground", "fire"}
    fall, fire = out["kinds"]["person_on_ground"], out["kinds"]["fire"]
    assert (fall["tp"], fall["fp"], fall["fn"], fall["tn"]) == (1, 0, 0, 2)
    assert (fire["tp"], fire["fp"], fire["fn"], fire["tn"]) == (1, 0, 0, 1)
    assert fall["precision"] == fall["recall"] == 1.0
    assert fall["false_alarms_per_hour"] == 0.0 and fall["false_alarms_per_hour_95"][1] > 0
    lo, hi = fall["recall_95"]
    assert 0 < lo < 1 == hi  # one clip: a wide Wilson interval, not a certainty
    assert out["clips"] == 3
    assert out["hours"] == pytest.approx(3 * 200 / 10 / 3600, rel=0.01)  # three 20 s clips
    assert out["fps"] > 0
    assert {e["kind"] for e in out["events"]["person_on_ground.avi"]} == {"person_on_ground"}
    assert any(e["kind"] == "fire" for e in out["events"]["fire"])
    assert "[3/3] fire" in result.stderr  # progress on standard error, not in the JSON


def test_a_false_alarm_counts_per_hour_of_the_clips_labelled_0(clips, tmp_path):
    # Calling the fall clip "no one on the ground" makes its alarm a false one.
    labels = _labels(tmp_path, "file,person_on_ground\nperson_on_ground.avi,0\nnormal.avi,0\n")
    out = json.loads(_eval(clips, labels).stdout.strip().splitlines()[-1])["kinds"]["person_on_ground"]
    assert (out["tp"], out["fp"], out["tn"]) == (0, 1, 1)
    assert out["precision"] == 0.0 and out["recall"] is None
    assert out["false_alarms"] >= 1
    assert out["false_alarms_per_hour"] == pytest.approx(out["false_alarms"] / out["normal_hours"], rel=1e-3)


def test_a_one_camera_configuration_applies_to_every_clip(clips, tmp_path):
    config = tmp_path / "cameras.yml"
    config.write_text(f"name: eval\ncameras:\n  - id: any\n    source: {clips / 'normal.avi'}\n"
                      "    fps: 10\n    detectors: [fire]\n")
    labels = _labels(tmp_path, "file,person_on_ground\nperson_on_ground.avi,1\n")
    result = _eval(clips, labels, "--config", str(config))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["kinds"]["person_on_ground"]["fn"] == 1  # the camera runs no fall rule
    assert not out["events"]["person_on_ground.avi"]


@pytest.mark.parametrize("text, message", [
    ("file,person_on_ground\nnormal.avi,0\nperson_on_ground.avi,yes\n",
     "row 3, column 'person_on_ground': 'yes' is not 0, 1 or empty"),
    ("clip,person_on_ground\nnormal.avi,0\n", "no 'file' column"),
    ("file,mood\nnormal.avi,0\n", "no column names an event kind"),
    ("file,fire\nnormal.avi,0\nnormal.avi,1\n", "row 3: file 'normal.avi' is listed twice"),
    ("file,fire\nnormal.avi,0\nmissing.mp4,1\n", "row 3: no clip 'missing.mp4' in the clips folder"),
    ("file,fire\n,0\n", "row 2: the 'file' cell is empty"),
])
def test_bad_labels_are_refused_naming_the_file_row_and_column(clips, tmp_path, text, message):
    labels = _labels(tmp_path, text)
    result = _eval(clips, labels)
    assert result.exit_code != 0
    assert str(labels) in result.output and message in result.output
    with pytest.raises(LabelsError, match="row|column"):
        read_labels(labels, find_clips(clips))


def test_clips_are_video_files_and_folders_of_frames(clips):
    found = find_clips(clips)
    assert sorted(found) == ["fire", "normal.avi", "person_on_ground.avi"]
    run = run_clip(found["fire"], fps=10, kinds=["fire"])
    assert run.frames == 200 and run.seconds == pytest.approx(20.0)
    assert {e["kind"] for e in run.events} == {"fire"}


def test_pooled_sets_sum_counts_and_hours_before_the_rates():
    a = {"clips": 2, "hours": 0.5, "kinds": {"fire": {"tp": 1, "fp": 0, "fn": 1, "tn": 1, "false_alarms": 0,
                                                       "normal_hours": 0.25}}}
    b = {"clips": 3, "hours": 1.5, "kinds": {"fire": {"tp": 0, "fp": 1, "fn": 0, "tn": 1, "false_alarms": 3,
                                                       "normal_hours": 1.25}}}
    fire = pool({"a": a, "b": b})["kinds"]["fire"]
    assert (fire["tp"], fire["fp"], fire["fn"], fire["tn"]) == (1, 1, 1, 2)
    assert fire["precision"] == fire["recall"] == 0.5
    assert fire["false_alarms_per_hour"] == 2.0  # 3 alarms over 1.5 h, not the mean of 0 and 2.4
    lo, hi = fire["false_alarms_per_hour_95"]
    assert lo < 2.0 < hi


def test_every_real_set_has_labels_with_a_dev_and_test_split(tmp_path):
    for name, footage in FOOTAGE.items():
        table = read_labels(LABELS_DIR / footage.labels)
        assert set(table.columns) >= {"file", "fire", "person_on_ground", "abandoned_object"}, name
        test = pd.read_csv(footage_labels(name, "test", tmp_path))
        assert len(test) and set(test["split"]) == {"test"}, name
    dev = pd.read_csv(footage_labels("upfall_cam1", "dev", tmp_path))
    assert set(dev["trial"]) == {1} and len(dev) == 11
    with pytest.raises(ValueError, match="split"):
        footage_labels("aboda", "train")
