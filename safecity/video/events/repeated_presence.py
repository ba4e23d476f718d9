"""Repeated presence (opt-in): the same anonymous person back in the same zone, again and again.

Someone crossing a square three times in a minute may be scouting it; a
tracker alone cannot say so, because each return is a new track. This
detector remembers a *coarse appearance signature* per person (colour
histograms of the upper and lower body, averaged over a track's frames), links
a new track to a remembered one when their clothes look alike, and reports a
person seen in one zone ``count`` times within ``window_s`` seconds.

A tracker's id is not a person: when two people cross, or a coasting track
catches a newcomer, one id carries two people. So a track is cut into pieces
where its colours change for a few frames, each piece is linked on its own,
and a person's remembered colours only learn from pieces that still look like
them once finished (one wrong piece must not turn a person into someone else).

Why so guarded: a signature is a weak biometric trace, so
- it is off unless a camera opts in, and opting in writes an audit record;
- nothing looks at faces: the descriptor skips the top fifth of the box and
  only counts colours, which cannot identify anyone outside this camera;
- signatures live in memory only, under random ids that mean nothing outside
  this object, and are forgotten ``ttl_s`` seconds (default 24 h) after the
  person was last seen; the detector refuses to be pickled, its ``repr`` shows
  counts only, and this module logs nothing.
Events carry track ids, zone, visits and duration: never a signature.
"""
from __future__ import annotations

import secrets

import cv2
import numpy as np
import shapely
import supervision as sv

from safecity.video.events.common import EventRule
from safecity.video.privacy import camera_name
from safecity.video.track import class_names, xywh

#: Rows of a person's box (fractions of its height) read for each body half.
#: The top fifth (the head) is left out on purpose.
UPPER_BODY, LOWER_BODY = (0.20, 0.55), (0.55, 0.95)

#: Histogram bins for hue, saturation, value: coarse enough that lighting and
#: pose barely move it, fine enough to tell a yellow jacket from a grey one.
BINS = (8, 3, 3)


def _refuse_pickling(obj, *_protocol):
    raise TypeError(f"{type(obj).__name__} holds appearance signatures, which must never leave "
                    "memory: it cannot be pickled, copied or saved")


class RepeatedPresenceRule(EventRule):
    """Event rule of one person's repeated visits to a zone of one camera (opt-in).

    Hyperparameters: ``enabled`` (off by default: ``update`` then returns
    nothing and keeps nothing), ``ttl_s`` (seconds a signature is kept after
    the person was last seen), ``count`` and ``window_s`` (visits and seconds;
    default: the scene's ``repeat_count`` and ``repeat_window_s``), ``audit``
    (a ``Store(...).state`` or any object with ``audit(actor, action, target,
    details)``; enabling writes an ``enable_repeated_presence`` record to it),
    ``actor`` (who enabled it), ``max_distance`` (Bhattacharyya distance under
    which two signatures count as one person), ``min_frames`` (frames of a
    track before it is compared), ``min_gap_s`` (a return sooner than this is
    the same visit, for example a track the tracker lost for a moment),
    ``track_gap_s`` (absence after which a track counts as gone),
    ``min_travel`` (how far, in body heights, a track must move before it
    counts as a visit: someone who comes back walks in, while a flickering
    light or a fire taken for a person stays where it is, and a person milling
    about in a crowd, whose id the tracker keeps losing, barely moves between
    losses), ``switch_distance`` and ``switch_frames`` (a track whose frames
    stay this far from its colours so far for this many frames in a row is cut:
    what follows is someone else).
    """

    kind = "repeated_presence"

    def __init__(self, scene: dict, enabled: bool = False, ttl_s: float = 86400.0,
                 count: int | None = None, window_s: float | None = None, audit=None,
                 actor: str = "system", max_distance: float = 0.25, min_frames: int = 5,
                 min_gap_s: float = 2.0, track_gap_s: float = 1.0, min_travel: float = 1.0,
                 switch_distance: float = 0.5, switch_frames: int = 3):
        self.scene = scene
        self.enabled = enabled
        self.ttl_s = ttl_s
        self.count = count
        self.window_s = window_s
        self.audit = audit
        self.actor = actor
        self.max_distance = max_distance
        self.min_frames = min_frames
        self.min_gap_s = min_gap_s
        self.track_gap_s = track_gap_s
        self.min_travel = min_travel
        self.switch_distance = switch_distance
        self.switch_frames = switch_frames
        self.camera_ = camera_name(scene)
        self.count_ = int(scene["repeat_count"] if count is None else count)
        self.window_s_ = float(scene["repeat_window_s"] if window_s is None else window_s)
        if self.count_ < 2:
            raise ValueError(f"camera '{self.camera_}': repeat count must be at least 2, got {self.count_}")
        if self.window_s_ <= 0 or ttl_s <= 0:
            raise ValueError(f"camera '{self.camera_}': repeat window and ttl must be positive "
                             f"(window_s={self.window_s_}, ttl_s={ttl_s})")
        self.zones_ = _zones(scene)
        self._tracks: dict = {}    # track id -> _Track being watched
        self._people: dict = {}    # random id -> _Person remembered
        if enabled and audit is not None:
            audit.audit(actor, "enable_repeated_presence", self.camera_,
                        {"ttl_s": float(ttl_s), "count": self.count_, "window_s": self.window_s_})

    # ------------------------------------------------------------------ public

    @classmethod
    def from_config(cls, camera, audit=None) -> RepeatedPresenceRule:
        """From the camera's ``repeated_presence`` section; ``audit`` records its enabling."""
        return cls(camera.scene(), audit=audit, **camera.repeated_presence.model_dump())

    def update(self, frame_index: int, time_s: float, image: np.ndarray, detections: sv.Detections,
               foreground: np.ndarray | None = None) -> list[dict]:
        """Watch this frame's people; return a ``repeated_presence`` event per person who just qualified."""
        if not self.enabled:
            return []
        time_s = float(time_s)
        self._close_gone(time_s)
        self.forget_expired(time_s)
        events = []
        ids, boxes = _people(detections, self.camera_)
        hidden = _overlapped(boxes)
        feet_x, feet_y = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3]
        inside = {name: shapely.contains_xy(poly, feet_x, feet_y) for name, poly in self.zones_.items()}
        for k, track_id in enumerate(ids):
            # A box overlapping another mixes two people's colours: keep it out of the signature.
            signature = None if hidden[k] else _signature(image, boxes[k], foreground)
            seen = (signature, time_s, frozenset(name for name, ok in inside.items() if ok[k]),
                    feet_x[k], feet_y[k], boxes[k, 3])
            track = self._tracks.get(track_id)
            if track is None:
                track = self._tracks[track_id] = _Track(track_id, time_s)
            if signature is not None and self._switched(track, signature):
                # The colours under this id have changed for a moment: two people crossed and the
                # tracker swapped them, or a coasting track caught a newcomer. Wait a few frames;
                # if it lasts, the piece so far was one person and what follows is another.
                track.pending.append(seen)
                track.last = time_s
                if len(track.pending) < self.switch_frames:
                    continue
                pending, track.pending = track.pending, []
                self._finish(track)
                track = self._tracks[track_id] = _Track(track_id, pending[0][1])
                for earlier in pending:
                    track.add(*earlier)
                    earlier[0].fill(0.0)  # copied into the new piece: leave no loose copy
            else:
                if signature is not None:
                    track.pending = []  # a glitch (a shadow, a passer-by brushing past): forget it
                track.add(*seen)
            if track.person is None and self._ready(track):
                self._link(track)
            if track.person is not None:
                track.person.last_seen = time_s
                event = self._check(track.person, frame_index, time_s)
                if event:
                    events.append(event)
        return events

    def forget_expired(self, now: float) -> int:
        """Erase every signature unseen for ``ttl_s`` seconds before ``now``; return how many people."""
        cutoff = float(now) - self.ttl_s
        stale = [pid for pid, p in self._people.items() if p.last_seen < cutoff]
        for pid in stale:
            self._people.pop(pid).erase()
        for tid in [t for t, tr in self._tracks.items() if tr.last < cutoff]:
            self._tracks.pop(tid).erase()
        return len(stale)

    @property
    def remembered_(self) -> int:
        """How many anonymous people are remembered now (never what they look like)."""
        return len(self._people)

    def __repr__(self) -> str:
        return (f"RepeatedPresenceRule(camera={self.camera_!r}, enabled={self.enabled}, "
                f"remembered={len(self._people)})")

    __reduce__ = __reduce_ex__ = __getstate__ = _refuse_pickling

    # ------------------------------------------------------------------ steps

    def _close_gone(self, now: float) -> None:
        """Fold tracks unseen for ``track_gap_s`` into their person, then drop them."""
        for tid in [t for t, tr in self._tracks.items() if now - tr.last > self.track_gap_s]:
            self._finish(self._tracks.pop(tid))

    def _finish(self, track: "_Track") -> None:
        """A piece of track is over: link it if it has not been, learn from it if it looks like its person."""
        if track.person is None and self._ready(track):
            self._link(track)
        if track.person is not None and track.frames:
            # Judged on the whole piece, not on the frames it was linked with: a piece that
            # turned out to look like someone else must not blur the person's colours.
            if _distance(track.mean(), track.person.signature) <= self.max_distance:
                track.person.absorb(track)
        track.erase()

    def _switched(self, track: "_Track", signature: np.ndarray) -> bool:
        """Whether this frame's colours are far from those the track has shown so far."""
        return track.frames >= self.min_frames and _distance(signature, track.mean()) > self.switch_distance

    def _ready(self, track: "_Track") -> bool:
        """Whether a track has shown enough of a person, and moved enough, to count as a visit."""
        return track.frames >= self.min_frames and track.travel >= self.min_travel * track.height

    def _link(self, track: "_Track") -> None:
        """Attach a track to the remembered person it looks like, or to a new anonymous one."""
        mean = track.mean()
        # Two tracks at once may be one person (a tracker's duplicate) or two people dressed
        # alike; either way their time together counts as one visit (``_Person.visit``).
        best, best_d = None, self.max_distance
        for person in self._people.values():
            d = _distance(mean, person.signature)
            if d < best_d:
                best, best_d = person, d
        if best is None:
            best = _Person(mean.copy(), track.first)
            self._people[secrets.token_hex(8)] = best
            best_d = 0.0
        track.person = best
        best.visit(track, best_d, self.min_gap_s)

    def _check(self, person: "_Person", frame_index: int, now: float) -> dict | None:
        """An event if the person has ``count_`` visits to one zone within the window."""
        if person.fired_at is not None and now - person.fired_at < self.window_s_:
            return None
        person.visits = [v for v in person.visits if v.end >= now - self.window_s_]  # older: irrelevant
        recent = [v for v in person.visits if v.start >= now - self.window_s_]
        qualifying = []
        for zone in frozenset().union(*(v.zones for v in recent)):
            visits = [v for v in recent if zone in v.zones]
            if len(visits) >= self.count_:
                qualifying.append((self.zones_[zone].area, zone, visits))
        if not qualifying:
            return None
        _, zone, visits = min(qualifying, key=lambda q: q[0])  # the most specific place
        person.fired_at = now
        return {
            "kind": self.kind,
            "frame": int(frame_index),
            "time_s": now,
            # How alike the returns looked to the person first seen (1 = the same colours).
            "score": round(float(np.mean([1.0 - v.distance for v in visits[1:]])), 4),
            "zone": zone,
            "track_ids": sorted({int(t) for v in visits for t in v.track_ids}),
            "duration_s": round(now - visits[0].start, 3),
            "visits": len(visits),
        }


# --------------------------------------------------------------------------- memory


class _Visit:
    """One stay of a person in the camera's view: when, where, which tracks, how alike."""

    __slots__ = ("start", "end", "zones", "track_ids", "distance")

    def __init__(self, start: float, distance: float):
        self.start, self.end, self.zones = start, start, frozenset()
        self.track_ids: set = set()
        self.distance = distance


class _Track:
    """A track being watched: its summed signature, its zones, its time span."""

    __slots__ = ("track_id", "first", "last", "frames", "_sum", "zones", "person", "visit",
                 "origin", "travel", "height", "pending")

    def __init__(self, track_id, now: float):
        self.track_id, self.first, self.last, self.frames = track_id, now, now, 0
        self._sum = None
        self.zones: frozenset = frozenset()
        self.person: _Person | None = None
        self.visit: _Visit | None = None
        self.origin, self.travel, self.height = None, 0.0, 0.0
        self.pending: list = []  # frames that look like someone else, held back a moment

    def add(self, signature: np.ndarray | None, now: float, zones: frozenset, x: float, y: float,
            height: float) -> None:
        """One more frame of the track (feet at ``x, y``); ``frames`` counts those with a signature."""
        if self.origin is None:
            self.origin = (x, y)
        self.travel = max(self.travel, float(np.hypot(x - self.origin[0], y - self.origin[1])))
        self.height = float(height)
        if signature is not None:
            self._sum = signature.copy() if self._sum is None else self._sum + signature
            self.frames += 1
        self.last = now
        self.zones |= zones
        if self.visit is not None:
            self.visit.end = max(self.visit.end, now)
            self.visit.zones |= zones

    def mean(self) -> np.ndarray:
        return self._sum / self.frames

    def erase(self) -> None:
        if self._sum is not None:
            self._sum.fill(0.0)
        self._sum = None
        for seen in self.pending:
            if seen[0] is not None:
                seen[0].fill(0.0)
        self.pending = []

    __reduce__ = __reduce_ex__ = __getstate__ = _refuse_pickling


class _Person:
    """An anonymous person: a running-mean signature and the visits it was seen on."""

    __slots__ = ("signature", "weight", "last_seen", "visits", "fired_at")

    def __init__(self, signature: np.ndarray, now: float):
        self.signature, self.weight, self.last_seen = signature, 0, now
        self.visits: list[_Visit] = []
        self.fired_at: float | None = None

    def visit(self, track: _Track, distance: float, min_gap_s: float) -> None:
        """Count the track as a new visit, or as the last one going on after a short gap."""
        last = self.visits[-1] if self.visits else None
        if last is None or track.first - last.end >= min_gap_s:
            last = _Visit(track.first, distance)
            self.visits.append(last)
        last.track_ids.add(track.track_id)
        last.end = max(last.end, track.last)
        last.zones |= track.zones
        track.visit = last

    def absorb(self, track: _Track) -> None:
        """Fold a finished track into the running-mean signature."""
        self.signature *= self.weight / (self.weight + track.frames)
        self.signature += track.mean() * (track.frames / (self.weight + track.frames))
        self.weight += track.frames
        self.last_seen = max(self.last_seen, track.last)

    def erase(self) -> None:
        self.signature.fill(0.0)
        self.visits.clear()

    __reduce__ = __reduce_ex__ = __getstate__ = _refuse_pickling


# --------------------------------------------------------------------------- signature


def _signature(image: np.ndarray, box, foreground: np.ndarray | None) -> np.ndarray | None:
    """Colour histograms of a box's upper and lower body (each summing to 1), or None.

    None when the box is too small or cut by the image border.

    Only the central 60 % of the box's width is read, and only foreground
    pixels when a mask is given (if enough of them), to keep the street out of it.
    """
    x, y, w, h = (float(v) for v in box)
    height, width = image.shape[:2]
    if x < 1 or y < 1 or x + w > width - 1 or y + h > height - 1:
        return None  # cut by the image border: its halves would not be the body's halves
    x0, x1 = int(max(0, x + 0.2 * w)), int(min(width, x + 0.8 * w))
    halves = []
    for top, bottom in (UPPER_BODY, LOWER_BODY):
        y0, y1 = int(max(0, y + top * h)), int(min(height, y + bottom * h))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        patch = image[y0:y1, x0:x1]
        mask = None
        if foreground is not None:
            mask = (np.asarray(foreground)[y0:y1, x0:x1] > 0).astype(np.uint8)
            if mask.sum() < 0.2 * mask.size:
                mask = None
        hsv = cv2.cvtColor(patch, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], mask, list(BINS), [0, 180, 0, 256, 0, 256]).ravel()
        halves.append(hist / max(float(hist.sum()), 1.0))
    return np.concatenate(halves).astype(np.float64)


def _overlapped(boxes: np.ndarray, limit: float = 0.2) -> np.ndarray:
    """For each box, whether more than ``limit`` of its area is covered by another box."""
    n = len(boxes)
    if n < 2:
        return np.zeros(n, bool)
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    iw = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    inter = iw * ih
    np.fill_diagonal(inter, 0)
    area = np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9)
    return inter.max(axis=1) > limit * area


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance (0 = same colours, 1 = none shared), averaged over both halves."""
    n = a.size // 2
    d = [np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a[s] * b[s])))))
         for s in (slice(0, n), slice(n, None))]
    return float(np.mean(d))


def _zones(scene: dict) -> dict:
    zones = scene.get("zones") or {}
    if not zones:
        w, h = scene.get("size", (10 ** 6, 10 ** 6))
        zones = {"image": [[0, 0], [w, 0], [w, h], [0, h]]}
    return {name: shapely.Polygon(points) for name, points in zones.items()}


def _people(detections: sv.Detections, camera: str) -> tuple[list, np.ndarray]:
    """Track ids and boxes (x, y, w, h) of the people among a frame's tracked detections."""
    if detections.tracker_id is None:
        raise ValueError(f"camera '{camera}': the detections carry no tracker_id (tracked detections needed)")
    keep = class_names(detections) == "person"
    return np.asarray(detections.tracker_id, int)[keep].tolist(), xywh(detections)[keep]
