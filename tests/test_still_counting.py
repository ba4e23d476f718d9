"""Still-photo crowd counting: ShanghaiTech B beats the mean, zones add up, the pipeline takes it,
bad folders are refused with the file named."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_data
from scipy.io import savemat
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from safecity.cli import main
from safecity.video import still_counting
from safecity.video.counting import CountingDataError
from safecity.video.still_counting import StillCounter, head_density, read_shanghaitech

SHANGHAITECH_B = "video/shanghaitech_b/train_data"

#: Small and quick: a test fits it on 40 photos in seconds.
QUICK = {"width": 512, "cell": 16, "max_iter": 80, "min_samples_leaf": 100, "cell_fraction": 0.3}


# =========================================================================== real data


@pytest.fixture(scope="module")
def shanghaitech():
    return read_shanghaitech(shared_data(SHANGHAITECH_B))


def test_shanghaitech_reader_gives_400_photos_with_their_head_points(shanghaitech):
    assert len(shanghaitech) == 400
    assert shanghaitech.paths[0].name == "IMG_1.jpg" and shanghaitech.paths[-1].name == "IMG_400.jpg"
    counts = shanghaitech.counts
    assert counts.min() == 12 and counts.max() == 576  # the README says 9..578 for part B as a whole
    assert shanghaitech[0].shape == (768, 1024, 3)
    points = shanghaitech.points[0]
    assert (points[:, 0] < 1024).all() and (points[:, 1] < 768).all()


def test_counter_fitted_on_40_photos_beats_the_mean_on_20_others(shanghaitech):
    out = still_counting.evaluate(shanghaitech.subset(range(40)), shanghaitech.subset(range(200, 220)),
                                  counter=StillCounter(**QUICK))
    print(json.dumps(out))
    assert out["n_images"] == 20 and out["n_train"] == 40
    assert out["mae"] < 0.8 * out["baseline_mae"]
    assert out["mae"] < 0.5 * shanghaitech.counts[200:220].mean()  # within half the mean crowd
    assert out["mse"] >= out["mae"]  # a root mean square is never below the mean absolute error
    assert out["images_per_s"] > 0


def test_cross_validation_keeps_the_held_out_fold_out_of_the_choice(shanghaitech):
    photos = shanghaitech.subset(range(24))
    grid = ({"max_iter": 20}, {"max_iter": 40})
    seen = []
    counter = StillCounter(width=256, cell=8, min_samples_leaf=50, cell_fraction=0.3)
    out = still_counting.cross_validate(photos, folds=3, grid=grid, counter=counter,
                                        progress=seen.append)
    assert [f["fold"] for f in seen] == [1, 2, 3] and out["folds"] == seen
    assert sum(f["n_test"] for f in seen) == 24
    for f in seen:
        assert f["chosen"] in grid and len(f["validation_mae"]) == 2
        assert f["chosen"] == grid[int(np.argmin(f["validation_mae"]))]
    assert out["n_images"] == 24 and out["mae"] < out["baseline_mae"]


def test_photos_of_one_scene_share_a_group(shanghaitech):
    # IMG_107, 183, 349 and 370 show the Bund's river front from the same spot.
    photos = shanghaitech.subset([106, 182, 348, 369, 0, 1, 2, 3])
    groups = still_counting.scene_groups(photos)
    assert len(set(groups[:4])) == 1 and len(set(groups)) > 2


# =========================================================================== synthetic photos


def _photo(rng, n_people: int, size=(192, 256)) -> tuple[np.ndarray, np.ndarray]:
    """A textured street with ``n_people`` dark heads on light bodies; their head points."""
    h, w = size
    image = np.full((h, w, 3), 150, np.uint8)
    image += rng.integers(0, 20, image.shape, dtype=np.uint8)
    points = np.column_stack([rng.uniform(10, w - 10, n_people), rng.uniform(10, h - 30, n_people)])
    for x, y in points:
        cv2.rectangle(image, (int(x) - 5, int(y) + 4), (int(x) + 5, int(y) + 26), (40, 90, 200), -1)
        cv2.circle(image, (int(x), int(y)), 5, (20, 20, 20), -1)
    return image, points


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(3)
    photos = [_photo(rng, int(n)) for n in rng.integers(2, 40, 24)]
    return [p for p, _ in photos], [q for _, q in photos]


@pytest.fixture(scope="module")
def fitted(synthetic):
    images, points = synthetic
    return StillCounter(width=256, cell=16, max_iter=60, min_samples_leaf=20,
                        cell_fraction=1.0).fit(images[:18], points[:18])


def test_synthetic_heads_are_counted_on_held_out_photos(synthetic, fitted):
    images, points = synthetic
    truth = np.array([len(p) for p in points[18:]])
    pred = fitted.predict(images[18:])
    mean = np.mean([len(p) for p in points[:18]])
    assert np.abs(pred - truth).mean() < 0.5 * np.abs(mean - truth).mean()


def test_zone_counts_add_up_to_the_photo_count(synthetic, fitted):
    image = synthetic[0][20]
    h, w = image.shape[:2]
    zones = {"left": [[0, 0], [w / 3, 0], [w / 3, h], [0, h]],
             "right": [[w / 3, 0], [w, 0], [w, h], [w / 3, h]]}
    per_zone = fitted.count_zones(image, zones)
    assert sum(per_zone.values()) == pytest.approx(fitted.predict([image])[0], rel=1e-6)
    assert per_zone["left"] > 0 and per_zone["right"] > 0
    with pytest.raises(ValueError, match="zone 'bad'"):
        fitted.count_zones(image, {"bad": [[0, 0], [1, 1]]})


def test_geometry_adaptive_target_sums_to_the_heads():
    rng = np.random.default_rng(0)
    points = np.vstack([rng.uniform(0, 255, (50, 2)), [[10.0, 10.0]]])
    d = head_density(points, (192, 256), 1.0, 16)
    assert d.shape == (12, 16)
    assert d.sum() == pytest.approx(51, rel=1e-5)
    assert head_density(np.zeros((0, 2)), (192, 256), 1.0, 16).sum() == 0


def test_sklearn_conventions(fitted):
    assert set(StillCounter().get_params()) >= {"width", "cell", "beta", "loss", "max_iter"}
    assert not hasattr(clone(fitted), "model_")
    with pytest.raises(NotFittedError):
        StillCounter().predict([np.zeros((64, 64, 3), np.uint8)])
    assert fitted.n_features_in_ > 10
    image = np.zeros((64, 64, 3), np.uint8)
    one, _ = StillCounter(width=64, cell=8, scales=(1,))._features(image)
    two, _ = StillCounter(width=64, cell=8, scales=(1, 2))._features(image)
    assert two.shape == (one.shape[0], 2 * one.shape[1])  # each scale adds its features to the same cells
    with pytest.raises(ValueError, match="scale 3"):
        StillCounter(width=64, cell=8, scales=(1, 3))._features(image)


def test_the_pipeline_counts_zones_with_a_still_counter(fitted):
    from safecity.sim.clips import render_clip
    from safecity.video.pipeline import CameraPipeline

    clip = render_clip("normal")
    pipeline = CameraPipeline(clip.scene, counter=fitted, count_every_s=0.0)
    frame = clip.frames[5]
    results = [pipeline.process(f) for f in clip.frames[:6]]
    expected = fitted.count_zones(frame, pipeline._zone_polys)
    assert set(results[-1].zone_counts) == set(expected)
    for zone, n in expected.items():
        assert results[-1].zone_counts[zone] == pytest.approx(n)


# =========================================================================== the command and bad input


def _folder(tmp, rng, n=8) -> str:
    (tmp / "images").mkdir(parents=True)
    (tmp / "ground-truth").mkdir()
    for i in range(1, n + 1):
        image, points = _photo(rng, int(rng.integers(2, 30)))
        cv2.imwrite(str(tmp / "images" / f"IMG_{i}.jpg"), image)
        info = np.empty((1, 1), dtype=object)
        info[0, 0] = np.array([[(points, np.array([[len(points)]]))]],
                              dtype=[("location", object), ("number", object)])
        savemat(tmp / "ground-truth" / f"GT_IMG_{i}.mat", {"image_info": info})
    return str(tmp)


def test_cli_prints_one_json_line_with_the_errors_and_the_baseline(tmp_path):
    rng = np.random.default_rng(1)
    train, test = _folder(tmp_path / "train", rng), _folder(tmp_path / "test", rng, 4)
    result = CliRunner().invoke(main, ["count", "eval-images", "--train", train, "--test", test,
                                       "--width", "256", "--max-iter", "30"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["n_images"] == 4 and out["n_train"] == 8
    assert {"mae", "mse", "images_per_s", "baseline_mae"} <= set(out)
    assert read_shanghaitech(test).counts.tolist() == [len(p) for p in read_shanghaitech(test).points]


def test_cli_cross_validation_reports_every_fold(tmp_path):
    train = _folder(tmp_path / "train", np.random.default_rng(2), 8)
    result = CliRunner().invoke(main, ["count", "eval-images", "--train", train, "--folds", "2",
                                       "--width", "256", "--max-iter", "30"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["n_images"] == 8 and len(out["folds"]) == 2
    assert "settings fixed beforehand" in out["protocol"]  # the defaults were set on a design half
    grouped = CliRunner().invoke(main, ["count", "eval-images", "--train", train, "--folds", "2", "--grouped",
                                        "--width", "256", "--max-iter", "30"])
    assert grouped.exit_code == 0, grouped.output
    out = json.loads(grouped.stdout.strip().splitlines()[-1])
    assert "grouped by scene" in out["protocol"] and sum(f["n_test"] for f in out["folds"]) == 8


def test_cli_needs_test_or_folds(tmp_path):
    train = _folder(tmp_path / "train", np.random.default_rng(2), 4)
    result = CliRunner().invoke(main, ["count", "eval-images", "--train", train])
    assert result.exit_code != 0 and "--test" in result.output


def test_a_missing_ground_truth_file_is_named(tmp_path):
    folder = _folder(tmp_path / "train", np.random.default_rng(4), 3)
    (tmp_path / "train" / "ground-truth" / "GT_IMG_2.mat").unlink()
    with pytest.raises(CountingDataError, match="GT_IMG_2.mat.*IMG_2.jpg"):
        read_shanghaitech(folder)
    result = CliRunner().invoke(main, ["count", "eval-images", "--train", folder, "--folds", "2"])
    assert result.exit_code != 0 and "GT_IMG_2.mat" in result.output


def test_an_unreadable_mat_file_is_named(tmp_path):
    folder = _folder(tmp_path / "train", np.random.default_rng(5), 3)
    (tmp_path / "train" / "ground-truth" / "GT_IMG_3.mat").write_text("not matlab")
    with pytest.raises(CountingDataError, match="GT_IMG_3.mat: not a readable"):
        read_shanghaitech(folder)


def test_a_mat_file_without_head_points_is_named(tmp_path):
    folder = _folder(tmp_path / "train", np.random.default_rng(6), 3)
    savemat(tmp_path / "train" / "ground-truth" / "GT_IMG_1.mat", {"something": np.zeros(3)})
    with pytest.raises(CountingDataError, match="GT_IMG_1.mat: no head points"):
        read_shanghaitech(folder)


def test_an_undecodable_photo_is_named(tmp_path):
    folder = _folder(tmp_path / "train", np.random.default_rng(7), 3)
    (tmp_path / "train" / "images" / "IMG_2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CountingDataError, match="IMG_2.jpg: cannot be decoded"):
        read_shanghaitech(folder)[1]


def test_a_folder_without_the_layout_is_refused(tmp_path):
    with pytest.raises(CountingDataError, match="images: no such folder"):
        read_shanghaitech(tmp_path)
