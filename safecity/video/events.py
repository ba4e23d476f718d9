"""Event detectors: the situations the law lets a camera flag, found in tracks and pixels.

One small class per kind (loitering, forbidden_zone, wrong_way,
person_on_ground, abandoned_object, excessive_density, crowd_movement, fire),
each fed frame by frame through the same method::

    found = detector.update(frame_index, time_s, image, tracks, foreground)

where ``tracks`` holds the objects tracked in this frame (the package contract:
``frame, time_s, track_id, x, y, w, h, cls, confidence``). A detector returns
one dict per *episode*, when the situation starts to hold (a person who has
loitered for ten minutes is one alarm, not six thousand), with ``kind, frame,
time_s, score, zone, track_ids, duration_s`` and evidence fields. Settings
default from the camera's ``scene`` (``safecity.sim.clips.scene_for``
has the shape); every one is a plain ``__init__`` argument so a notebook can
tune them. ``to_event_rows`` turns what was found into ``events`` rows;
``evaluate_clips`` measures precision and recall on the scripted clips.

Weapons are only a plug-in point (``WeaponDetector``): no model ships.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict, deque
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import shapely

from safecity.config.event_kinds import CAMERA_KINDS, DEFAULT_CAMERA_KINDS

#: The kinds ``make_detectors`` builds by default (repeated presence is opt-in, weapons need a user's model).
KINDS = DEFAULT_CAMERA_KINDS

#: A standing adult's height in metres: turns a person's box height into a local scale.
PERSON_HEIGHT_M = 1.7

SOURCE = "video"


# =========================================================================== helpers


def _event(kind: str, frame: int, time_s: float, score: float, zone: str | None,
           track_ids, duration_s: float, **evidence) -> dict:
    return {"kind": kind, "frame": int(frame), "time_s": round(float(time_s), 3),
            "score": round(float(np.clip(score, 0.0, 1.0)), 4), "zone": zone,
            "track_ids": [int(i) for i in track_ids], "duration_s": round(float(duration_s), 3),
            **evidence}


def _zones(scene: dict, names=None) -> dict[str, shapely.Polygon]:
    """The scene's zone polygons (pixels), all or the ``names`` asked for; unknown names fail."""
    zones = scene.get("zones") or {}
    names = list(zones) if names is None else list(names)
    missing = [n for n in names if n not in zones]
    if missing:
        raise ValueError(f"scene has no zone {missing}; it has {sorted(zones)}")
    return {n: shapely.Polygon(zones[n]) for n in names}


class _Objects:
    """One frame's tracked objects as numpy arrays, converted once and shared by every detector.

    The pipeline hands each detector the same tracks DataFrame. Reading a
    pandas column or comparing one costs tens of microseconds, which, per
    detector and per frame, was most of the detectors' time at 200 frames
    per second; numpy arrays of ten boxes cost next to nothing.
    """

    __slots__ = ("ids", "x", "y", "w", "h", "person", "object", "fx", "fy")

    def __init__(self, ids, x, y, w, h, person, obj):
        self.ids, self.x, self.y, self.w, self.h = ids, x, y, w, h
        self.person, self.object = person, obj
        self.fx, self.fy = x + w / 2, y + h  # feet: the bottom centre, where a person stands

    @classmethod
    def of(cls, tracks) -> _Objects:
        """The arrays of a tracks table (the package contract), of None (no objects) or of itself."""
        global _LAST
        if isinstance(tracks, _Objects):
            return tracks
        if tracks is None or len(tracks) == 0:
            return _NONE
        last = _LAST
        if last[0] is tracks:  # the same frame's table, already converted for another detector
            return last[1]
        missing = [c for c in ("track_id", "x", "y", "w", "h", "cls") if c not in tracks]
        if missing:
            raise ValueError(f"tracks lack the columns {missing} (the tracks contract: "
                             f"frame, time_s, track_id, x, y, w, h, cls, confidence)")
        kind = tracks["cls"].to_numpy(object)
        out = cls(tracks["track_id"].to_numpy(np.int64), *(tracks[c].to_numpy(np.float64) for c in "xywh"),
                  kind == "person", kind == "object")
        _LAST = (tracks, out)
        return out

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, keep: np.ndarray) -> _Objects:
        return _Objects(self.ids[keep], self.x[keep], self.y[keep], self.w[keep], self.h[keep],
                        self.person[keep], self.object[keep])

    def people(self) -> _Objects:
        return self.take(self.person)


_NONE = _Objects(np.zeros(0, np.int64), *(np.zeros(0) for _ in range(4)),
                 np.zeros(0, bool), np.zeros(0, bool))
_LAST = (None, _NONE)  # the tracks table last converted, and its arrays (swapped as one tuple)


def _median(values) -> float:
    """The median of a list of Python floats: ``statistics`` sorts a few hundred of them several
    times quicker than numpy converts them to an array."""
    return statistics.median(values)


def _metres_per_pixel(box_h, cls="person", pixels_per_metre: float | None = None):
    """Local scale: an upright person's box is ``PERSON_HEIGHT_M`` tall, which follows perspective.

    The scene's single ``pixels_per_metre`` is only right at one depth; the
    person's own height is right where they stand.
    """
    box_h = np.asarray(box_h, float)
    if cls == "person":
        return PERSON_HEIGHT_M / np.maximum(box_h, 1.0)
    return np.full(box_h.shape, 1.0 / float(pixels_per_metre or 40.0))


class _Paths:
    """Recent feet positions of each track, to measure velocity over a window rather than per frame."""

    def __init__(self, keep_s: float):
        self.keep_s = keep_s
        self.rows = defaultdict(deque)  # track_id -> (time_s, fx, fy, box_w, box_h)
        self.first = {}                  # track_id -> its first (time_s, fx, fy, box_w, box_h)

    def add(self, time_s: float, objects: _Objects) -> None:
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
        mpp = PERSON_HEIGHT_M / max(_median([r[4] for r in q]), 1.0)
        return (x1 - old[1]) / dt * mpp, (y1 - old[2]) / dt * mpp

    def speed(self, track_id: int, window_s: float) -> float | None:
        """Metres per second over the last ``window_s``, or None if too short a history."""
        v = self.velocity(track_id, window_s)
        return None if v is None else math.hypot(*v)


class _Episodes:
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

    def see(self, time_s: float, objects: _Objects) -> None:
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


# =========================================================================== loitering


class LoiteringDetector:
    """A person staying in a zone longer than its limit without passing through.

    Zones may nest (a plaza inside the street): a person is judged in the
    smallest zone they stand in, so someone lingering in the plaza is
    reported there, once, and not first as "in view of the camera too long".

    Dwell is the time a track has been in the zone (gaps up to ``max_gap_s``
    forgiven, since a tracker loses a person for a few frames); passing
    through is told apart by the net distance travelled over the last
    ``limit_s``: someone walking across a large zone covers more than
    ``max_travel_m`` in that time, someone lingering does not.

    A tracker often gives a person a new id after someone walks in front of
    them, which would restart the clock. A new track that appears within
    ``handover_s`` and ``reach`` person heights of where a track was lost
    takes over its dwell and path (``track_ids`` then lists both).
    """

    kind = "loitering"

    def __init__(self, scene: dict, limit_s: float | None = None, zones=None,
                 max_travel_m: float = 4.0, max_gap_s: float = 1.0, handover_s: float = 1.5,
                 reach: float = 1.0):
        self.scene = scene
        self.limit_s = float(limit_s if limit_s is not None else scene.get("loitering_limit_s", 60.0))
        self.zones = zones
        self.max_travel_m = max_travel_m
        self.max_gap_s = max_gap_s
        self.handover_s = handover_s
        self.reach = reach
        self.aliases_ = {}  # track_id -> earlier ids of the same person
        forbidden = set(scene.get("forbidden_zones") or [])
        names = zones if zones is not None else [z for z in scene.get("zones", {}) if z not in forbidden]
        # smallest zone first: a person loitering in the plaza is reported there, once
        self.polygons_ = dict(sorted(_zones(scene, names).items(), key=lambda kv: kv[1].area))
        self.stays_ = {}   # (track_id, zone) -> [first_s, last_s]
        self.fired_ = set()
        self.episodes_ = _Episodes()
        self.paths_ = _Paths(keep_s=self.limit_s + 1.0)

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        if not self.polygons_:
            return []
        objects = _Objects.of(tracks)
        people = objects.take(objects.person & (objects.h > objects.w))  # lying down: PersonOnGround's
        self._hand_over(time_s, people)
        self.paths_.add(time_s, people)
        self.episodes_.see(time_s, people)
        where = {}  # track -> the smallest zone it is in: the one its loitering is judged in
        for zone, poly in self.polygons_.items():
            if not len(people):
                break
            for tid in people.ids[shapely.contains_xy(poly, people.fx, people.fy)].tolist():
                stay = self.stays_.get((tid, zone))
                if stay is None or time_s - stay[1] > self.max_gap_s:
                    stay = self.stays_[(tid, zone)] = [time_s, time_s]
                stay[1] = time_s
                where.setdefault(tid, zone)
        found = []
        for tid, zone in where.items():
            dwell = time_s - self.stays_[(tid, zone)][0]
            if tid in self.fired_ or dwell < self.limit_s:
                continue
            travel = self._travel(tid)
            if travel is not None and travel <= self.max_travel_m:
                self.fired_.add(tid)
                q = self.paths_.rows[tid][-1]
                if not self.episodes_.add(tid, time_s, q[1], q[2], q[4], self.paths_.first[tid][:3]):
                    continue
                found.append(_event(self.kind, frame_index, time_s,
                                    min(1.0, dwell / (2 * self.limit_s)) + 0.5, zone,
                                    [tid, *self.aliases_.get(tid, [])], dwell, limit_s=self.limit_s,
                                    travel_m=round(travel, 2)))
        return found

    def _hand_over(self, time_s, people) -> None:
        """New ids that continue a track lost a moment ago, at the same spot, inherit its state."""
        ids = people.ids.tolist()
        here = set(ids)
        lost = {t: q[-1] for t, q in self.paths_.rows.items()
                if t not in here and q and 0 < time_s - q[-1][0] <= self.handover_s}
        for tid, fx, fy, h in zip(ids, people.fx.tolist(), people.fy.tolist(), people.h.tolist()):
            if tid in self.paths_.rows or not lost:
                continue
            old, (_, x, y, _, oh) = min(lost.items(), key=lambda kv: math.hypot(fx - kv[1][1], fy - kv[1][2]))
            if math.hypot(fx - x, fy - y) > self.reach * max(h, oh):
                continue
            del lost[old]
            self.paths_.rows[tid] = deque(self.paths_.rows[old])
            self.paths_.first[tid] = self.paths_.first.get(old, self.paths_.rows[old][0])
            for (t, zone), stay in list(self.stays_.items()):
                if t == old:
                    self.stays_[(tid, zone)] = list(stay)
            if old in self.fired_:
                self.fired_.add(tid)
            self.aliases_[tid] = [old, *self.aliases_.get(old, [])]
        for tid in [t for t in self.aliases_ if t not in self.paths_.rows and t not in here]:
            del self.aliases_[tid]  # forget people long gone: a camera runs for months
        for key in [k for k, v in self.stays_.items() if time_s - v[1] > self.limit_s + self.max_gap_s]:
            del self.stays_[key]

    def _travel(self, track_id) -> float | None:
        q = self.paths_.rows.get(int(track_id))
        if not q:
            return None
        t1, x1, y1, _, _ = q[-1]
        old = next(r for r in q if r[0] >= t1 - self.limit_s)
        mpp = PERSON_HEIGHT_M / max(_median([r[4] for r in q]), 1.0)
        return float(math.hypot(x1 - old[1], y1 - old[2]) * mpp)


# =========================================================================== forbidden zone


class ForbiddenZoneDetector:
    """A person inside a forbidden zone for ``min_inside_s`` (and, by default, stopping there).

    With ``require_stop=False`` any entry of ``min_inside_s`` is flagged. The
    default asks for the person to stand still (below ``still_m_s`` over
    ``min_inside_s``) at some moment inside, so that someone cutting across
    the edge of a hatched area is not an alarm; set it to False where any
    entry matters (a track bed, a roof). Only upright boxes count: the
    bottom centre of a body lying down is not where its feet are (and a
    person on the ground is ``PersonOnGroundDetector``'s).
    """

    kind = "forbidden_zone"

    def __init__(self, scene: dict, zones=None, min_inside_s: float = 1.0, require_stop: bool = True,
                 still_m_s: float = 0.4, max_gap_s: float = 1.0):
        self.scene = scene
        self.zones = zones
        self.min_inside_s = min_inside_s
        self.require_stop = require_stop
        self.still_m_s = still_m_s
        self.max_gap_s = max_gap_s
        names = zones if zones is not None else list(scene.get("forbidden_zones") or [])
        self.polygons_ = _zones(scene, names)
        self.stays_ = {}
        self.paths_ = _Paths(keep_s=max(2.0, 2 * min_inside_s))
        self.episodes_ = _Episodes()

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        if not self.polygons_:
            return []
        objects = _Objects.of(tracks)
        people = objects.take(objects.person & (objects.h >= objects.w))  # lying down: no feet point
        self.paths_.add(time_s, people)
        self.episodes_.see(time_s, people)
        found = []
        for zone, poly in self.polygons_.items():
            if not len(people):
                break
            for tid in people.ids[shapely.contains_xy(poly, people.fx, people.fy)].tolist():
                key = (tid, zone)
                stay = self.stays_.get(key)
                if stay is None or time_s - stay[1] > self.max_gap_s:
                    stay = self.stays_[key] = [time_s, time_s, False]
                stay[1] = time_s
                inside_s = time_s - stay[0]
                if stay[2] or inside_s < self.min_inside_s:
                    continue
                speed = None
                if self.require_stop:
                    speed = self.paths_.speed(tid, self.min_inside_s)
                    if speed is None or speed > self.still_m_s:
                        continue
                stay[2] = True
                q = self.paths_.rows[tid][-1]
                if not self.episodes_.add(tid, time_s, q[1], q[2], q[4], self.paths_.first[tid][:3]):
                    continue
                found.append(_event(self.kind, frame_index, time_s, 1.0, zone, [tid], inside_s,
                                    entered_s=round(stay[0], 3),
                                    speed_m_s=None if speed is None else round(speed, 3)))
        return found


# =========================================================================== wrong way


class WrongWayDetector:
    """Sustained movement against the expected flow of a corridor.

    A track goes the wrong way when its velocity over ``window_s`` points
    against its zone's flow (``flows``: zone -> direction, default the
    scene's ``flows`` or ``flow_direction``; cosine below ``max_cosine``) at walking pace
    or more; the alarm needs ``min_duration_s`` of it in a row and
    ``min_distance_m`` covered, so a step back or a turn is not flagged.
    """

    kind = "wrong_way"

    def __init__(self, scene: dict, flows: dict | None = None, min_speed_m_s: float = 0.6,
                 max_cosine: float = -0.7, window_s: float = 1.0, min_duration_s: float = 1.0,
                 min_distance_m: float = 2.5):
        self.scene = scene
        self.flows = flows
        self.min_speed_m_s = min_speed_m_s
        self.max_cosine = max_cosine
        self.window_s = window_s
        self.min_duration_s = min_duration_s
        self.min_distance_m = min_distance_m
        if flows is None:  # a camera's YAML gives one flow per corridor; a scripted scene one for all
            flows = scene.get("flows") or ({scene.get("flow_zone"): scene["flow_direction"]}
                                           if scene.get("flow_direction") is not None else {})
        self.flows_ = {}
        for zone, vec in flows.items():
            vec = np.asarray(vec, float)
            if vec.shape != (2,) or not np.isfinite(vec).all() or np.hypot(*vec) == 0:
                raise ValueError(f"flow of zone {zone!r} must be a non-zero 2-vector, got {vec.tolist()}")
            self.flows_[zone] = tuple((vec / np.hypot(*vec)).tolist())
        self.polygons_ = _zones(scene, [z for z in self.flows_ if z is not None])
        self.runs_ = {}   # track_id -> [start_s, distance_m, last_s, fired]
        self.paths_ = _Paths(keep_s=2 * window_s + 1)
        self.episodes_ = _Episodes()

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        if not self.flows_:
            return []
        people = _Objects.of(tracks).people()
        self.paths_.add(time_s, people)
        self.episodes_.see(time_s, people)
        found = []
        for k, zone in enumerate(self._zones_of(people)):
            if zone is False:
                continue
            tid = int(people.ids[k])
            fx, fy = self.flows_[zone]
            v = self.paths_.velocity(tid, self.window_s)
            run = self.runs_.get(tid)
            speed = 0.0 if v is None else math.hypot(*v)
            cosine = (v[0] * fx + v[1] * fy) / speed if speed > 0 else 0.0
            if speed < self.min_speed_m_s or cosine > self.max_cosine:
                if run is not None and not run[3]:
                    del self.runs_[tid]
                continue
            if run is None:  # the movement began when the velocity's window did
                since = self.paths_.since(tid, self.window_s)
                run = self.runs_[tid] = [since, speed * (time_s - since), time_s, False]
            run[1] += speed * (time_s - run[2])
            run[2] = time_s
            duration = time_s - run[0]
            if not run[3] and duration >= self.min_duration_s and run[1] >= self.min_distance_m:
                run[3] = True
                if not self.episodes_.add(tid, time_s, float(people.fx[k]), float(people.fy[k]),
                                          float(people.h[k]), self.paths_.first[tid][:3]):
                    continue
                found.append(_event(self.kind, frame_index, time_s, -cosine, zone, [tid], duration,
                                    speed_m_s=round(speed, 2), cosine=round(cosine, 3),
                                    distance_m=round(run[1], 2)))
        return found

    def _zones_of(self, people: _Objects) -> list:
        """The corridor each person stands in (the first listed that holds their feet; None: the
        flow of the whole view), or False where no flow applies."""
        outside = None if None in self.flows_ else False
        zones = [outside] * len(people)
        if not len(people):
            return zones
        free = np.ones(len(people), bool)
        for name, poly in self.polygons_.items():
            hit = free & shapely.contains_xy(poly, people.fx, people.fy)
            for k in np.flatnonzero(hit).tolist():
                zones[k] = name
            free &= ~hit
        return zones


# =========================================================================== person on the ground


class PersonOnGroundDetector:
    """A fall: a box turns wide and low where a person stood, then stays still for ``still_s``.

    A box is "down" when its width exceeds ``min_aspect`` times its height
    (an upright person is about 0.4). ``require_upright`` asks for an
    upright person to have stood at that spot (feet within ``reach`` of
    their heights) in the last ``fall_window_s``: that is what tells a fall
    from a bench or a parked scooter. The spot, not the track id, is what
    links the two, because a tracker often gives the body on the ground a
    new id (and may call it an object: ``classes`` takes both).
    """

    kind = "person_on_ground"

    def __init__(self, scene: dict, min_aspect: float = 1.3, still_s: float = 2.0,
                 still_m_s: float = 0.3, require_upright: bool = True, fall_window_s: float = 5.0,
                 reach: float = 1.0, classes=("person", "object")):
        self.scene = scene
        self.min_aspect = min_aspect
        self.still_s = still_s
        self.still_m_s = still_m_s
        self.require_upright = require_upright
        self.fall_window_s = fall_window_s
        self.reach = reach
        self.classes = classes
        self.upright_ = deque()   # (time_s, track_id, feet x, feet y, box_h) of upright people
        self.down_ = {}           # track_id -> [since_s, cx, cy, fired, upright track id]
        self.episodes_ = _Episodes(gap_s=fall_window_s)

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        objects = _Objects.of(tracks)
        if not len(objects):
            return []
        self.episodes_.see(time_s, objects)
        while self.upright_ and self.upright_[0][0] < time_s - self.fall_window_s:
            self.upright_.popleft()
        found = []
        rows = objects.take((objects.person & ("person" in self.classes))
                            | (objects.object & ("object" in self.classes)))
        for tid, x, y, w, h, person in zip(rows.ids.tolist(), rows.x.tolist(), rows.y.tolist(),
                                            rows.w.tolist(), rows.h.tolist(), rows.person.tolist()):
            if person and h > 1.5 * w:
                self.upright_.append((time_s, tid, x + w / 2, y + h, h))
                self.down_.pop(tid, None)
                continue
            if w < self.min_aspect * h:
                self.down_.pop(tid, None)
                continue
            stood = self._stood_here(x + w / 2, y + h, tid)
            down = self.down_.get(tid)
            if down is None:
                if self.require_upright and stood is None:
                    continue
                self.down_[tid] = [time_s, x + w / 2, y + h / 2, False, stood]
                continue
            scale = PERSON_HEIGHT_M / max(w, 1.0)  # lying, the box's width is about a body's length
            if math.hypot(x + w / 2 - down[1], y + h / 2 - down[2]) * scale > self.still_m_s * self.still_s:
                down[0], down[1], down[2] = time_s, x + w / 2, y + h / 2
                continue
            lying = time_s - down[0]
            if not down[3] and lying >= self.still_s:
                down[3] = True
                if not self.episodes_.add(tid, time_s, x + w / 2, y + h, w):
                    continue
                ids = [tid] + ([down[4]] if down[4] is not None and down[4] != tid else [])
                aspect = w / max(h, 1.0)
                found.append(_event(self.kind, frame_index, time_s, min(1.0, aspect / 3), None,
                                    ids, lying, aspect=round(aspect, 2), fell_s=round(down[0], 3)))
        return found

    def _stood_here(self, fx, fy, track_id):
        """The id of an upright person recently standing where this low box lies, or None."""
        for t, tid, ux, uy, uh in reversed(self.upright_):
            if abs(fx - ux) <= self.reach * uh and abs(fy - uy) <= 0.5 * uh:
                return tid
        return None


# =========================================================================== abandoned object


class AbandonedObjectDetector:
    """A new static object with nobody standing by it for ``limit_s``.

    Objects come from the tracker (``cls == 'object'``). An object counts as
    static when its feet point stays within ``still_px`` of where it was
    first seen for ``min_static_s``; it is attended while a person stands
    (slower than ``still_m_s``) within ``owner_radius_m``: its owner, or
    whoever waits beside it. People walking past do not attend it, or a busy
    street would hide every bag. The person nearest the object when it
    appeared is reported as its likely owner (an anonymous track id).

    A background model soon learns a bag that does not move, and the tracker
    then loses it, exactly when it matters. So once static, the object's
    look (a grey patch) is kept, and while the tracker no longer reports it
    the patch is compared with the frame: still there if the normalised
    correlation is at least ``min_match`` (undecided while a person covers
    it). The patch is of the object only, in memory, never stored.
    """

    kind = "abandoned_object"

    def __init__(self, scene: dict, limit_s: float | None = None, owner_radius_m: float = 1.5,
                 still_m_s: float = 0.4, still_px: float = 6.0, min_static_s: float = 1.0,
                 min_match: float = 0.6):
        self.scene = scene
        self.limit_s = float(limit_s if limit_s is not None else scene.get("abandon_limit_s", 30.0))
        self.owner_radius_m = owner_radius_m
        self.still_m_s = still_m_s
        self.still_px = still_px
        self.min_static_s = min_static_s
        self.min_match = min_match
        self.objects_ = {}   # track_id -> dict(first_s, x, y, box, patch, alone_since, fired, owner)
        self.paths_ = _Paths(keep_s=2.0)

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        everything = _Objects.of(tracks)
        people = everything.people()
        self.paths_.add(time_s, people)
        bags = everything.take(everything.object)
        seen = set()
        for tid, x, y, w, h in zip(bags.ids.tolist(), bags.x.tolist(), bags.y.tolist(), bags.w.tolist(),
                                   bags.h.tolist()):
            fx, fy = x + w / 2, y + h
            seen.add(tid)
            obj = self.objects_.get(tid)
            if obj is None or math.hypot(fx - obj["x"], fy - obj["y"]) > self.still_px:
                self.objects_[tid] = {"first_s": time_s, "x": fx, "y": fy, "box": (x, y, w, h),
                                      "patch": None, "alone_since": None, "fired": False,
                                      "owner": _nearest(people, fx, fy)}
            elif obj["patch"] is None and image is not None and time_s - obj["first_s"] >= self.min_static_s:
                obj["box"], obj["patch"] = (x, y, w, h), _patch(image, (x, y, w, h))
                obj["patch_std"] = _std(obj["patch"]) if obj["patch"] is not None else 0.0
        for tid in list(self.objects_):
            if tid not in seen and not self._still_there(self.objects_[tid], image, people):
                del self.objects_[tid]
        if not self.objects_:  # nothing left to watch: no need for anyone's speed
            return []
        mpp = _metres_per_pixel(people.h)
        standing = np.array([self._standing(t) for t in people.ids.tolist()], bool)
        found = []
        for tid, obj in self.objects_.items():
            dist_m = np.hypot(people.fx - obj["x"], people.fy - obj["y"]) * mpp
            attended = bool(((dist_m <= self.owner_radius_m) & standing).any())
            if attended or time_s - obj["first_s"] < self.min_static_s:
                obj["alone_since"] = None
                continue
            if obj["alone_since"] is None:
                obj["alone_since"] = time_s
            alone = time_s - obj["alone_since"]
            if not obj["fired"] and alone >= self.limit_s:
                obj["fired"] = True
                ids = [tid] + ([obj["owner"]] if obj["owner"] is not None else [])
                found.append(_event(self.kind, frame_index, time_s, min(1.0, alone / (2 * self.limit_s)) + 0.5,
                                    None, ids, time_s - obj["first_s"], unattended_s=round(alone, 2),
                                    limit_s=self.limit_s,
                                    position_px=[round(float(obj["x"]), 1), round(float(obj["y"]), 1)],
                                    tracked=tid in seen))
        return found

    def _standing(self, track_id) -> bool:
        speed = self.paths_.speed(track_id, 1.0)
        return speed is None or speed <= self.still_m_s

    def _still_there(self, obj, image, people: _Objects) -> bool:
        """An object the tracker lost: is its patch still in the frame (or hidden by someone)?"""
        if obj["patch"] is None or image is None:
            return False
        x, y, w, h = obj["box"]
        if ((people.x < x + w) & (x < people.x + people.w)
                & (people.y < y + h) & (y < people.y + people.h)).any():
            return True  # covered by a person: cannot tell, keep it
        now = _patch(image, obj["box"])
        if now is None or now.shape != obj["patch"].shape or obj["patch_std"] < 1 or _std(now) < 1:
            return False
        return float(cv2.matchTemplate(now, obj["patch"], cv2.TM_CCOEFF_NORMED)[0, 0]) >= self.min_match


def _patch(image: np.ndarray, box, pad: int = 2):
    """The grey pixels of ``box`` (and ``pad`` around), as float32; only that crop is converted."""
    x, y, w, h = (int(round(v)) for v in box)
    x0, y0 = max(x - pad, 0), max(y - pad, 0)
    x1, y1 = min(x + w + pad, image.shape[1]), min(y + h + pad, image.shape[0])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    crop = image[y0:y1, x0:x1]
    if crop.ndim == 3:
        crop = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2GRAY)
    return crop.astype(np.float32)


def _std(patch: np.ndarray) -> float:
    return float(cv2.meanStdDev(patch)[1][0, 0])


def _nearest(people: _Objects, fx: float, fy: float):
    if not len(people):
        return None
    return int(people.ids[int(np.argmin(np.hypot(people.fx - fx, people.fy - fy)))])


# =========================================================================== density


class ExcessiveDensityDetector:
    """People per square metre in a zone over its limit, held for ``min_duration_s``.

    A zone's area in m² comes from the scene's homography, else from
    ``pixels_per_metre`` (one scale for the whole view: right near the
    middle of the image, rough elsewhere). Where the scene gives
    ``max_people`` for a zone, that count is the limit instead.

    A tracker cannot count a dense crowd: people hide each other and their
    blobs merge, which is exactly when density matters. So the count is the
    larger of the tracked people standing in the zone and a pixel estimate:
    the foreground pixels inside the zone, each divided by the area one
    person covers at that row. That area is learnt from the camera's own
    tracks (with ``use_foreground``): the height of upright people by row
    (a straight line, as perspective gives) and the share of their box that
    is foreground, measured on people standing apart. People in a crowd
    hide each other, so the covered share ``c`` of the zone (in person
    areas ``A``) is turned into a count as if people were dropped at random,
    ``n = -A ln(1 - c)`` (the coverage of a Poisson process of shapes): the
    same as ``c A`` for a few people, more and more above it as the zone
    fills, capped at ``max_cover``. The pixels are counted on every
    ``pixel_step``-th row and column (the mask comes from a half-resolution
    background model: a quarter of the work for the same count). The count
    is the median over ``smooth_s``; an episode ends after ``min_duration_s``
    back under the limit.
    """

    kind = "excessive_density"

    def __init__(self, scene: dict, limit_per_m2: float | None = None, max_people: dict | None = None,
                 zones=None, smooth_s: float = 1.0, min_duration_s: float = 1.0, use_foreground: bool = True,
                 min_samples: int = 30, max_cover: float = 0.95, pixel_step: int = 2):
        self.scene = scene
        self.limit_per_m2 = float(limit_per_m2 if limit_per_m2 is not None
                                  else scene.get("density_limit_per_m2", 2.0))
        self.max_people = dict(max_people if max_people is not None else scene.get("max_people") or {})
        self.zones = zones
        self.smooth_s = smooth_s
        self.min_duration_s = min_duration_s
        self.use_foreground = use_foreground
        self.min_samples = min_samples
        self.max_cover = max_cover
        self.pixel_step = int(pixel_step)
        if self.pixel_step < 1:
            raise ValueError(f"pixel_step must be a whole number of pixels >= 1, got {pixel_step!r}")
        forbidden = set(scene.get("forbidden_zones") or [])
        names = zones if zones is not None else [z for z in scene.get("zones", {}) if z not in forbidden]
        self.polygons_ = _zones(scene, names)
        self.area_m2_ = {z: _area_m2(p, scene) for z, p in self.polygons_.items()}
        self.counts_ = defaultdict(deque)
        self.state_ = {z: {"over_since": None, "under_since": None, "active": False}
                       for z in self.polygons_}
        self.heights_ = deque(maxlen=2000)   # (feet_y, box_h) of upright people
        self.fills_ = deque(maxlen=500)      # foreground share of lone people's boxes
        self.masks_ = {}       # zone -> its pixels, on the counting grid
        self.weights_ = None   # 1 / a person's area, per full-resolution row
        self.pixel_weights_ = {}  # zone -> (weight of each counting-grid pixel in the zone, their sum)

    def limit(self, zone: str) -> float:
        """The most people the zone may hold."""
        if zone in self.max_people:
            return float(self.max_people[zone])
        return self.limit_per_m2 * self.area_m2_[zone]

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        if not self.polygons_:
            return []
        people = _Objects.of(tracks).people()
        estimate = self._pixel_counts(frame_index, people, foreground) if self.use_foreground else {}
        found = []
        for zone, poly in self.polygons_.items():
            inside = shapely.contains_xy(poly, people.fx, people.fy) if len(people) else np.zeros(0, bool)
            tracked = int(inside.sum())
            q = self.counts_[zone]
            q.append((time_s, max(tracked, estimate.get(zone, 0.0))))
            while q[0][0] < time_s - self.smooth_s:
                q.popleft()
            count = float(_median([c for _, c in q]))
            st, limit = self.state_[zone], self.limit(zone)
            if count > limit:
                st["under_since"] = None
                st["over_since"] = st["over_since"] if st["over_since"] is not None else time_s
                held = time_s - st["over_since"]
                if not st["active"] and held >= self.min_duration_s:
                    st["active"] = True
                    found.append(_event(self.kind, frame_index, time_s, min(1.0, count / (2 * limit)) + 0.5,
                                        zone, people.ids[inside], held,
                                        people=round(count, 1), tracked_people=tracked,
                                        pixel_estimate=round(float(estimate.get(zone, np.nan)), 1),
                                        limit_people=round(limit, 2),
                                        density_per_m2=round(count / self.area_m2_[zone], 3),
                                        area_m2=round(self.area_m2_[zone], 2)))
            else:
                st["over_since"] = None
                st["under_since"] = st["under_since"] if st["under_since"] is not None else time_s
                if st["active"] and time_s - st["under_since"] >= self.min_duration_s:
                    st["active"] = False
        return found

    def _pixel_counts(self, frame_index, people, foreground) -> dict[str, float]:
        """People per zone from foreground pixels, once person size is learnt; {} before."""
        if foreground is None:
            return {}
        foreground = np.asarray(foreground)
        self._learn(people, foreground)
        if len(self.heights_) < self.min_samples or len(self.fills_) < self.min_samples // 3:
            return {}
        step = self.pixel_step
        if not self.masks_:
            for zone, poly in self.polygons_.items():
                mask = np.zeros(foreground.shape[:2], np.uint8)
                cv2.fillPoly(mask, [np.round(np.asarray(poly.exterior.coords)).astype(np.int32)], 1)
                self.masks_[zone] = mask[::step, ::step].astype(bool)
        if self.weights_ is None or frame_index % 50 == 0:
            self.weights_ = self._row_weights(foreground.shape[0])
            # each grid pixel stands for step x step pixels of its row's weight
            row = self.weights_[::step, None] * step * step
            self.pixel_weights_ = {}
            for zone, mask in self.masks_.items():
                weight = np.where(mask, row, 0.0)
                self.pixel_weights_[zone] = weight, float(weight.sum())  # capacity: person-areas it holds
        fg = foreground[::step, ::step] > 0
        counts = {}
        for zone, (weight, capacity) in self.pixel_weights_.items():
            covered = float(weight[fg].sum())
            share = min(covered / capacity, self.max_cover) if capacity > 0 else 0.0
            counts[zone] = -capacity * math.log1p(-share)
        return counts

    def _learn(self, people: _Objects, foreground: np.ndarray) -> None:
        """Person height by row, and the foreground share of the box of people standing apart."""
        x, y, w, h = people.x, people.y, people.w, people.h
        upright = np.flatnonzero((h >= 1.5 * w) & (h >= 8))
        if not len(upright):
            return
        near = ((x[None, :] < (x + w + 4)[upright, None]) & ((x - 4)[upright, None] < (x + w)[None, :])
                & (y[None, :] < (y + h + 4)[upright, None]) & ((y - 4)[upright, None] < (y + h)[None, :]))
        near[np.arange(len(upright)), upright] = False  # a box is not near itself
        rows, cols = foreground.shape[:2]
        for k, apart in zip(upright.tolist(), (~near.any(1)).tolist()):
            xk, yk, wk, hk = float(x[k]), float(y[k]), float(w[k]), float(h[k])
            self.heights_.append((yk + hk, hk))
            x0, y0 = max(int(xk), 0), max(int(yk), 0)
            if apart and x0 + wk < cols and y0 + hk < rows:
                self.fills_.append(np.count_nonzero(foreground[y0:int(yk + hk), x0:int(xk + wk)]) / (hk * hk))

    def _row_weights(self, n_rows: int) -> np.ndarray:
        """1 / (pixels one person covers) for a pixel on each row: perspective from the tracks."""
        y, h = np.asarray(self.heights_, float).T
        slope, intercept = np.polyfit(y, h, 1) if np.ptp(y) > 10 else (0.0, float(np.median(h)))
        slope = max(slope, 0.0)
        rows = np.arange(n_rows, dtype=float)
        height = np.maximum(intercept + slope * rows, 4.0)
        height = np.maximum(intercept + slope * (rows + height / 2), 4.0)  # a body pixel is above its feet
        return 1.0 / (float(np.median(self.fills_)) * height ** 2)


def _area_m2(poly: shapely.Polygon, scene: dict) -> float:
    hom = scene.get("homography") or scene.get("image_to_ground")
    if hom is not None:
        pts = np.asarray(poly.exterior.coords, np.float64)[None]
        return float(shapely.Polygon(cv2.perspectiveTransform(pts, np.asarray(hom, float))[0]).area)
    ppm = scene.get("pixels_per_metre")
    if not ppm:
        raise ValueError("scene has neither 'homography' nor 'pixels_per_metre': a zone's area is unknown")
    return float(poly.area) / float(ppm) ** 2


# =========================================================================== crowd movement


class CrowdMovementDetector:
    """Sudden convergence or dispersal: many tracks moving towards, or away from, a common centre.

    Each frame, the moving people (over ``min_speed_m_s``) are taken with
    their velocity over ``window_s``; the centre is their mean position; a
    person converges when their velocity points at the centre (cosine below
    ``-min_cosine``) and disperses when it points away. An episode starts
    when at least ``min_people`` move and ``min_share`` of them agree for
    ``min_duration_s``, and ends after ``min_duration_s`` without.
    People streaming past in one direction split half towards, half away
    from their mean, so ordinary flow never reaches the share.
    """

    kind = "crowd_movement"

    def __init__(self, scene: dict, min_people: int = 6, min_share: float = 0.7,
                 min_speed_m_s: float = 0.5, min_cosine: float = 0.5, window_s: float = 0.5,
                 min_duration_s: float = 0.5):
        self.scene = scene
        self.min_people = min_people
        self.min_share = min_share
        self.min_speed_m_s = min_speed_m_s
        self.min_cosine = min_cosine
        self.window_s = window_s
        self.min_duration_s = min_duration_s
        self.paths_ = _Paths(keep_s=2 * window_s + 1)
        self.state_ = {"direction": None, "since": None, "quiet_since": None, "active": None}

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        people = _Objects.of(tracks).people()
        self.paths_.add(time_s, people)
        ids, pos, vel = [], [], []
        for tid, fx, fy in zip(people.ids.tolist(), people.fx.tolist(), people.fy.tolist()):
            v = self.paths_.velocity(tid, self.window_s)
            if v is not None and math.hypot(*v) >= self.min_speed_m_s:
                ids.append(tid)
                pos.append((fx, fy))
                vel.append(v)
        direction, share, speed = None, 0.0, 0.0
        if len(ids) >= self.min_people:
            pos, vel = np.asarray(pos), np.asarray(vel)
            out = pos - pos.mean(0)
            cos = (out * vel).sum(1) / np.maximum(np.hypot(*out.T) * np.hypot(*vel.T), 1e-9)
            towards, away = (cos < -self.min_cosine).mean(), (cos > self.min_cosine).mean()
            share = max(towards, away)
            speed = float(np.hypot(*vel.T).mean())
            if share >= self.min_share:
                direction = "convergence" if towards > away else "dispersal"
        return self._episode(frame_index, time_s, direction, share, ids, speed)

    def _episode(self, frame_index, time_s, direction, share, ids, speed) -> list[dict]:
        st = self.state_
        if direction is None:
            st["direction"] = st["since"] = None
            st["quiet_since"] = st["quiet_since"] if st["quiet_since"] is not None else time_s
            if st["active"] and time_s - st["quiet_since"] >= self.min_duration_s:
                st["active"] = None
            return []
        st["quiet_since"] = None
        if direction != st["direction"]:
            st["direction"], st["since"] = direction, time_s
        held = time_s - st["since"]
        if st["active"] == direction or held < self.min_duration_s:
            return []
        st["active"] = direction
        return [_event(self.kind, frame_index, time_s, share, None, ids, held, direction=direction,
                       people_moving=len(ids), share=round(float(share), 3),
                       mean_speed_m_s=round(speed, 2))]


# =========================================================================== fire


class FireDetector:
    """Flames from the pixels: fire colours that flicker in place and persist.

    A pixel is flame-coloured when red is bright (``min_red``), red >= green
    > blue and the colour is saturated (the rule of Chen et al., ICIP 2004).
    Painted signs and clothes can pass that rule, so the pixel must also
    *flicker*: switch in and out of the flame colour at least
    ``min_switches`` times over ``window_s`` (a person walking by switches it
    twice at most), while being flame-coloured in at least ``min_presence``
    of the window's frames (fire stays in place; a person in an orange coat
    walking by covers a pixel only briefly), and must not be flame-coloured paint: a pixel that has
    been flame-coloured for most of some ``paint_s`` (a yellow hatched area,
    a sign; from the first frame on) flickers whenever people walk over it,
    so it is left out for good.
    Flickering pixels are grouped into blobs; an alarm needs
    a blob of ``min_area_px`` (at 480 px wide) for ``min_duration_s``. The
    growth of the blob is reported as evidence. The colours are judged on
    the frame scaled to ``work_width`` pixels wide.
    """

    kind = "fire"

    def __init__(self, scene: dict, min_red: int = 220, min_saturation: float = 0.55,
                 window_s: float = 2.0, min_switches: int = 3, min_presence: float = 0.3,
                 min_area_px: int = 150,
                 min_duration_s: float = 1.0, paint_s: float = 10.0, paint_share: float = 0.8,
                 work_width: int = 240):
        self.scene = scene
        self.paint_s = paint_s
        self.paint_share = paint_share
        self.min_red = min_red
        self.min_saturation = min_saturation
        self.window_s = window_s
        self.min_switches = min_switches
        self.min_presence = min_presence
        self.min_area_px = min_area_px
        self.min_duration_s = min_duration_s
        self.work_width = work_width
        self.fps_ = float(scene.get("fps") or 10.0)
        self.switches_ = deque(maxlen=max(3, int(round(window_s * self.fps_))))
        self.masks_ = deque(maxlen=self.switches_.maxlen)
        self.last_mask_ = None
        self.count_ = None
        self.since_ = None
        self.first_area_ = None
        self.active_ = False

    def flame_mask(self, image: np.ndarray) -> np.ndarray:
        """Boolean mask of flame-coloured pixels (of a BGR image)."""
        return self._flame(image).view(bool)

    def _flame(self, image: np.ndarray) -> np.ndarray:
        """Flame-coloured pixels as a 0/1 ``uint8`` mask, with OpenCV's per-channel operations
        (twice as quick as numpy's on interleaved channels)."""
        b, g, r = cv2.split(np.ascontiguousarray(image))
        mask = cv2.compare(r, float(self.min_red), cv2.CMP_GE)
        mask &= cv2.compare(r, g, cv2.CMP_GE)
        mask &= cv2.compare(g, b, cv2.CMP_GT)
        # red >= green > blue makes blue the smallest channel, so the saturation
        # 1 - min(b, g, r) / r >= s reads (1 - s) r - b >= 0: no division
        spare = cv2.addWeighted(r, 1.0 - self.min_saturation, b, -1.0, 0.0, dtype=cv2.CV_32F)
        mask &= cv2.compare(spare, 0.0, cv2.CMP_GE)
        mask &= 1
        return mask

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        if image is None:
            return []
        # Colours are judged at ``work_width`` (a quarter of the pixels of a 480 px frame: the
        # flicker of a fire spans many of them); areas are reported as if at 480 px wide.
        scale = min(1.0, self.work_width / image.shape[1])
        unit = scale * image.shape[1] / 480.0   # working pixels per pixel of a 480 px wide frame
        small = image if scale == 1 else cv2.resize(image, None, fx=scale, fy=scale,
                                                    interpolation=cv2.INTER_AREA)
        mask = self._flame(small).view(bool)
        if self.last_mask_ is None or self.last_mask_.shape != mask.shape:
            self.last_mask_, self.count_ = mask, np.zeros(mask.shape, np.int16)
            self.paint_ = mask.astype(np.float32)
            self.is_paint_ = mask.copy()
            self.masks_.clear()
            self.presence_ = np.zeros(mask.shape, np.int16)
            self.switches_.clear()
            side = max(1, int(round(5 * unit))) | 1  # the 5 px closing of a 480 px frame, odd
            self.kernel_ = np.ones((side, side), np.uint8)
            return []
        if len(self.switches_) == self.switches_.maxlen:  # a running count over the window
            self.count_ -= self.switches_[0]
        if len(self.masks_) == self.masks_.maxlen:
            self.presence_ -= self.masks_[0]
        self.masks_.append(mask.view(np.uint8))
        self.presence_ += self.masks_[-1]
        switch = (mask != self.last_mask_).view(np.uint8)
        self.switches_.append(switch)
        self.count_ += switch
        self.last_mask_ = mask
        cv2.accumulateWeighted(mask.astype(np.float32), self.paint_, 1.0 / (self.paint_s * self.fps_))
        self.is_paint_ |= self.paint_ >= self.paint_share  # once paint, always paint
        if len(self.switches_) < self.switches_.maxlen:
            return []
        flicker = ((self.count_ >= self.min_switches) & ~self.is_paint_
                   & (self.presence_ >= self.min_presence * len(self.masks_))).view(np.uint8)
        min_area = self.min_area_px * unit * unit
        candidates = cv2.countNonZero(flicker)
        if candidates * self.kernel_.size < min_area:
            # a closing grows a set at most kernel-size times: no blob can reach the minimum
            return self._quiet(candidates > 0)
        flicker = cv2.morphologyEx(flicker, cv2.MORPH_CLOSE, self.kernel_)
        n, _, stats, _ = cv2.connectedComponentsWithStats(flicker)
        area = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
        if area < min_area:
            return self._quiet(area > 0)
        if self.since_ is None:
            self.since_, self.first_area_ = time_s, area
        held = time_s - self.since_
        if self.active_ or held < self.min_duration_s:
            return []
        self.active_ = True
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        x, y, w, h = (int(stats[k, c] / scale) for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                          cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        return [_event(self.kind, frame_index, time_s, min(1.0, area / (4 * min_area)), None, [],
                       held, area_px=int(round(area / (unit * unit))),
                       growth=round(area / max(self.first_area_, 1), 2), box_px=[x, y, w, h])]

    def _quiet(self, flickering: bool) -> list:
        """No blob big enough: the episode ends once nothing flickers any more."""
        self.since_ = None
        self.active_ = self.active_ and flickering
        return []


# =========================================================================== weapons


class WeaponDetector:
    """The weapons plug-in point: a user's own ONNX model run through ``cv2.dnn``; none ships.

    safecity does not ship, train or recommend a weapon model; an
    installation that has one (and the legal basis to use it) passes its
    path. Building without one fails with a message saying so. Detections of
    the classes in ``weapon_classes`` over ``min_confidence`` become
    ``weapon`` events (one per frame in which they are seen: there are no
    weapon tracks).
    """

    kind = "weapon"

    def __init__(self, scene: dict, model_path: str | os.PathLike | None = None,
                 classes: tuple[str, ...] = ("weapon",), weapon_classes=None,
                 min_confidence: float = 0.5, input_size=(640, 640)):
        self.scene = scene
        self.model_path = model_path
        self.classes = tuple(classes)
        self.weapon_classes = tuple(weapon_classes or classes)
        self.min_confidence = min_confidence
        self.input_size = input_size
        if model_path is None:
            raise ValueError("WeaponDetector needs model_path: no weapon model ships with safecity; "
                             "pass the path of your own ONNX detection model (see safecity.video.detect."
                             "OnnxDetector for the input and output it must have)")
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"weapon model {model_path}: no such file")
        from safecity.video.detect import OnnxDetector

        self.model_ = OnnxDetector(model_path, input_size=input_size, classes=self.classes,
                                   confidence=min_confidence, kind="weapons")

    def update(self, frame_index, time_s, image=None, tracks=None, foreground=None) -> list[dict]:
        if image is None:
            return []
        det = self.model_.detect(image)
        names = det.data.get("class_name", [None] * len(det))
        return [_event(self.kind, frame_index, time_s, float(c), None, [], 0.0, class_name=str(n),
                       box_px=[round(float(v), 1) for v in box])
                for box, c, n in zip(det.xyxy, det.confidence, names)
                if n in self.weapon_classes and c >= self.min_confidence]


# =========================================================================== building and rows

_CLASSES = {
    "loitering": LoiteringDetector, "forbidden_zone": ForbiddenZoneDetector,
    "wrong_way": WrongWayDetector, "person_on_ground": PersonOnGroundDetector,
    "abandoned_object": AbandonedObjectDetector, "excessive_density": ExcessiveDensityDetector,
    "crowd_movement": CrowdMovementDetector, "fire": FireDetector, "weapon": WeaponDetector,
}
#: Camera kind -> its detector class, in the registry's order (repeated presence: ``repeat``).
DETECTORS = {kind: _CLASSES[kind] for kind in CAMERA_KINDS if kind in _CLASSES}


def make_detectors(scene: dict, kinds=None, **options) -> list:
    """One detector per kind, set from the scene; ``options[kind]`` (a dict) overrides settings.

    ``kinds`` defaults to the scene's ``detectors`` list (a camera's YAML)
    or ``KINDS``; kinds that other modules handle (``repeated_presence``) are
    left out. ``weapon`` is built only from a plug-in of kind ``weapon...``
    in ``scene['plugins']`` (or ``options['weapon']['model_path']``).
    """
    asked = list(kinds if kinds is not None else scene.get("detectors") or KINDS)
    unknown = [k for k in asked if k not in DETECTORS and k != "repeated_presence"]
    if unknown:
        raise ValueError(f"unknown event kind {unknown}; choose from {', '.join(DETECTORS)}")
    built = []
    for kind in asked:
        if kind not in DETECTORS:
            continue
        settings = dict(options.get(kind, {}))
        if kind == "weapon" and "model_path" not in settings:
            plugin = next((p for p in scene.get("plugins") or [] if str(p.get("kind", "")).startswith("weapon")),
                          None)
            if plugin is not None:
                settings.update(model_path=plugin["path"], classes=tuple(plugin.get("classes", ("weapon",))),
                                input_size=tuple(plugin.get("input_size", (640, 640))),
                                min_confidence=plugin.get("confidence", 0.5))
        built.append(DETECTORS[kind](scene, **settings))
    return built


def to_event_rows(found: list[dict], camera_id: str, start_ts, lon: float | None = None,
                  lat: float | None = None) -> pd.DataFrame:
    """``events`` rows (``safecity.data.schema``) from detector output; ``start_ts`` is the clip's frame 0."""
    from safecity.data.schema import empty, validate

    if not found:
        return empty("events")
    start = pd.Timestamp(start_ts)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    rows = []
    for k, ev in enumerate(found):
        missing = [c for c in ("kind", "frame", "time_s", "score") if c not in ev]
        if missing:
            raise ValueError(f"event {k} from camera {camera_id} lacks {missing}: {ev}")
        ts = start + pd.Timedelta(seconds=float(ev["time_s"]))
        details = {c: v for c, v in ev.items() if c not in ("kind", "score")}
        rows.append({"event_id": f"{ev['kind']}-{SOURCE}-{camera_id}-{ts:%Y%m%dT%H%M%S.%fZ}-{k}",
                     "ts": ts, "kind": ev["kind"], "sensor_id": str(camera_id),
                     "lon": np.nan if lon is None else lon, "lat": np.nan if lat is None else lat,
                     "score": ev["score"], "source": SOURCE,
                     "details": json.dumps(details, default=_plain)})
    return validate(pd.DataFrame(rows), "events")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into event details")
