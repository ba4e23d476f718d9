"""A person staying in a zone longer than its limit without passing through."""
from __future__ import annotations

import math
from collections import deque

import shapely

from safecity.video.events.common import (
    PERSON_HEIGHT_M,
    Episodes,
    EventRule,
    Objects,
    Paths,
    event,
    median,
    zone_polygons,
)


class LoiteringRule(EventRule):
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
        self.polygons_ = dict(sorted(zone_polygons(scene, names).items(), key=lambda kv: kv[1].area))
        self.stays_ = {}   # (track_id, zone) -> [first_s, last_s]
        self.fired_ = set()
        self.episodes_ = Episodes()
        self.paths_ = Paths(keep_s=self.limit_s + 1.0)

    @classmethod
    def from_config(cls, camera) -> LoiteringRule:
        return cls(camera.scene(), limit_s=camera.loitering_limit_s)

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        if not self.polygons_:
            return []
        objects = Objects.of(detections)
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
                found.append(event(self.kind, frame_index, time_s,
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
        mpp = PERSON_HEIGHT_M / max(median([r[4] for r in q]), 1.0)
        return float(math.hypot(x1 - old[1], y1 - old[2]) * mpp)
