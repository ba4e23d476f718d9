"""Privacy blur: people regions lose their detail, the rest of the frame is untouched, and
switching the blur off is refused without a reason and audited with one."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from safecity.data.store import Store
from safecity.sim.clips import render_clip
from safecity.video.privacy import PrivacyPolicy, blur_people, privacy_policy, protect
from conftest import shared_data

#: How much sharper a person's box must be before blurring than after.
SHARPNESS_DROP = 20


def sharpness(image: np.ndarray, box) -> float:
    """Variance of the Laplacian inside a box: high for detail, near zero for a smudge."""
    x, y, w, h = (int(round(v)) for v in box)
    x, y = max(x, 0), max(y, 0)
    gray = cv2.cvtColor(image[y:y + h, x:x + w], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def outside(shape, boxes, margin=0.15) -> np.ndarray:
    """Pixels farther from every box than the blur's margin (plus rounding)."""
    keep = np.ones(shape[:2], bool)
    for x, y, w, h in boxes:
        dx, dy = margin * w + 4, margin * h + 4
        keep[max(0, int(y - dy)):int(y + h + dy) + 1, max(0, int(x - dx)):int(x + w + dx) + 1] = False
    return keep


def assert_blurred(before, after, boxes):
    for box in boxes:
        sharp, blurred = sharpness(before, box), sharpness(after, box)
        assert sharp > SHARPNESS_DROP * blurred, f"box {box}: sharpness {sharp:.1f} -> {blurred:.1f}"
    keep = outside(before.shape, boxes)
    assert keep.mean() > 0.5
    assert np.array_equal(before[keep], after[keep]), "pixels away from people changed"


def test_people_of_a_rendered_frame_lose_their_detail_and_nothing_else_changes():
    clip = render_clip("normal", seed=3)
    per_frame = clip.tracks.groupby("frame").size()
    frame = int(per_frame.idxmax())  # the busiest frame
    image = clip.frames[frame]
    boxes = clip.tracks[clip.tracks["frame"] == frame]
    assert len(boxes) >= 2
    original = image.copy()

    out = blur_people(image, boxes)

    assert np.array_equal(image, original), "the input frame was modified in place"
    assert out.shape == image.shape and out.dtype == image.dtype
    assert_blurred(image, out, boxes[["x", "y", "w", "h"]].to_numpy(float))


def test_people_of_a_real_pets_frame_are_blurred_at_their_public_detections():
    folder = shared_data("video/pets2009_s2l1")
    detections = pd.read_csv(folder / "mot15_public_det.txt", header=None)
    cap = cv2.VideoCapture(str(folder / "vtest.avi"))
    assert cap.isOpened(), "OpenCV cannot open vtest.avi"
    frames = {}
    for index in range(1, 121):  # MOTChallenge frames are numbered from 1
        ok, image = cap.read()
        assert ok, f"vtest.avi: frame {index} could not be decoded"
        if index in (40, 120):
            frames[index] = image
    cap.release()
    for index, image in frames.items():
        rows = detections[(detections[0] == index) & (detections[6] > 0.5)]
        boxes = rows[[2, 3, 4, 5]].to_numpy(float) * 0.625  # 768x576 -> 480x360
        assert len(boxes) >= 3, f"frame {index}: too few detections to test"
        out = blur_people(image, boxes)
        assert_blurred(image, out, boxes)


def test_a_person_the_detector_missed_is_hidden_through_the_foreground_mask():
    clip = render_clip("normal", seed=1)
    subtractor = cv2.createBackgroundSubtractorMOG2(history=200, detectShadows=False)
    per_frame = clip.tracks.groupby("frame").size()
    frame = int(per_frame[per_frame.index > 60].idxmax())
    for image in clip.frames[:frame + 1]:
        foreground = subtractor.apply(image)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    image = clip.frames[frame]
    people = clip.tracks[clip.tracks["frame"] == frame][["x", "y", "w", "h"]].to_numpy(float)

    without_mask = blur_people(image, [])
    assert np.array_equal(without_mask, image)
    out = blur_people(image, [], mask=foreground)  # no boxes at all: the mask alone must do
    for box in people:
        assert sharpness(image, box) > 5 * sharpness(out, box), f"person at {box} still sharp"


def test_bad_boxes_and_masks_are_refused_with_a_clear_error():
    image = render_clip("normal", n_frames=1).frames[0]
    with pytest.raises(ValueError, match="box row 1"):
        blur_people(image, [[10, 10, 20, 40], [5, 5, -3, 10]])
    with pytest.raises(ValueError, match="x, y, w, h"):
        blur_people(image, [[1, 2, 3]])
    with pytest.raises(ValueError, match="lacks column"):
        blur_people(image, pd.DataFrame({"x": [1.0], "y": [1.0]}))
    with pytest.raises(ValueError, match="mask shape"):
        blur_people(image, [], mask=np.ones((10, 10), np.uint8))


def test_blur_is_on_by_default_and_off_only_with_a_reason_written_to_the_audit_log(tmp_path):
    store = Store(tmp_path)
    scene = {"camera_id": "cam-vieux-port", "zones": {}}
    assert privacy_policy(scene, audit=store.state).blur
    assert privacy_policy({**scene, "privacy": {"blur": True}}).blur
    assert store.read("audit_log").empty  # nothing to audit while blurring

    with pytest.raises(ValueError, match="cam-vieux-port.*reason"):
        privacy_policy({**scene, "privacy": {"blur": False}}, audit=store.state)
    with pytest.raises(ValueError, match="cam-vieux-port.*reason"):
        privacy_policy({**scene, "privacy": {"blur": False, "reason": "  "}}, audit=store.state)
    with pytest.raises(ValueError, match="audit"):
        privacy_policy({**scene, "privacy": {"blur": False, "reason": "court order 42"}})
    with pytest.raises(ValueError, match="privacy.blur"):
        privacy_policy({**scene, "privacy": {"blur": "no"}}, audit=store.state)
    assert store.read("audit_log").empty  # refused changes leave no record

    policy = privacy_policy({**scene, "privacy": {"blur": False, "reason": "court order 42"}},
                            audit=store.state, actor="analyst-7")

    assert policy == PrivacyPolicy("cam-vieux-port", blur=False, reason="court order 42")
    log = Store(tmp_path).read("audit_log")  # a fresh reader sees the committed record
    assert len(log) == 1
    record = log.iloc[0]
    assert (record["actor"], record["action"], record["target"]) == ("analyst-7", "disable_blur",
                                                                    "cam-vieux-port")
    assert "court order 42" in record["details"]


def test_protect_blurs_under_the_default_policy_and_copies_when_audited_off():
    clip = render_clip("normal", seed=3, n_frames=80)
    image = clip.frames[-1]
    boxes = clip.tracks[clip.tracks["frame"] == len(clip.frames) - 1]
    assert len(boxes)
    on = protect(image, boxes, PrivacyPolicy("cam"))
    assert np.array_equal(on, blur_people(image, boxes))
    off = protect(image, boxes, PrivacyPolicy("cam", blur=False, reason="court order"))
    assert np.array_equal(off, image) and off is not image
