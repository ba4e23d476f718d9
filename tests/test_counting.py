"""Crowd counting: Mall's error under 2.3 people per frame, zones that add up, clear errors on bad input."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import shared_data
from safecity.cli import main
from safecity.sim.clips import render_clip
from safecity.video import counting
from safecity.video.counting import CrowdCounter, ForegroundEdgeRidge

MALL = "video/mall"


# =========================================================================== real data


@pytest.fixture(scope="module")
def mall_eval():
    """One run of ``safecity count eval`` on Mall: fit frames 1..800, test 801..1200."""
    root = shared_data(MALL)
    result = CliRunner().invoke(main, [
        "count", "eval", "--frames", str(root / "frames"), "--counts", str(root / "counts.csv"),
        "--train", "800", "--heads", str(root / "heads.csv"),
        "--perspective", str(root / "perspective_roi.mat")])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_mall_error_is_at_most_2_3_people_per_frame_and_beats_the_ridge_baseline(mall_eval):
    out = mall_eval
    print(json.dumps({k: out[k] for k in ("mae", "mse", "fps", "baseline_mae", "baseline_mse", "bias")}))
    assert out["n_train"] == 800 and out["n_test"] == 400
    assert out["first_test_frame"] == "seq_000801.jpg" and out["last_test_frame"] == "seq_001200.jpg"
    assert out["mae"] <= 2.3  # 2.15 when last run (2.46 with the fixed median background)
    assert out["mse"] >= out["mae"] ** 2  # Jensen: a mean square is never below the squared mean error
    # The baseline is fitted and scored in the same run, on the same frames (2.50 when last run).
    assert out["mae"] < out["baseline_mae"]
    assert {"bias_second_half", "baseline_bias", "baseline_bias_second_half"} <= set(out)
    assert np.isfinite(out["baseline_mse"])
    assert 2.0 < out["baseline_mae"] < 6.0  # the issue quotes about 3.4 for a ridge of this kind
    assert out["fps"] > 0 and out["baseline_fps"] > 0
    # A person at the nearest row of Mall is about 100 px tall (640x480 frames).
    assert 50 < out["person_height_px"] < 200


def test_mall_perspective_file_reads_map_and_roi():
    pmap, roi = counting.load_perspective(shared_data(MALL) / "perspective_roi.mat")
    assert pmap.shape == roi.shape == (480, 640)
    assert pmap[0].mean() > pmap[-1].mean()  # far rows stand for more ground
    assert 0.5 < roi.mean() < 1.0


# =========================================================================== synthetic scene


@pytest.fixture(scope="module")
def crowd():
    """The scripted dense crowd: frames, people per frame, a head point per person (box top centre)."""
    clip = render_clip("excessive_density")
    people = clip.tracks[clip.tracks["cls"] == "person"]
    n = len(clip.frames)
    counts = people.groupby("frame").size().reindex(range(n), fill_value=0).to_numpy()
    heads = [_heads(people[people["frame"] == f]) for f in range(n)]
    return clip, counts, heads, people


def _heads(boxes: pd.DataFrame) -> np.ndarray:
    return np.column_stack([boxes["x"] + boxes["w"] / 2, boxes["y"] + 0.1 * boxes["h"]])


@pytest.fixture(scope="module")
def fitted(crowd):
    clip, counts, heads, people = crowd
    shape = clip.frames[0].shape[:2]
    perspective = counting.perspective_from_boxes(people, shape)
    counter = CrowdCounter(perspective=perspective, max_iter=100)
    return counter.fit(clip.frames[:120], counts[:120], heads=heads[:120])


def test_synthetic_crowd_is_counted_in_held_out_frames(crowd, fitted):
    clip, counts, _, _ = crowd
    predicted = fitted.predict(clip.frames[120:])
    truth = counts[120:]
    mae = np.abs(predicted - truth).mean()
    print(f"synthetic held-out MAE {mae:.2f} people, mean count {truth.mean():.1f}")
    assert mae <= 0.15 * truth.mean()
    # The baseline fitted on the same frames also runs and gives one count per frame.
    base = ForegroundEdgeRidge(perspective=fitted.perspective).fit(clip.frames[:120], counts[:120])
    assert base.predict(clip.frames[120:]).shape == truth.shape


def test_zone_counts_add_up_to_the_frame_count(crowd, fitted):
    clip, _, _, _ = crowd
    frame = clip.frames[150]
    w, h = clip.scene["size"]
    # Two zones tiling the frame, with a slanted border that cuts cells.
    zones = {"left": [[0, 0], [200, 0], [280, h], [0, h]], "right": [[200, 0], [w, 0], [w, h], [280, h]]}
    per_zone = fitted.count_zones(frame, zones)
    total = fitted.predict([frame])[0]
    assert per_zone["left"] + per_zone["right"] == pytest.approx(total, abs=1e-6)
    assert per_zone["left"] > 0 and per_zone["right"] > 0
    # The scene's plaza holds the gathered crowd: more people there than its share of the area.
    plaza = fitted.count_zones(frame, {"plaza": clip.scene["zones"]["plaza"]})["plaza"]
    assert plaza > total * 0.2
    assert fitted.density(frame).shape == fitted.grid_


def test_perspective_from_boxes_grows_towards_the_far_rows(crowd):
    _, _, _, people = crowd
    pmap = counting.perspective_from_boxes(people, (360, 480))
    assert pmap[-1, 0] == pytest.approx(1.0)
    assert pmap[100, 0] > pmap[300, 0] > 1.0


def test_without_heads_the_counter_still_learns_counts(crowd):
    clip, counts, _, _ = crowd
    counter = CrowdCounter(max_iter=50).fit(clip.frames[:120:2], counts[:120:2])
    predicted = counter.predict(clip.frames[120::4])
    assert np.abs(predicted - counts[120::4]).mean() < 0.3 * counts[120:].mean()


def test_sklearn_conventions(fitted):
    params = fitted.get_params()
    assert params["cell"] == 16 and params["smoothing"] == 1 and params["adapt"] == 0.05
    unfitted = clone(fitted)
    assert not hasattr(unfitted, "model_")
    with pytest.raises(NotFittedError):
        unfitted.density(np.zeros((360, 480), np.uint8))
    with pytest.raises(ValueError, match="fitted on 480x360"):
        fitted.density(np.zeros((100, 100), np.uint8))


def test_causal_smoothing_uses_only_past_frames():
    x = np.array([0.0, 10, 20, 30, 1000])
    s = counting.smooth_counts(x, 3)
    assert s[:4].tolist() == [0.0, 5.0, 10.0, 20.0]  # the spike at the end does not reach back


def test_the_background_follows_the_floor_but_not_a_person_standing_on_it():
    background = np.full((40, 40), 100.0, np.float32)
    frame = np.full((40, 40), 110, np.uint8)  # the light on the floor rose by 10
    frame[10:20, 10:20] = 200  # someone standing
    after = counting.adapt_background(background, frame, 0.5)
    assert after[35, 35] == pytest.approx(105.0)  # half-way toward the floor's new level
    assert after[15, 15] == 100.0  # the person is not learnt as floor ...
    assert after[10 - counting.ADAPT_MARGIN, 15] == 100.0  # ... nor the margin around them
    assert background[35, 35] == 100.0  # a new array; the old background is left alone


def test_match_light_shifts_the_background_by_the_floors_change_only():
    rng = np.random.default_rng(0)
    background = rng.uniform(60, 160, (60, 80)).astype(np.float32)
    frame = np.clip(background + 8 + rng.normal(0, 2, background.shape), 0, 255).astype(np.uint8)
    frame[:20, :30] = 250  # a bright crowd over a quarter of the frame does not move the shift
    lit = counting.match_light(frame, background, np.ones(background.shape, bool))
    assert lit - background == pytest.approx(np.full(background.shape, 8.0), abs=0.6)


def test_count_live_counts_each_frame_before_learning_it(crowd, fitted):
    clip, counts, _, _ = crowd
    frames = clip.frames[120:130]
    fixed = clone(fitted).set_params(adapt=0.0, max_iter=30).fit(clip.frames[:120], counts[:120])
    before = fixed.background_.copy()
    # Without adaptation, counting live gives the same answers as predict and learns nothing.
    assert counting.count_live(fixed, frames) == pytest.approx(fixed.predict(frames))
    assert np.array_equal(fixed.background_, before)
    # With it, the first frame is counted with the background as fit left it, then learnt.
    live = clone(fitted).set_params(max_iter=30).fit(clip.frames[:120], counts[:120])
    first = live.predict(frames[:1])[0]
    start = live.background_.copy()
    got = counting.count_live(live, frames)
    assert got[0] == pytest.approx(first)
    assert not np.array_equal(live.background_, start)
    assert np.abs(got - counts[120:130]).mean() <= 0.2 * counts[120:130].mean()


def test_the_pipeline_lets_the_counters_background_follow_the_frames_it_counts(crowd, fitted):
    from safecity.video.pipeline import CameraPipeline

    clip, counts, heads, _ = crowd
    counter = clone(fitted).set_params(max_iter=20).fit(clip.frames[:120], counts[:120], heads=heads[:120])
    start = counter.background_.copy()
    pipeline = CameraPipeline(clip.scene, counter=counter, count_every_s=0.0)
    for frame in clip.frames[120:124]:
        pipeline.process(frame)
    assert not np.array_equal(counter.background_, start)  # the pipeline's partial_fit, in place


# =========================================================================== bad input


@pytest.fixture
def tiny(tmp_path, crowd):
    """Twelve synthetic frames on disk with their counts and heads, in Mall's layout."""
    clip, counts, heads, _ = crowd
    frames = tmp_path / "frames"
    frames.mkdir()
    names = [f"seq_{i:06d}.jpg" for i in range(1, 13)]
    for name, frame in zip(names, clip.frames[100:112]):
        cv2.imwrite(str(frames / name), frame)
    pd.DataFrame({"frame_file": names, "count": counts[100:112]}).to_csv(tmp_path / "counts.csv", index=False)
    rows = [(name, x, y) for name, pts in zip(names, heads[100:112]) for x, y in pts]
    pd.DataFrame(rows, columns=["frame_file", "x", "y"]).to_csv(tmp_path / "heads.csv", index=False)
    return tmp_path


def _eval(root, *extra, counts="counts.csv", train="8"):
    return CliRunner().invoke(main, ["count", "eval", "--frames", str(root / "frames"),
                                     "--counts", str(root / counts), "--train", train, *extra])


def test_cli_eval_on_a_small_folder_prints_the_keys(tiny):
    result = _eval(tiny, "--heads", str(tiny / "heads.csv"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for key in ("mae", "mse", "fps", "baseline_mae", "baseline_mse", "n_train", "n_test"):
        assert key in out
    assert out["n_train"] == 8 and out["n_test"] == 4


def test_missing_column_is_named(tiny):
    pd.read_csv(tiny / "counts.csv").rename(columns={"count": "people"}).to_csv(tiny / "bad.csv", index=False)
    result = _eval(tiny, counts="bad.csv")
    assert result.exit_code != 0
    assert "bad.csv" in result.output and "missing column(s) count" in result.output


def test_a_listed_frame_missing_on_disk_names_file_and_line(tiny):
    (tiny / "frames" / "seq_000005.jpg").unlink()
    result = _eval(tiny)
    assert result.exit_code != 0
    assert "counts.csv, line 6, field frame_file: seq_000005.jpg" in result.output


def test_a_bad_count_names_the_line_and_field(tiny):
    table = pd.read_csv(tiny / "counts.csv")
    table["count"] = table["count"].astype(object)
    table.loc[2, "count"] = "many"
    table.to_csv(tiny / "bad.csv", index=False)
    result = _eval(tiny, counts="bad.csv")
    assert result.exit_code != 0
    assert "bad.csv, line 4, field count" in result.output


@pytest.mark.parametrize("train", ["12", "40"])
def test_train_must_leave_frames_to_test(tiny, train):
    result = _eval(tiny, train=train)
    assert result.exit_code != 0
    assert "counts.csv" in result.output and f"--train {train}" in result.output
    assert "12 labelled frames" in result.output


def test_heads_that_disagree_with_counts_are_named(tiny):
    heads = pd.read_csv(tiny / "heads.csv")
    heads[heads["frame_file"] != "seq_000003.jpg"].to_csv(tiny / "heads.csv", index=False)
    result = _eval(tiny, "--heads", str(tiny / "heads.csv"))
    assert result.exit_code != 0
    assert "seq_000003.jpg" in result.output and "counts.csv line 4" in result.output


def test_a_perspective_file_without_a_map_is_refused(tiny):
    from scipy.io import savemat

    savemat(tiny / "p.mat", {"something": np.ones((3, 3))})
    result = _eval(tiny, "--perspective", str(tiny / "p.mat"))
    assert result.exit_code != 0
    assert "p.mat" in result.output and "pMapN" in result.output


def test_a_perspective_of_the_wrong_size_is_refused(tiny):
    from scipy.io import savemat

    savemat(tiny / "p.mat", {"pMapN": np.ones((48, 64))})
    result = _eval(tiny, "--perspective", str(tiny / "p.mat"))
    assert result.exit_code != 0
    assert "p.mat" in result.output and "64x48" in result.output


def test_an_undecodable_frame_is_named(tiny):
    (tiny / "frames" / "seq_000002.jpg").write_bytes(b"not a jpeg")
    result = _eval(tiny)
    assert result.exit_code != 0
    assert "seq_000002.jpg" in result.output and "cannot be decoded" in result.output
