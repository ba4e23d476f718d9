"""Privacy blur: hide the people in every frame that leaves the pipeline.

A frame shown on a dashboard, written to a file or opened in a notebook must
not let anyone recognise a passer-by. ``blur_people`` smooths each person's
box (plus a margin, since detector boxes are tight and often clip a head or an
arm) so heavily that only a coloured smudge of body size is left; with
``mask=`` it also hides every foreground blob, so a person the detector missed
is hidden too. Nothing here looks for faces: the whole body region is treated
the same way.

Blur is on unless a camera's privacy settings switch it off *with a reason*;
``privacy_policy`` enforces that and writes the decision to the audit log, so
an oversight body can see who turned it off, where and why.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from safecity.data.store import os_user
from safecity.video.detect import components

#: Blurred cells along a box's height: at 8, a head (about 1/7 of a person's
#: height) falls inside one or two cells and keeps no features at all.
DEFAULT_CELLS = 8

#: Foreground blobs smaller than this (pixels) are noise, not people.
MIN_BLOB_AREA = 30

#: Blurred cells along the height of a whole frame hidden while the detectors warm up: a
#: person a quarter of the frame tall keeps about 6 cells, no more than ``blur_people`` leaves.
WHOLE_FRAME_CELLS = 24


def blur_people(image: np.ndarray, boxes=(), margin: float = 0.15, mask: np.ndarray | None = None,
                cells: int = DEFAULT_CELLS) -> np.ndarray:
    """A copy of ``image`` with every box (and every foreground blob of ``mask``) blurred.

    ``boxes``: rows of pixels ``x, y, w, h`` (top-left corner), as an array, a
    list or a DataFrame with those columns. ``margin``: fraction of the box's
    width and height added on each side. ``mask``: a foreground mask of the
    image's size (non-zero = foreground), whose blobs are hidden as well.
    ``cells``: how many blurred cells remain along a box's height (fewer is
    stronger). The input image is never modified.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"blur_people: expected an image (H x W or H x W x C), got shape {image.shape}")
    if cells < 1:
        raise ValueError(f"blur_people: cells must be at least 1, got {cells}")
    out = image.copy()
    height, width = image.shape[:2]
    regions = [_expand(b, margin, width, height) for b in _as_boxes(boxes)]
    if mask is not None:
        regions += [_expand(b, margin, width, height) for b in _blobs(mask, (height, width))]
    regions = [r for r in regions if r[2] > r[0] and r[3] > r[1]]
    for group in _merge_overlapping(regions):
        x0, y0 = min(r[0] for r in group), min(r[1] for r in group)
        x1, y1 = max(r[2] for r in group), max(r[3] for r in group)
        smudged = _smudge(image[y0:y1, x0:x1], max(2.0, min(r[4] for r in group) / cells))
        if len(group) == 1:
            out[y0:y1, x0:x1] = smudged
            continue
        inside = np.zeros((y1 - y0, x1 - x0), bool)  # only the regions, not their bounding rectangle
        for rx0, ry0, rx1, ry1, _ in group:
            inside[ry0 - y0:ry1 - y0, rx0 - x0:rx1 - x0] = True
        out[y0:y1, x0:x1][inside] = smudged[inside]
    return out


def blur_all(image: np.ndarray, cells: int = WHOLE_FRAME_CELLS) -> np.ndarray:
    """A copy of ``image`` smudged all over: what leaves before anyone in it can be located."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"blur_all: expected an image (H x W or H x W x C), got shape {image.shape}")
    return _smudge(image, max(2.0, image.shape[0] / cells))


def sharp_boxes(raw: np.ndarray, shown: np.ndarray, boxes, ratio: float = 0.5) -> np.ndarray:
    """For each box, True if ``shown`` keeps more than ``ratio`` of ``raw``'s detail inside it.

    Detail is the variance of the Laplacian of the grey image in the box; a
    box with no detail in ``raw`` (a flat area) is never counted as sharp. The
    rule the leak checks (``bench/privacy_leak.py``, the security tests) use.
    """
    raw, shown = np.asarray(raw), np.asarray(shown)
    height, width = raw.shape[:2]
    out = []
    for x, y, w, h in _as_boxes(boxes):
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
        if x1 - x0 < 3 or y1 - y0 < 3:
            out.append(False)
            continue
        before, after = (_detail(im[y0:y1, x0:x1]) for im in (raw, shown))
        out.append(before > 0 and after > ratio * before)
    return np.array(out, bool)


def _detail(region: np.ndarray) -> float:
    grey = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY) if region.ndim == 3 else region
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _as_boxes(boxes) -> np.ndarray:
    """Boxes as a float array (n, 4); a DataFrame's x, y, w, h columns are used."""
    if isinstance(boxes, pd.DataFrame):
        missing = [c for c in ("x", "y", "w", "h") if c not in boxes.columns]
        if missing:
            raise ValueError(f"blur_people: boxes table lacks column(s) {', '.join(missing)}")
        boxes = boxes[["x", "y", "w", "h"]].to_numpy(float)
    arr = np.asarray(boxes, dtype=float)
    if arr.size == 0:
        return np.empty((0, 4))
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"blur_people: boxes must be rows of x, y, w, h, got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1) | (arr[:, 2] < 0) | (arr[:, 3] < 0)
    if bad.any():
        row = int(np.nonzero(bad)[0][0])
        raise ValueError(f"blur_people: box row {row} is not a valid x, y, w, h: {arr[row].tolist()}")
    return arr


def _expand(box, margin: float, width: int, height: int) -> tuple[int, int, int, int, float]:
    """The box grown by ``margin`` on each side, clipped to the image, in integer pixels."""
    x, y, w, h = box
    dx, dy = margin * w + 2, margin * h + 2
    x0, y0 = int(max(0, np.floor(x - dx))), int(max(0, np.floor(y - dy)))
    x1, y1 = int(min(width, np.ceil(x + w + dx))), int(min(height, np.ceil(y + h + dy)))
    return x0, y0, x1, y1, float(h)


def _merge_overlapping(regions: list) -> list[list]:
    """Regions grouped so that overlapping ones share a group (each group is a list of regions).

    Blurring two overlapping regions one after the other would leave the
    second one's edge as a sharp seam across the first person; a group is
    blurred in one pass instead.
    """
    groups = [[r] for r in regions]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if any(_overlap(a, b) for a in groups[i] for b in groups[j]):
                    groups[i] += groups.pop(j)
                    merged = True
                    break
            if merged:
                break
    return groups


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _blobs(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bounding boxes of the foreground blobs of ``mask`` (small specks left out)."""
    mask = np.asarray(mask)
    if mask.shape[:2] != shape:
        raise ValueError(f"blur_people: mask shape {mask.shape[:2]} differs from the image's {shape}")
    binary = (mask.reshape(shape[0], shape[1], -1).max(axis=2) > 0).astype(np.uint8)
    # Close small gaps so one person split into pieces becomes one blob.
    binary = cv2.dilate(binary, np.ones((5, 5), np.uint8))
    n, _, stats, _ = components(binary)
    stats = stats[1:]
    return stats[stats[:, cv2.CC_STAT_AREA] >= MIN_BLOB_AREA, :4].astype(float)


def _smudge(region: np.ndarray, cell: float) -> np.ndarray:
    """``region`` reduced to cells of ``cell`` pixels, then smoothed back to full size.

    Shrinking first discards the detail for good (a plain blur of a small
    kernel can be partly undone); the smoothing afterwards removes the block
    edges a pixelation would leave, which themselves draw the eye.
    """
    h, w = region.shape[:2]
    small = cv2.resize(region, (max(1, round(w / cell)), max(1, round(h / cell))),
                       interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    k = int(cell) | 1
    return cv2.GaussianBlur(big, (k, k), 0).reshape(region.shape)


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True)
class PrivacyPolicy:
    """Whether a camera's output frames are blurred, and if not, why."""

    camera: str
    blur: bool = True
    reason: str = ""


def privacy_policy(scene: dict, audit=None, actor: str | None = None) -> PrivacyPolicy:
    """Decide blur on or off from a camera's ``scene['privacy']`` settings.

    Settings: ``{"blur": bool, "reason": str}``; blur is on when absent.
    Turning it off needs a non-empty reason and an audit sink (a
    ``Store(...).state`` or any object with ``audit(actor, action, target,
    details)``), which receives one ``disable_blur`` record: frames of people
    never leave unblurred without a trace. ``actor``: who decided (default: the
    operating-system user running this process, ``os_user()``).
    """
    camera = camera_name(scene)
    settings = scene.get("privacy") or {}
    if not isinstance(settings, dict):
        raise ValueError(f"camera '{camera}': field 'privacy' must be a mapping, got {settings!r}")
    blur = settings.get("blur", True)
    if not isinstance(blur, (bool, np.bool_)):
        raise ValueError(f"camera '{camera}': field 'privacy.blur' must be true or false, got {blur!r}")
    if blur:
        return PrivacyPolicy(camera, True, "")
    reason = str(settings.get("reason") or "").strip()
    if not reason:
        raise ValueError(f"camera '{camera}': 'privacy.blur' is false but 'privacy.reason' is empty; "
                         "turning the blur off needs a stated reason")
    if audit is None:
        raise ValueError(f"camera '{camera}': turning the blur off must be audited; pass an audit sink "
                         "(for example Store(data_dir).state)")
    audit.audit(actor or os_user(), "disable_blur", camera, {"reason": reason})
    return PrivacyPolicy(camera, False, reason)


def protect(image: np.ndarray, boxes, policy: PrivacyPolicy, mask: np.ndarray | None = None,
            warming_up: bool = False, **kwargs) -> np.ndarray:
    """The frame as it may leave the pipeline under ``policy``: blurred unless audited off.

    ``warming_up``: the boxes and the mask cannot be trusted yet (a background
    model that has seen no street, a tracker with no history: both empty at a
    start, a reconnect or a clip's loop), so the whole frame is smudged.
    """
    if policy.blur and warming_up:
        return blur_all(image)
    if policy.blur:
        return blur_people(image, boxes, mask=mask, **kwargs)
    return np.asarray(image).copy()


def camera_name(scene: dict) -> str:
    """The camera's name in a scene, for audit records and error messages."""
    for key in ("camera_id", "camera", "name", "sensor_id"):
        if scene.get(key):
            return str(scene[key])
    return "unnamed camera"
