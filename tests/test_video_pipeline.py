"""The per-camera pipeline on scripted synthetic clips: detection, tracking, features, store.

Everything runs for real: the clips are rendered pixels, OpenCV models the
background, the tracker matches boxes, the store writes Parquet. Figures in
the floors below were measured with the same code (see the README section
``Video pipeline``) and sit a little under what was measured.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely

from safecity.data.schema import validate
from safecity.data.store import Store
from safecity.sim.clips import render_clip
from safecity.video.detect import BackgroundModel, OnnxFinder, PersonSize
from safecity.video.pipeline import CameraPipeline, observations_for
from safecity.video.track import TRACK_COLUMNS, iou_matrix, track_frames
from safecity.video.zones import FLOW_SECTORS


def _xyxy(df: pd.DataFrame) -> np.ndarray:
    b = df[["x", "y", "w", "h"]].to_numpy(float).copy()
    b[:, 2:] += b[:, :2]
    return b


def matches(tracks: pd.DataFrame, truth: pd.DataFrame, min_iou: float = 0.3) -> pd.DataFrame:
    """For every truth box, the id of the best-overlapping track in the same frame (NaN if IoU < min_iou)."""
    out = []
    by_frame = dict(tuple(tracks.groupby("frame")))
    for f, g in truth.groupby("frame"):
        t = by_frame.get(f)
        ids = np.full(len(g), np.nan)
        if t is not None:
            iou = iou_matrix(_xyxy(g), _xyxy(t))
            best = iou.argmax(1)
            ok = iou[np.arange(len(g)), best] >= min_iou
            ids[ok] = t["track_id"].to_numpy()[best[ok]]
        out.append(pd.DataFrame({"frame": f, "truth_id": g["track_id"].to_numpy(), "track_id": ids}))
    return pd.concat(out, ignore_index=True)


@pytest.fixture(scope="module")
def normal():
    clip = render_clip("normal")
    return clip, track_frames(clip.frames, clip.scene, clip.scene["fps"])


def test_tracks_follow_the_contract(normal):
    _, tracks = normal
    assert list(tracks.columns) == TRACK_COLUMNS
    assert set(tracks["cls"]) <= {"person", "object"}
    assert tracks["frame"].is_monotonic_increasing
    assert np.allclose(tracks["time_s"], tracks["frame"] / 10.0)
    assert not tracks.duplicated(["frame", "track_id"]).any()


def test_tracks_cover_the_people_of_a_normal_clip(normal):
    clip, tracks = normal
    m = matches(tracks, clip.tracks)
    assert m["track_id"].notna().mean() >= 0.95  # measured 0.995


def test_a_walking_person_keeps_one_id(normal):
    clip, tracks = normal
    m = matches(tracks, clip.tracks).dropna()
    for truth_id, g in m.groupby("truth_id"):
        if len(g) < 20:
            continue  # crossed a corner of the image
        main_share = g["track_id"].value_counts(normalize=True).iloc[0]
        assert main_share >= 0.9, f"person {truth_id} changed id: {g['track_id'].value_counts().to_dict()}"
    # one id per person, not one per fragment
    assert tracks["track_id"].nunique() <= clip.tracks["track_id"].nunique() + 1


def test_a_runner_against_the_flow_is_tracked():
    clip = render_clip("wrong_way")
    tracks = track_frames(clip.frames, clip.scene)
    runner = clip.truth["track_ids"].map(eval).iloc[0][0]
    m = matches(tracks, clip.tracks[clip.tracks["track_id"] == runner])
    assert m["track_id"].notna().mean() >= 0.9  # measured 0.95
    # Known weakness: at 13 px a frame it crosses a walker and two people merging in the
    # middle of the image; one id switch there (measured: 2 ids for 91 % of its frames).
    shares = m["track_id"].dropna().value_counts(normalize=True)
    assert shares.iloc[:2].sum() >= 0.85


def test_a_fallen_person_stays_a_person():
    clip = render_clip("person_on_ground")
    tracks = track_frames(clip.frames, clip.scene)
    actor = clip.truth["track_ids"].map(eval).iloc[0][0]
    fallen = clip.tracks[(clip.tracks["track_id"] == actor) & (clip.tracks["frame"] >= 100)]
    m = matches(tracks, fallen).dropna()
    # measured 0.72: a walker passing in front of them at frames 165..180 hides them
    assert len(m) >= 0.65 * len(fallen)
    rows = tracks.merge(m, on=["frame", "track_id"])
    assert (rows["cls"] == "person").mean() >= 0.9


def test_ground_speed_of_walkers(normal):
    clip, _ = normal
    pipe = CameraPipeline(clip.scene, rules=[])
    results = [pipe.process(f) for f in clip.frames]
    rows = pd.concat([r.tracks for r in results])
    moving = rows[(rows["cls"] == "person") & (rows["speed_mps"] > 0)]
    # The script walks at 1.1..1.5 m/s; the scene's single pixels_per_metre is exact only mid-image.
    assert 0.9 <= moving["speed_mps"].median() <= 1.8
    # They walk left to right: flow mostly in sector 0 (towards +x).
    east = moving["dir_x"] > np.cos(np.pi / FLOW_SECTORS)
    assert east.mean() >= 0.7


def test_dwell_time_of_a_loiterer():
    clip = render_clip("loitering")
    pipe = CameraPipeline(clip.scene, rules=[])
    longest = 0.0
    for frame in clip.frames:
        result = pipe.process(frame)
        longest = max([longest] + [s for (_, zone), s in result.dwell.items() if zone == "plaza"])
    truth = clip.truth.iloc[0]
    in_plaza_s = (truth["end_frame"] - truth["start_frame"]) / 10 + clip.scene["loitering_limit_s"]
    # measured 9.6 s of the scripted 14 s in one track's stay (the id breaks once in the plaza)
    assert clip.scene["loitering_limit_s"] <= longest <= in_plaza_s + 1


def test_observations_validate_and_land_in_the_store(tmp_path):
    clip = render_clip("normal", n_frames=120)
    store = Store(tmp_path)
    pipe = CameraPipeline(clip.scene, rules=[], camera_id="cam-7", bin_s=5.0,
                          start="2026-06-01T08:00:00Z")
    summary = pipe.run(iter(clip.frames), store=store)
    assert summary["frames"] == 120
    obs = store.read("observations")
    validate(obs, "observations")
    assert len(obs) == summary["observations"] > 0
    zones = set(clip.scene["zones"])
    assert set(obs["sensor_id"]) == {f"cam-7:{z}" for z in zones}
    metrics = set(obs["metric"])
    assert {"people_count", "occupancy", "mean_speed"} <= metrics
    assert {f"flow_dir_{k}" for k in range(FLOW_SECTORS)} <= metrics
    assert obs["ts"].min() == pd.Timestamp("2026-06-01T08:00:00Z")
    assert obs["ts"].nunique() == 3  # 12 s in 5 s bins, the last one partial
    flow = obs[obs["metric"].str.startswith("flow_dir_")].groupby(["ts", "sensor_id"])["value"].sum()
    assert np.all(np.isclose(flow, 1.0) | np.isclose(flow, 0.0))
    occ = obs[obs["metric"] == "occupancy"]["value"]
    assert occ.between(0, 1).all() and occ.max() > 0
    assert set(summary) >= {"frames", "observations", "events", "track_ids", "fps"}


def test_zone_counts_follow_a_dense_crowd():
    clip = render_clip("excessive_density")
    scene = clip.scene
    obs = observations_for(scene, clip.frames, bin_s=5.0)
    ours = obs[(obs["sensor_id"] == "excessive_density:plaza") & (obs["metric"] == "people_count")]
    plaza = shapely.Polygon(scene["zones"]["plaza"])
    people = clip.tracks[clip.tracks["cls"] == "person"]
    inside = people[shapely.contains_xy(plaza, people["x"] + people["w"] / 2, people["y"] + people["h"])]
    per_frame = inside.groupby("frame").size().reindex(range(len(clip.frames)), fill_value=0)
    truth = per_frame.groupby(per_frame.index // 50).mean().to_numpy()
    got = ours["value"].to_numpy()
    assert len(got) == len(truth) == 4
    # Empty plaza first, then full: the counts rise with the truth ...
    assert np.corrcoef(got, truth)[0, 1] >= 0.95
    assert got[0] < 3
    # ... but short of it: 26 people bunched in 150 x 130 px hide each other (measured
    # 12.3, 14.1, 14.9 against 17.3, 26.0, 24.5: 29 to 46 % under; see README).
    busy = truth > 5
    assert np.all(np.abs(got[busy] - truth[busy]) <= 0.5 * truth[busy])


def test_zone_counts_on_a_quiet_clip_are_exact_enough(normal):
    clip, _ = normal
    obs = observations_for(clip.scene, clip.frames, bin_s=5.0)
    main = obs[(obs["sensor_id"] == "normal:main") & (obs["metric"] == "people_count")]["value"].to_numpy()
    people = clip.tracks[clip.tracks["cls"] == "person"]
    zone = shapely.Polygon(clip.scene["zones"]["main"])
    inside = people[shapely.contains_xy(zone, people["x"] + people["w"] / 2, people["y"] + people["h"])]
    per_frame = inside.groupby("frame").size().reindex(range(len(clip.frames)), fill_value=0)
    truth = per_frame.groupby(per_frame.index // 50).mean().to_numpy()
    # measured: mean error 0.4 person per 5 s bin, at most 1.0 (the scene's one pixels_per_metre
    # makes near people look like more than one)
    assert np.abs(main - truth).mean() <= 0.6
    assert np.abs(main - truth).max() <= 1.3


def test_a_bad_frame_names_the_camera():
    pipe = CameraPipeline(render_clip("normal", n_frames=2).scene, rules=[], camera_id="gate-3")
    with pytest.raises(ValueError, match="gate-3"):
        pipe.process(np.zeros((10, 10), np.uint8))


def test_a_frame_of_another_size_names_camera_and_frame():
    clip = render_clip("normal", n_frames=3)
    pipe = CameraPipeline(clip.scene, rules=[], camera_id="gate-3")
    pipe.process(clip.frames[0])
    with pytest.raises(ValueError, match="gate-3.*frame 1 is 240x180.*480x360"):
        pipe.process(clip.frames[1][::2, ::2])


def test_an_unknown_camera_type_is_refused():
    with pytest.raises(TypeError, match="scene dict or a CameraConfig"):
        CameraPipeline(["not", "a", "scene"])


def test_event_detectors_run_and_their_rows_validate(tmp_path):
    events = pytest.importorskip("safecity.video.events")
    clip = render_clip("forbidden_zone")
    store = Store(tmp_path)
    pipe = CameraPipeline(clip.scene, rules=events.make_rules(clip.scene, ["forbidden_zone"]),
                          bin_s=5.0, start="2026-06-01T08:00:00Z")
    summary = pipe.run(iter(clip.frames), store=store)
    found = store.read("events")
    assert summary["events"] == len(found) >= 1
    assert set(found["kind"]) == {"forbidden_zone"}
    details = pd.json_normalize(found["details"].map(json.loads))
    assert {"track_ids", "zone"} <= set(details.columns)


def test_display_blurs_people():
    pytest.importorskip("safecity.video.privacy")
    import cv2

    clip = render_clip("normal", n_frames=60)
    pipe = CameraPipeline(clip.scene, rules=[])
    for frame in clip.frames:
        result = pipe.process(frame)
    people = result.tracks[result.tracks["cls"] == "person"]
    assert len(people)
    shown = pipe.display(frame, result, annotate=False)
    assert shown.shape == frame.shape and shown is not frame
    annotated = pipe.display(frame, result)
    assert (annotated != shown).any()  # boxes, ids and zones drawn over the blurred frame

    def sharpness(img, r):
        x0, y0, x1, y1 = int(r.x) + 2, int(r.y) + 2, int(r.x + r.w) - 2, int(r.y + r.h) - 2
        return cv2.Laplacian(cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()

    for r in people.itertuples():
        assert sharpness(shown, r) < 0.5 * sharpness(frame, r)


def test_person_size_learns_perspective():
    rng = np.random.default_rng(0)
    feet = rng.uniform(100, 350, 400)
    heights = 0.25 * feet + 10 + rng.normal(0, 2, 400)
    model = PersonSize().fit(feet, heights)
    assert model.height(300) > model.height(120)
    assert abs(model.height(200) - 60) < 8
    assert PersonSize(pixels_per_metre=40).fit([], []).height(10) == pytest.approx(68)


def _tiny_onnx(path, rows: np.ndarray, size: int = 64) -> None:
    """A real ONNX graph of YOLO-style output: fixed rows, plus 0 x the image mean so it reads its input."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
         helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
         helper.make_node("Add", ["rows", "nothing"], ["output"])],
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(rows.shape))],
        initializer=[numpy_helper.from_array(rows.astype(np.float32), "rows"),
                     numpy_helper.from_array(np.array(0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_onnx_plugin_reads_yolo_rows(tmp_path):
    path = tmp_path / "tiny.onnx"
    # cx, cy, w, h (input pixels), objectness, scores for ("person", "knife")
    rows = np.array([[[32, 32, 16, 32, 0.9, 0.95, 0.05],
                      [48, 16, 8, 8, 0.9, 0.1, 0.9],
                      [10, 10, 4, 4, 0.2, 0.5, 0.5]]])
    _tiny_onnx(path, rows)
    model = OnnxFinder(path, input_size=(64, 64), classes=("person", "knife"), confidence=0.5,
                         kind="weapons")
    image = np.zeros((128, 256, 3), np.uint8)  # letterboxed: 256 px wide -> 64, scale 1/4
    det = model.detect(image)
    assert len(det) == 2  # the weak third row is dropped
    order = np.argsort(det.data["class_name"])
    names = det.data["class_name"][order]
    assert list(names) == ["knife", "person"]
    assert det.class_id[order].tolist() == [1, 0]
    np.testing.assert_allclose(det.xyxy[order][1], [96, 64, 160, 128])  # clipped at the bottom
    np.testing.assert_allclose(det.xyxy[order][0], [176, 48, 208, 80])
    np.testing.assert_allclose(det.confidence[order], [0.81, 0.855], rtol=1e-5)


def test_onnx_plugin_errors_name_the_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.onnx"):
        OnnxFinder(tmp_path / "nowhere.onnx")
    path = tmp_path / "wrong.onnx"
    _tiny_onnx(path, np.zeros((1, 3, 9)))
    with pytest.raises(ValueError, match="wrong.onnx.*5 \\+ 1 classes"):
        OnnxFinder(path, input_size=(64, 64), classes=("person",)).detect(np.zeros((64, 64, 3), np.uint8))


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    """A clip written to disk and a one-camera installation file pointing at it."""
    from safecity.sim.clips import write_clips

    folder = tmp_path_factory.mktemp("install")
    (video,) = write_clips(folder, scenarios=["forbidden_zone"], n_frames=150)
    scene = json.loads((folder / "forbidden_zone_scene.json").read_text())
    zones = "\n".join(f"      {k}: {v}" for k, v in scene["zones"].items())
    (folder / "cameras.yml").write_text(f"""name: test-site
cameras:
  - id: street-1
    source: {video.name}
    fps: 10
    start: 2026-06-01T08:00:00Z
    size: [480, 360]
    zones:
{zones}
    forbidden_zones: [forbidden]
    pixels_per_metre: {scene["pixels_per_metre"]}
    detectors: [forbidden_zone]
""")
    return folder, video


def test_cli_video_run_writes_the_store(installation, tmp_path):
    from click.testing import CliRunner

    from safecity.cli import main

    folder, _ = installation
    result = CliRunner().invoke(main, ["video", "run", "--config", str(folder / "cameras.yml"),
                                       "--data-dir", str(tmp_path), "--bin", "5"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["camera_id"] == "street-1" and summary["frames"] == 150
    assert summary["health"]["frames_dropped"] == 0
    store = Store(tmp_path)
    obs = store.read("observations")
    assert len(obs) == summary["observations"] and obs["sensor_id"].str.startswith("street-1:").all()
    assert obs["ts"].min() == pd.Timestamp("2026-06-01T08:00:00Z")
    events = store.read("events")
    assert len(events) == summary["events"] and set(events["kind"]) <= {"forbidden_zone"}


def test_cli_video_run_names_an_unknown_camera(installation, tmp_path):
    from click.testing import CliRunner

    from safecity.cli import main

    folder, _ = installation
    result = CliRunner().invoke(main, ["video", "run", "--config", str(folder / "cameras.yml"),
                                       "--data-dir", str(tmp_path), "--camera", "nope"])
    assert result.exit_code != 0 and "nope" in result.output and "street-1" in result.output


def test_cli_video_annotate_writes_a_blurred_copy(installation, tmp_path):
    import cv2
    from click.testing import CliRunner

    from safecity.cli import main

    folder, video = installation
    out = tmp_path / "annotated.mp4"
    result = CliRunner().invoke(main, ["video", "annotate", str(video), "-o", str(out),
                                       "--config", str(folder / "cameras.yml"), "--max-frames", "60"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["blurred"] is True
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (360, 480, 3) and n == 60


def _foreground_share_outside(model, frames, box):
    """Share of foreground pixels outside ``box`` (x0, y0, x1, y1) in the last frame's mask."""
    for frame in frames:
        mask = model.apply(frame)
    x0, y0, x1, y1 = box
    outside = np.ones(mask.shape, bool)
    outside[y0:y1, x0:x1] = False
    return float((mask[outside] > 0).mean())


def test_a_near_dark_body_does_not_flood_the_background_mask():
    """A dark body filling 40 % of a near camera's view drops the frame's mean; the gain is
    measured on the background, so the rest of the view stays background (UP-Fall)."""
    rng = np.random.default_rng(0)
    street = rng.integers(90, 200, (240, 320, 3)).astype(np.uint8)
    street = np.repeat(np.repeat(street[::8, ::8], 8, 0), 8, 1)  # a coarse texture, like a floor
    still = [np.clip(street + rng.normal(0, 2, street.shape), 0, 255).astype(np.uint8) for _ in range(60)]
    body = (0, 120, 320, 240)
    with_body = []
    for frame in still[:20]:
        frame = frame.copy()
        frame[body[1]:body[3], body[0]:body[2] * 4 // 10] = 20
        with_body.append(frame)
    box = (0, 120, 320 * 4 // 10, 240)
    assert _foreground_share_outside(BackgroundModel(), still + with_body, box) < 0.02
    # measured on the whole frame (the ratio of means) the same body floods the view
    assert _foreground_share_outside(BackgroundModel(background_gain=False), still + with_body, box) > 0.3


def test_a_global_brightness_change_is_still_compensated():
    rng = np.random.default_rng(1)
    street = rng.integers(90, 200, (240, 320, 3)).astype(np.uint8)
    street = np.repeat(np.repeat(street[::8, ::8], 8, 0), 8, 1)
    frames = [np.clip(street * (1.0 if i < 60 else 1.08) + rng.normal(0, 2, street.shape), 0, 255).astype(np.uint8)
              for i in range(70)]
    model = BackgroundModel()
    for frame in frames:
        mask = model.apply(frame)
    assert (mask > 0).mean() < 0.02
    unscaled = BackgroundModel(normalise=False)
    for frame in frames:
        mask = unscaled.apply(frame)
    assert (mask > 0).mean() > 0.3  # what the gain is for
