"""Video anomaly detection: beats the flow baseline on UCSD Ped2, adapts to scale, reads footage safely."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import shared_data
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from safecity.cli import main
from safecity.data import schema
from safecity.data.frames import read_frames
from safecity.video import anomaly as vad

PED2 = "video/ucsd_ped2"


# =========================================================================== real data


@pytest.fixture(scope="module")
def ped2_eval():
    """One run of ``safecity vad eval`` on Ped2: 16 normal training clips, the 6 labelled test clips."""
    root = shared_data(PED2)
    result = CliRunner().invoke(main, [
        "vad", "eval", "--train", str(root / "training" / "frames"),
        "--test", str(root / "testing" / "frames"), "--labels", str(root / "testing" / "labels.csv")])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_ped2_pooled_frame_auc_beats_the_flow_baseline(ped2_eval):
    out = ped2_eval
    print(json.dumps({k: out[k] for k in ("auc", "baseline_auc", "fps", "baseline_fps", "window",
                                           "per_clip_auc", "fpr_at_threshold", "tpr_at_threshold")}))
    assert out["auc"] >= 0.98
    assert out["baseline_auc"] < out["auc"]
    assert out["frames"] == 1020 and out["train_frames"] == 2550  # every frame scored, none skipped
    assert out["skipped_frames"] == {}


@pytest.mark.slow
def test_ped2_output_keys_and_learned_window(ped2_eval):
    out = ped2_eval
    for key in ("auc", "fps", "baseline_auc", "baseline_fps", "per_clip_auc", "threshold",
                "fpr_at_threshold", "tpr_at_threshold", "frames", "window"):
        assert key in out, key
    assert sorted(out["per_clip_auc"]) == ["01", "02", "03", "04", "05", "06"]
    assert out["fps"] > 0 and out["baseline_fps"] > 0
    # pedestrians are 30-40 px tall; windows of 15-46 px were all found to work
    assert 21 <= out["window"] <= 45
    assert 0 <= out["fpr_at_threshold"] < out["tpr_at_threshold"] <= 1


# =========================================================================== synthetic footage


def _texture(rng, h, w, lo, hi):
    t = cv2.GaussianBlur(rng.uniform(0, 1, (h, w)).astype(np.float32), (0, 0), 1.2)
    t = (t - t.min()) / (t.max() - t.min())
    return lo + (hi - lo) * t


def synthetic_clip(seed, n=40, walkers=3, fast=False, shape=(160, 240), person=(24, 10)):
    """Textured street, ``walkers`` textured people walking about 1 px/frame; ``fast`` adds a
    large bright object crossing at 6 px/frame (a vehicle among pedestrians)."""
    rng = np.random.default_rng(seed)
    height, width = shape
    ph, pw = person
    movers = []
    for _ in range(walkers):
        y, x = rng.uniform(20, height - ph - 20), rng.uniform(20, width - 60)
        vx, vy = rng.choice([-1, 1]) * rng.uniform(0.8, 1.2), rng.uniform(-0.3, 0.3)
        movers.append((y, x, vy, vx, _texture(rng, ph, pw, 0, 90)))
    if fast:
        movers.append((height / 2 - 20, 10.0, 0.0, 6.0, _texture(rng, 40, 20, 150, 255)))
    background = _texture(rng, height, width, 60, 200)
    frames = []
    for t in range(n):
        frame = background.copy()
        for y, x, vy, vx, tex in movers:
            top, left = int(round(y + vy * t)), int(round(x + vx * t))
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + tex.shape[0], height), min(left + tex.shape[1], width)
            if y1 > y0 and x1 > x0:
                frame[y0:y1, x0:x1] = tex[y0 - top:y1 - top, x0 - left:x1 - left]
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def fitted():
    return vad.FlowMomentumScorer().fit([synthetic_clip(seed) for seed in range(3)])


def test_a_fast_large_object_scores_higher_than_slow_walkers(fitted):
    walkers = fitted.score_samples(synthetic_clip(11))
    vehicle = fitted.score_samples(synthetic_clip(10, fast=True))
    assert vehicle.min() > 2 * walkers.max()
    assert fitted.predict(synthetic_clip(10, fast=True)).mean() == 1.0
    assert set(np.unique(fitted.predict(synthetic_clip(11)))) <= {0, 1}
    # scores are one per frame, in pixels per frame
    assert len(walkers) == 40 and walkers.max() < 1.5


@pytest.mark.parametrize("person, shape", [((16, 7), (160, 240)), ((24, 10), (160, 240)),
                                           ((48, 20), (288, 384))])
def test_fit_learns_a_window_about_one_person_tall(person, shape):
    clips = [synthetic_clip(seed, person=person, shape=shape) for seed in range(3)]
    detector = vad.FlowMomentumScorer().fit(clips)
    assert 0.75 * person[0] <= detector.window_ <= 1.5 * person[0]
    assert detector.window_ % 2 == 1
    assert detector.n_frames_seen_ == 120 and detector.threshold_ > 0


def test_without_moving_people_the_window_falls_back_to_the_default():
    still = [synthetic_clip(seed, walkers=0, n=12) for seed in range(2)]
    with pytest.warns(UserWarning, match="default 31"):
        detector = vad.FlowMomentumScorer().fit(still)
    assert detector.window_ == vad.DEFAULT_WINDOW and np.isnan(detector.window_estimate_)


def test_a_given_window_is_used_as_is():
    detector = vad.FlowMomentumScorer(window=21).fit([synthetic_clip(0, n=10)])
    assert detector.window_ == 21 and detector.window == 21


def test_sklearn_conventions(fitted):
    detector = vad.FlowMomentumScorer(window=25, smoothing=3.0, causal=True)
    params = detector.get_params()
    assert params == {"window": 25, "margin": 8, "smoothing": 3.0, "causal": True,
                      "finest_scale": 1, "false_alarm_rate": 0.001}
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "window_") and not hasattr(copy, "threshold_")
    with pytest.raises(NotFittedError):
        copy.score_samples(synthetic_clip(0, n=5))
    assert copy.set_params(margin=4, window=25).margin == 4
    clip = synthetic_clip(0, n=10)
    assert copy.fit([clip]) is copy
    assert len(copy.score_clips([clip, clip[:4]])[1]) == 4
    with pytest.raises(ValueError, match="wrap"):
        copy.fit(clip)  # one clip (a list of frames) where a list of clips is expected
    with pytest.raises(ValueError, match="one-pass iterator"):
        vad.FlowMomentumScorer().fit([iter(clip)])


def test_causal_smoothing_uses_only_past_frames():
    scores = np.r_[np.zeros(20), np.ones(20)]
    later = scores.copy()
    later[30:] = 5.0
    assert np.array_equal(vad.smooth(scores, 5, causal=True)[:30], vad.smooth(later, 5, causal=True)[:30])
    assert not np.array_equal(vad.smooth(scores, 5)[:30], vad.smooth(later, 5)[:30])


def test_baseline_scores_every_frame():
    frames = synthetic_clip(10, fast=True, n=12)
    scores = vad.flow_percentile_scores(frames)
    assert scores.shape == (12,) and scores.min() > 1
    assert vad.flow_percentile_scores(frames[:1]).tolist() == [0.0]


# =========================================================================== reading footage


def _write_clip(folder, frames, suffix=".png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}{suffix}"), frame)
    return folder


def test_a_corrupt_frame_is_skipped_and_counted(tmp_path):
    folder = _write_clip(tmp_path / "clip", synthetic_clip(0, n=8))
    (folder / "003.png").write_bytes(b"not an image at all")
    cv2.imwrite(str(folder / "005.png"), np.zeros((10, 10), np.uint8))  # wrong size
    (folder / "notes.txt").write_text("ignored: not an image")
    source = read_frames(folder)
    frames = list(source)
    assert len(frames) == 6 and frames[0].shape == (160, 240) and frames[0].dtype == np.uint8
    assert source.skipped == ["003.png", "005.png"]
    assert source.names == ["000.png", "001.png", "002.png", "004.png", "006.png", "007.png"]
    detector = vad.FlowMomentumScorer(window=25).fit([folder])
    assert detector.n_frames_seen_ == 6


def test_frames_are_read_in_natural_order_and_from_video(tmp_path):
    frames = synthetic_clip(0, n=12)
    folder = tmp_path / "natural"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    assert read_frames(folder).files()[:3] == [folder / "0.png", folder / "1.png", folder / "2.png"]
    assert all(np.array_equal(a, b) for a, b in zip(read_frames(folder), frames))

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (240, 160))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    source = read_frames(video)
    read = list(source)
    assert len(read) == 12 and read[0].shape == (160, 240) and source.names[:2] == ["0", "1"]
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "missing")


# =========================================================================== events


def test_to_events_gives_one_valid_anomaly_event_per_run():
    scores = np.array([0.2, 1.5, 1.8, 0.3, 0.1, 2.5, 0.4, 3.0])
    ts = pd.date_range("2026-06-01 10:00", periods=len(scores), freq="100ms", tz="UTC")
    events = vad.to_events(scores, ts, "cam-vieux-port-1", threshold=1.0, lon=5.37, lat=43.29)
    assert len(events) == 3
    checked = schema.validate(events, "events")
    assert (checked["kind"] == "anomaly").all() and (checked["source"] == "vad").all()
    assert checked["event_id"].is_unique
    first = json.loads(checked["details"][0])
    assert (first["first_frame"], first["last_frame"], first["peak_frame"]) == (1, 2, 2)
    assert first["threshold"] == 1.0 and first["peak_score"] == 1.8
    assert checked["ts"][0] == ts[1] and checked["score"].tolist() == [1.8, 2.5, 3.0]
    assert json.loads(checked["details"][2])["last_frame"] == 7  # a run still open at the end
    assert vad.to_events(scores, ts, "cam", threshold=10).empty
    with pytest.raises(ValueError, match="timestamps"):
        vad.to_events(scores, ts[:3], "cam", threshold=1.0)


# =========================================================================== evaluation and CLI


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """Two normal training clips and two test clips (one with a vehicle) with labels, on disk."""
    root = tmp_path_factory.mktemp("footage")
    for seed in range(2):
        _write_clip(root / "train" / f"{seed:02d}", synthetic_clip(seed, n=20), ".jpg")
    rows = []
    for video, fast in (("01", False), ("02", True)):
        _write_clip(root / "test" / video, synthetic_clip(10 + int(fast), n=20, fast=fast), ".jpg")
        rows += [(video, f"{i:03d}.jpg", int(fast)) for i in range(20)]
    rows[0] = ("01", "000.jpg", 1)  # both classes inside clip 01 too
    labels = pd.DataFrame(rows, columns=["video", "frame_file", "abnormal"])
    labels.to_csv(root / "labels.csv", index=False)
    return root, labels


def test_evaluate_on_synthetic_footage(footage):
    root, _ = footage
    out = vad.evaluate(sorted((root / "train").iterdir()), sorted((root / "test").iterdir()),
                       root / "labels.csv", scorer=vad.FlowMomentumScorer(window=25))
    assert out["frames"] == 40 and out["train_frames"] == 40 and out["window"] == 25
    assert out["auc"] > 0.95 and set(out["per_clip_auc"]) == {"01", "02"}
    assert out["per_clip_auc"]["02"] is None  # a clip with one class has no AUC of its own
    assert out["fps"] > 0 and out["baseline_fps"] > 0


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns="abnormal"), "missing column 'abnormal'"),
    (lambda t: t[t["video"] != "02"], "no labels for test clip '02'"),
    (lambda t: t.drop(index=5), "video '01' has 19 labelled frames but"),
    (lambda t: t.assign(abnormal=t["abnormal"].replace(1, "yes")), "column 'abnormal' must be 0 or 1"),
])
def test_a_bad_labels_file_is_refused_naming_the_file(footage, tmp_path, change, message):
    root, labels = footage
    bad = tmp_path / "bad_labels.csv"
    change(labels).to_csv(bad, index=False)
    with pytest.raises(vad.LabelsError, match=message) as err:
        vad.evaluate([root / "train" / "00"], sorted((root / "test").iterdir()), bad)
    assert str(bad) in str(err.value)
    result = CliRunner().invoke(main, ["vad", "eval", "--train", str(root / "train"),
                                       "--test", str(root / "test"), "--labels", str(bad)])
    assert result.exit_code != 0 and str(bad) in result.output and message in result.output


def test_cli_score_writes_one_row_per_frame(footage, tmp_path):
    root, _ = footage
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(main, ["vad", "score", "--train", str(root / "train"), "--window", "25",
                                       "--source", str(root / "test" / "02"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    table = pd.read_csv(out)
    assert list(table.columns) == ["frame", "name", "score", "alarm"]
    assert len(table) == 20 == summary["frames"] and table["name"][0] == "000.jpg"
    assert summary["alarm_frames"] == table["alarm"].sum() == 20  # the vehicle is in every frame
    to_stdout = CliRunner().invoke(main, ["vad", "score", "--train", str(root / "train" / "00"),
                                          "--window", "25", "--source", str(root / "test" / "01")])
    assert to_stdout.exit_code == 0 and to_stdout.stdout.startswith("frame,name,score,alarm")
