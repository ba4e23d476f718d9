"""What the event rules share: the event dict, zone polygons, one frame's objects as arrays,
recent paths of tracks, and the memory of episodes already alarmed on."""
from __future__ import annotations

import math
import statistics
from collections import defaultdict, deque

import numpy as np
import shapely
import supervision as sv

from safecity.video.track import class_names

#: A standing adult's height in metres: turns a person's box height into a local scale.
PERSON_HEIGHT_M = 1.7


def event(kind: str, frame: int, time_s: float, score: float, zone: str | None,
           track_ids, duration_s: float, **evidence) -> dict:
    return {"kind": kind, "frame": int(frame), "time_s": round(float(time_s), 3),
            "score": round(float(np.clip(score, 0.0, 1.0)), 4), "zone": zone,
            "track_ids": [int(i) for i in track_ids], "duration_s": round(float(duration_s), 3),
            **evidence}


def zone_polygons(scene: dict, names=None) -> dict[str, shapely.Polygon]:
    """The scene's zone polygons (pixels), all or the ``names`` asked for; unknown names fail."""
    zones = scene.get("zones") or {}
    names = list(zones) if names is None else list(names)
    missing = [n for n in names if n not in zones]
    if missing:
        raise ValueError(f"scene has no zone {missing}; it has {sorted(zones)}")
    return {n: shapely.Polygon(zones[n]) for n in names}


class Objects:
    """One frame's tracked objects (``sv.Detections``) as the flat arrays the rules compare:
    ids, top-left corner and size, class flags, and the feet point (bottom centre)."""

    __slots__ = ("ids", "x", "y", "w", "h", "person", "object", "fx", "fy")

    def __init__(self, ids, x, y, w, h, person, obj):
        self.ids, self.x, self.y, self.w, self.h = ids, x, y, w, h
        self.person, self.object = person, obj
        self.fx, self.fy = x + w / 2, y + h  # feet: the bottom centre, where a person stands

    @classmethod
    def of(cls, detections: sv.Detections | None) -> Objects:
        """The arrays of a frame's tracked detections (``xyxy``, ``tracker_id``, class), or of
        None (no objects)."""
        if detections is None or len(detections) == 0:
            return NO_OBJECTS
        if detections.tracker_id is None:
            raise ValueError("the event rules take tracked detections: tracker_id is missing")
        # Every rule of a frame asks for the same arrays: made once, kept on the detections for
        # as long as its boxes, ids and classes are the same arrays (rules only read them).
        key = (detections.xyxy, detections.tracker_id, detections.data.get("class_name"))
        cached = getattr(detections, "_safecity_objects", None)
        if cached is not None and all(a is b for a, b in zip(cached[0], key)):
            return cached[1]
        xyxy = detections.xyxy
        kind = class_names(detections)
        found = cls(np.asarray(detections.tracker_id, np.int64), xyxy[:, 0].astype(np.float64),
                    xyxy[:, 1].astype(np.float64), (xyxy[:, 2] - xyxy[:, 0]).astype(np.float64),
                    (xyxy[:, 3] - xyxy[:, 1]).astype(np.float64), kind == "person", kind == "object")
        detections._safecity_objects = (key, found)
        return found

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, keep: np.ndarray) -> Objects:
        return Objects(self.ids[keep], self.x[keep], self.y[keep], self.w[keep], self.h[keep],
                        self.person[keep], self.object[keep])

    def people(self) -> Objects:
        return self.take(self.person)


NO_OBJECTS = Objects(np.zeros(0, np.int64), *(np.zeros(0) for _ in range(4)),
                     np.zeros(0, bool), np.zeros(0, bool))


def median(values) -> float:
    """The median of a list of Python floats: ``statistics`` sorts a few hundred of them several
    times quicker than numpy converts them to an array."""
    return statistics.median(values)


def metres_per_pixel(box_h, cls="person", pixels_per_metre: float | None = None):
    """Local scale: an upright person's box is ``PERSON_HEIGHT_M`` tall, which follows perspective.

    The scene's single ``pixels_per_metre`` is only right at one depth; the
    person's own height is right where they stand.
    """
    box_h = np.asarray(box_h, float)
    if cls == "person":
        return PERSON_HEIGHT_M / np.maximum(box_h, 1.0)
    return np.full(box_h.shape, 1.0 / float(pixels_per_metre or 40.0))


class Paths:
    """Recent feet positions of each track, to measure velocity over a window rather than per frame."""

    def __init__(self, keep_s: float):
        self.keep_s = keep_s
        self.rows = defaultdict(deque)  # track_id -> (time_s, fx, fy, box_w, box_h)
        self.first = {}                  # track_id -> its first (time_s, fx, fy, box_w, box_h)

    def add(self, time_s: float, objects: Objects) -> None:
        cutoff = time_s - self.keep_s
        for tid, fx, fy, w, h in zip(objects.ids.tolist(), objects.fx.tolist(), objects.fy.tolist(),
                                     objects.w.tolist(), objects.h.tolist()):
            q = self.rows[tid]
            q.append((time_s, fx, fy, w, h))
            if tid not in self.first:
                self.first[tid] = q[-1]
            while q[0][0] < cutoff:  # the newest position is never older than the cutoff
                q.popleft()
        for tid in [t for t, q in self.rows.items() if q and q[-1][0] < cutoff]:
            del self.rows[tid]
            self.first.pop(tid, None)

    def since(self, track_id: int, window_s: float) -> float:
        """The time of the oldest position within ``window_s`` of the newest."""
        q = self.rows[int(track_id)]
        return next(r[0] for r in q if r[0] >= q[-1][0] - window_s)

    def velocity(self, track_id: int, window_s: float):
        """(vx, vy) in metres per second over the last ``window_s``, or None if too short a history."""
        q = self.rows.get(int(track_id))
        if not q or q[-1][0] - q[0][0] < 0.5 * window_s:
            return None
        t1, x1, y1, _, _ = q[-1]
        old = next(r for r in q if r[0] >= t1 - window_s)
        dt = t1 - old[0]
        if dt <= 0:
            return None
        mpp = PERSON_HEIGHT_M / max(median([r[4] for r in q]), 1.0)
        return (x1 - old[1]) / dt * mpp, (y1 - old[2]) / dt * mpp

    def speed(self, track_id: int, window_s: float) -> float | None:
        """Metres per second over the last ``window_s``, or None if too short a history."""
        v = self.velocity(track_id, window_s)
        return None if v is None else math.hypot(*v)


class Episodes:
    """Tracks already alarmed on, so that a tracker's change of id does not raise a second alarm.

    A new alarm of the same kind joins an episode already alarmed on when
    its track stands within ``reach`` box heights of an alarmed track seen in
    the last ``gap_s`` (people loitering or walking the wrong way together
    are one situation for an operator, not one alarm each), or when its
    track was first seen there and then (a tracker that loses a person
    behind another gives them a new id a moment later).
    """

    def __init__(self, gap_s: float = 2.0, reach: float = 1.5):
        self.gap_s = gap_s
        self.reach = reach
        self.last_ = {}   # alarmed track_id -> (time_s, fx, fy, box_h)

    def see(self, time_s: float, objects: Objects) -> None:
        """Follow the alarmed tracks present in this frame."""
        if not self.last_:
            return
        for k, tid in enumerate(objects.ids.tolist()):
            if tid in self.last_:
                self.last_[tid] = (time_s, float(objects.fx[k]), float(objects.fy[k]), float(objects.h[k]))
        for tid in [t for t, v in self.last_.items() if time_s - v[0] > self.gap_s]:
            del self.last_[tid]

    def known(self, track_id) -> bool:
        return int(track_id) in self.last_

    def add(self, track_id, time_s, fx, fy, box_h, first=None) -> bool:
        """Record an alarm; False when it continues an episode already alarmed on (no new event).

        ``first``: (time_s, fx, fy) where the alarmed track was first seen
        (default: here and now).
        """
        t0, x0, y0 = first if first is not None else (time_s, fx, fy)
        new = not any(math.hypot(fx - x, fy - y) <= self.reach * max(h, box_h)
                      or (abs(t0 - t) <= self.gap_s and math.hypot(x0 - x, y0 - y) <= self.reach * max(h, box_h))
                      for t, x, y, h in self.last_.values())
        self.last_[int(track_id)] = (time_s, fx, fy, float(box_h))
        return new


class EventRule:
    """What every event rule offers: its ``kind``, an ``update`` per frame, and ``from_config``.

    ``update(frame_index, time_s, image, detections, foreground)`` takes the
    frame's tracked ``sv.Detections`` and returns one event dict per episode
    that starts. ``from_config(camera)`` builds the rule from a validated
    ``config.cameras.CameraConfig``: the camera's typed settings for this kind,
    its zones and ground scale (a rule with no setting of its own in the
    configuration takes the camera's geometry only).
    """

    kind: str = ""

    @classmethod
    def from_config(cls, camera) -> EventRule:
        return cls(camera.scene())

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        raise NotImplementedError
