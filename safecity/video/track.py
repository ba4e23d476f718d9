"""Tracking: stable anonymous ids for the boxes of successive frames.

``Tracker`` is what a tracker must offer the pipeline (a ``typing.Protocol``:
``update(detections, frame)`` -> the detections of this frame that belong to a
track, ``tracker_id`` set), so another tracker plugs in. ``BoxTracker``, the one
used by default, is a small ByteTrack-style multi-object tracker (Zhang et al.,
2022): each track predicts its box with a constant velocity; detections are
matched to predictions by IoU with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) in two passes, the confident
detections first, then the weak ones (a half-hidden person) against the tracks
still unmatched; a new track is tentative until seen ``min_hits`` frames in a
row, and a confirmed track that loses its detection is kept, coasting, for
``max_lost_s`` seconds (at the camera's frame rate) so that a short occlusion does not change its id.
It is ours because the maintained ByteTrack now lives in the ``trackers``
package, which requires OpenCV 5 (``opencv-python``) and would replace the
headless OpenCV 4 the rest of safecity runs on.

Ids are plain integers counted from 1 per camera and per run: anonymous, they
say "the same blob as a moment ago", nothing about who. ``track_frames`` runs
detection and tracking over a list of frames and returns the tracks table of
the package contract (``frame, time_s, track_id, x, y, w, h, cls,
confidence``); ``ground_speed`` turns a track's feet positions into metres per
second with the scene's homography or ``pixels_per_metre``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import cv2
import numpy as np
import pandas as pd
import supervision as sv
from scipy.optimize import linear_sum_assignment

from safecity.video.detect import CLASS_NAMES, OBJECT, PERSON, PeopleFinder

TRACK_COLUMNS = ["frame", "time_s", "track_id", "x", "y", "w", "h", "cls", "confidence"]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n x 4 xyxy) with every box of ``b`` (m x 4)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _assign(tracks: list, boxes: np.ndarray, min_iou: float, classes: np.ndarray | None = None,
            penalty: float = 1.0) -> tuple[list, list, list]:
    """Hungarian matching on 1 - IoU; pairs below ``min_iou`` are not matches. With ``classes``,
    a pair whose classes differ has its IoU multiplied by ``penalty``."""
    if not tracks or not len(boxes):
        return [], list(range(len(tracks))), list(range(len(boxes)))
    iou = iou_matrix(np.array([t.predicted for t in tracks]), boxes)
    if classes is not None and penalty != 1.0:
        same = np.array([t.class_id for t in tracks])[:, None] == np.asarray(classes)[None, :]
        iou = np.where(same, iou, iou * penalty)
    rows, cols = linear_sum_assignment(1 - iou)
    pairs = [(r, c) for r, c in zip(rows, cols) if iou[r, c] >= min_iou]
    used_r, used_c = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [r for r in range(len(tracks)) if r not in used_r],
            [c for c in range(len(boxes)) if c not in used_c])


def _assign_near(tracks: list, boxes: np.ndarray, max_distance: float) -> tuple[list, list, list]:
    """Hungarian matching on centre distance in track heights, among boxes of a similar size."""
    if not tracks or not len(boxes):
        return [], list(range(len(tracks))), list(range(len(boxes)))
    pred = np.array([t.predicted for t in tracks])
    pc, bc = (pred[:, :2] + pred[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2
    ph = np.maximum(pred[:, 3] - pred[:, 1], 1.0)
    dist = np.hypot(*(pc[:, None, :] - bc[None, :, :]).transpose(2, 0, 1)) / ph[:, None]
    size = (boxes[None, :, 3] - boxes[None, :, 1]) / ph[:, None]
    # The longer a track has coasted, the less its prediction is worth: the gate widens.
    dist = dist / (1 + 0.1 * np.array([t.lost for t in tracks]))[:, None]
    dist = np.where((size > 0.6) & (size < 1.6), dist, np.inf)
    cost = np.where(np.isfinite(dist), dist, 1e6)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(r, c) for r, c in zip(rows, cols) if dist[r, c] <= max_distance]
    used_r, used_c = {r for r, _ in pairs}, {c for _, c in pairs}
    return (pairs, [r for r in range(len(tracks)) if r not in used_r],
            [c for c in range(len(boxes)) if c not in used_c])


class _Track:
    """One object's state: its box, its velocity (pixels per frame), its history."""

    def __init__(self, box: np.ndarray, confidence: float, class_id: int, frame: int):
        self.box = np.asarray(box, float)
        self.velocity = np.zeros(4)
        self.predicted = self.box.copy()
        self.confidence = float(confidence)
        self.hits = 1
        self.person_hits = int(class_id == PERSON)
        self.lost = 0
        self.last_frame = frame
        self.track_id = 0  # given on confirmation
        self.feet: list[tuple[int, float, float]] = []

    def predict(self) -> None:
        self.predicted = self.box + self.velocity * (self.lost + 1)

    def update(self, box, confidence, class_id, frame, smoothing: float) -> None:
        box = np.asarray(box, float)
        gap = max(1, frame - self.last_frame)
        step = (box - self.box) / gap
        self.velocity = smoothing * self.velocity + (1 - smoothing) * step
        self.box = box
        self.confidence = float(confidence)
        self.hits += 1
        self.person_hits += int(class_id == PERSON)
        self.lost = 0
        self.last_frame = frame

    @property
    def class_id(self) -> int:
        # Sticky: a person who falls (a short, wide blob) or is half hidden stays a person.
        return PERSON if self.person_hits >= min(3, self.hits) else OBJECT


class Tracker(Protocol):
    """What the pipeline asks of a tracker: stable ids for the boxes of successive frames."""

    def update(self, detections: sv.Detections, frame: int) -> sv.Detections:
        """The tracked detections of ``frame`` (``xyxy``, ``class_id``, ``confidence`` and
        ``tracker_id``); detections not (yet) in a track are left out."""
        ...


class BoxTracker:
    """ByteTrack-style tracker: ``update(detections, frame)`` -> confirmed tracks of this frame.

    Detections at or above ``high`` confidence are matched first (IoU >=
    ``match_iou``); the rest, down to ``low``, are matched to the confirmed
    tracks left over (IoU >= ``low_match_iou``); confirmed tracks still unmatched
    take a confident detection of similar height whose centre lies within
    ``max_distance`` track heights of their prediction. Unmatched confident detections
    start tentative tracks (``new_track`` or more), confirmed after
    ``min_hits`` frames. ``smoothing`` weighs the old velocity against the
    newest step. ``class_penalty`` scales the IoU of a person track with an
    object box (and the reverse): when an owner walks away from the bag they
    set down, the blob splits and the person's id follows the person; a
    fallen person (a short, wide box) still keeps theirs when nothing else is there.
    A confirmed track unmatched for ``max_lost_s`` seconds (``fps``: the camera's frame
    rate, set by the pipeline with ``use_fps``) is dropped.
    """

    def __init__(self, high: float = 0.6, low: float = 0.1, new_track: float = 0.6,
                 match_iou: float = 0.2, low_match_iou: float = 0.4, min_hits: int = 3,
                 max_lost_s: float = 3.0, smoothing: float = 0.7, max_distance: float = 0.8,
                 class_penalty: float = 0.8, fps: float = 10.0):
        self.high = high
        self.low = low
        self.new_track = new_track
        self.match_iou = match_iou
        self.low_match_iou = low_match_iou
        self.min_hits = min_hits
        self.max_lost_s = max_lost_s
        self.fps = fps
        self.smoothing = smoothing
        self.max_distance = max_distance
        self.class_penalty = class_penalty
        self.tracks_: list[_Track] = []
        self.next_id_ = 1

    @property
    def max_lost(self) -> int:
        """Frames a confirmed track may coast unmatched: ``max_lost_s`` at the frame rate."""
        return max(1, round(self.max_lost_s * self.fps))

    def use_fps(self, fps: float) -> None:
        """The camera's frame rate (how long a lost track coasts is a duration)."""
        self.fps = float(fps)

    def update(self, detections: sv.Detections, frame: int) -> sv.Detections:
        for t in self.tracks_:
            t.predict()
        conf = detections.confidence if detections.confidence is not None else np.ones(len(detections))
        cls = detections.class_id if detections.class_id is not None else np.zeros(len(detections), int)
        boxes = detections.xyxy.astype(float)
        high = np.nonzero(conf >= self.high)[0]
        low = np.nonzero((conf < self.high) & (conf >= self.low))[0]
        confirmed = [t for t in self.tracks_ if t.track_id]
        tentative = [t for t in self.tracks_ if not t.track_id]
        matched: dict[int, _Track] = {}  # detection index -> track

        pairs, rest_t, rest_d = _assign(confirmed, boxes[high], self.match_iou, cls[high], self.class_penalty)
        for r, c in pairs:
            matched[high[c]] = confirmed[r]
        left = [confirmed[r] for r in rest_t if confirmed[r].lost == 0]
        pairs, _, _ = _assign(left, boxes[low], self.low_match_iou, cls[low], self.class_penalty)
        for r, c in pairs:
            matched[low[c]] = left[r]
        unmatched_high = high[rest_d]
        # Third pass: a confirmed track whose box no longer overlaps its prediction (it crossed
        # someone, or coasted) takes a nearby detection of a similar size before a new id is made.
        taken = {id(t) for t in matched.values()}
        orphans = [t for t in confirmed if id(t) not in taken]
        pairs, _, rest_far = _assign_near(orphans, boxes[unmatched_high], self.max_distance)
        for r, c in pairs:
            matched[unmatched_high[c]] = orphans[r]
        unmatched_high = unmatched_high[rest_far]
        pairs, _, rest_new = _assign(tentative, boxes[unmatched_high], self.match_iou)
        for r, c in pairs:
            matched[unmatched_high[c]] = tentative[r]

        for d, t in matched.items():
            t.update(boxes[d], conf[d], cls[d], frame, self.smoothing)
            if not t.track_id and t.hits >= self.min_hits:
                t.track_id, self.next_id_ = self.next_id_, self.next_id_ + 1
        seen = {id(t) for t in matched.values()}
        survivors = []
        for t in self.tracks_:
            if id(t) in seen:
                survivors.append(t)
            elif t.track_id:  # confirmed: coast for a while
                t.lost += 1
                t.velocity *= 0.9
                if t.lost <= self.max_lost:
                    survivors.append(t)
        self.tracks_ = survivors
        for d in unmatched_high[rest_new]:
            if conf[d] >= self.new_track:
                self.tracks_.append(_Track(boxes[d], conf[d], cls[d], frame))

        out = [(d, t) for d, t in matched.items() if t.track_id]
        if not out:
            return sv.Detections(xyxy=np.empty((0, 4), np.float32), confidence=np.empty(0, np.float32),
                                 class_id=np.empty(0, int), tracker_id=np.empty(0, int))
        idx = np.array([d for d, _ in out])
        return sv.Detections(xyxy=boxes[idx].astype(np.float32), confidence=conf[idx].astype(np.float32),
                             class_id=np.array([t.class_id for _, t in out]),
                             tracker_id=np.array([t.track_id for _, t in out]))


def class_names(detections: sv.Detections) -> np.ndarray:
    """The class of each detection as text: ``data['class_name']`` when the detections carry
    it, else the name of their ``class_id`` (``CLASS_NAMES``)."""
    names = detections.data.get("class_name")
    if names is not None:
        return np.asarray(names, object)
    return np.array([CLASS_NAMES[c] for c in detections.class_id], object)


def from_table(rows: pd.DataFrame) -> sv.Detections:
    """Rows of the tracks table (one frame's) as tracked detections: to replay recorded
    tracks, or the simulator's boxes, through the stages that take detections."""
    missing = [c for c in ("track_id", "x", "y", "w", "h") if c not in rows.columns]
    if missing:
        raise ValueError(f"tracks table lacks column(s) {', '.join(missing)} (the tracks contract: "
                         f"{', '.join(TRACK_COLUMNS)})")
    x, y, w, h = (rows[c].to_numpy(np.float64) for c in "xywh")
    names = rows["cls"].to_numpy(object) if "cls" in rows.columns else np.full(len(rows), "person", object)
    conf = rows["confidence"].to_numpy(np.float32) if "confidence" in rows.columns else np.ones(len(rows), np.float32)
    return sv.Detections(xyxy=np.c_[x, y, x + w, y + h].reshape(-1, 4), confidence=conf,
                         class_id=np.array([CLASS_NAMES.index(n) if n in CLASS_NAMES else -1 for n in names], int),
                         tracker_id=rows["track_id"].to_numpy(np.int64),
                         data={"class_name": names})


def xywh(detections: sv.Detections) -> np.ndarray:
    """The boxes as ``x, y, w, h`` rows (top-left corner and size, float), for the tables and
    the blur that take that shape; the width is computed in the boxes' own precision."""
    xyxy = detections.xyxy
    return np.column_stack([xyxy[:, 0].astype(float), xyxy[:, 1].astype(float),
                            (xyxy[:, 2] - xyxy[:, 0]).astype(float),
                            (xyxy[:, 3] - xyxy[:, 1]).astype(float)]).reshape(-1, 4)


def to_table(tracked: sv.Detections, frame: int, time_s: float) -> pd.DataFrame:
    """One frame's tracked detections as rows of the tracks table."""
    xyxy = tracked.xyxy
    return pd.DataFrame({
        "frame": np.full(len(tracked), frame, int),
        "time_s": np.full(len(tracked), float(time_s)),
        "track_id": np.asarray(tracked.tracker_id, int),
        "x": xyxy[:, 0].astype(float), "y": xyxy[:, 1].astype(float),
        "w": (xyxy[:, 2] - xyxy[:, 0]).astype(float), "h": (xyxy[:, 3] - xyxy[:, 1]).astype(float),
        "cls": list(class_names(tracked)),
        "confidence": np.asarray(tracked.confidence, float),
    }, columns=TRACK_COLUMNS)


def track_frames(frames: Iterable[np.ndarray], scene: dict | None = None, fps: float | None = None,
                 finder: PeopleFinder | None = None, tracker: Tracker | None = None) -> pd.DataFrame:
    """Detect and track every frame; the tracks table (``TRACK_COLUMNS``), frames counted from 0."""
    scene = scene or {}
    fps = float(fps or scene.get("fps") or 10.0)
    finder = finder or PeopleFinder({**scene, "fps": fps})
    tracker = tracker or BoxTracker(fps=fps)
    parts = []
    for f, image in enumerate(frames):
        det, _ = finder.detect(image)
        tracked = tracker.update(det, f)
        if len(tracked):
            parts.append(to_table(tracked, f, f / fps))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            TRACK_COLUMNS, [int, float, int, float, float, float, float, object, float])})
    return pd.concat(parts, ignore_index=True)


def covered_share(tracks: pd.DataFrame, reference: pd.DataFrame, min_iou: float = 0.3) -> float:
    """Share of ``reference`` boxes (``frame, x, y, w, h``) overlapped at IoU >= ``min_iou`` by a
    track of the same frame: how an evaluation against labelled or public detections reads."""
    if not len(reference):
        return float("nan")
    hits = 0
    by_frame = dict(tuple(tracks.groupby("frame"))) if len(tracks) else {}
    for f, g in reference.groupby("frame"):
        t = by_frame.get(f)
        if t is None:
            continue
        a = g[["x", "y", "w", "h"]].to_numpy(float).copy()
        b = t[["x", "y", "w", "h"]].to_numpy(float).copy()
        a[:, 2:] += a[:, :2]
        b[:, 2:] += b[:, :2]
        hits += int((iou_matrix(a, b).max(1) >= min_iou).sum())
    return hits / len(reference)


# =========================================================================== ground motion


def ground_points(points: np.ndarray, scene: dict) -> np.ndarray:
    """Image points (n x 2 pixels) to ground metres: the scene's homography, else ``pixels_per_metre``."""
    pts = np.asarray(points, float).reshape(-1, 2)
    hom = scene.get("homography") or scene.get("image_to_ground")
    if hom is not None:
        return cv2.perspectiveTransform(pts[None].astype(np.float64), np.asarray(hom, float))[0]
    ppm = scene.get("pixels_per_metre")
    if not ppm:
        raise ValueError("scene has neither 'homography' nor 'pixels_per_metre': ground speed is unknown")
    return pts / float(ppm)


def ground_speed(tracks: pd.DataFrame, scene: dict, window_s: float = 1.0) -> pd.Series:
    """Speed in m/s of every row: feet (box bottom centre) displacement over the last ``window_s``.

    Measured over about a second rather than frame to frame, because a blob's
    box jitters by a pixel or two and that jitter is a large share of a
    walker's step at 10 fps.
    """
    if tracks.empty:
        return pd.Series(dtype=float)
    t = tracks.sort_values(["track_id", "frame"])
    feet = ground_points(np.c_[t["x"] + t["w"] / 2, t["y"] + t["h"]], scene)
    speeds = np.zeros(len(t))
    ids, times = t["track_id"].to_numpy(), t["time_s"].to_numpy()
    starts = np.r_[0, np.nonzero(np.diff(ids))[0] + 1, len(t)]
    for a, b in zip(starts, starts[1:]):
        tt = times[a:b]
        j = np.searchsorted(tt, tt - window_s)  # the first row within the window
        dt = tt - tt[j]
        dist = np.hypot(*(feet[a:b] - feet[a:b][j]).T)
        speeds[a:b] = np.where(dt > 0, dist / np.where(dt > 0, dt, 1), 0.0)
    return pd.Series(speeds, index=t.index).reindex(tracks.index)
