"""A person inside a forbidden zone (and, by default, stopping there)."""
from __future__ import annotations

import shapely

from safecity.video.events.common import (
    Episodes,
    EventRule,
    Objects,
    Paths,
    event,
    zone_polygons,
)


class ForbiddenZoneRule(EventRule):
    """A person inside a forbidden zone for ``min_inside_s`` (and, by default, stopping there).

    With ``require_stop=False`` any entry of ``min_inside_s`` is flagged. The
    default asks for the person to stand still (below ``still_m_s`` over
    ``min_inside_s``) at some moment inside, so that someone cutting across
    the edge of a hatched area is not an alarm; set it to False where any
    entry matters (a track bed, a roof). Only upright boxes count: the
    bottom centre of a body lying down is not where its feet are (and a
    person on the ground is ``PersonOnGroundRule``'s).
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
        self.polygons_ = zone_polygons(scene, names)
        self.stays_ = {}
        self.paths_ = Paths(keep_s=max(2.0, 2 * min_inside_s))
        self.episodes_ = Episodes()

    @classmethod
    def from_config(cls, camera) -> ForbiddenZoneRule:
        return cls(camera.scene(), zones=list(camera.forbidden_zones))

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        if not self.polygons_:
            return []
        objects = Objects.of(detections)
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
                found.append(event(self.kind, frame_index, time_s, 1.0, zone, [tid], inside_s,
                                    entered_s=round(stay[0], 3),
                                    speed_m_s=None if speed is None else round(speed, 3)))
        return found
