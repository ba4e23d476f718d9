"""Sustained movement against the expected flow of a corridor."""
from __future__ import annotations

import math

import numpy as np
import shapely

from safecity.video.events.common import (
    Episodes,
    EventRule,
    Objects,
    Paths,
    event,
    zone_polygons,
)


class WrongWayRule(EventRule):
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
        self.polygons_ = zone_polygons(scene, [z for z in self.flows_ if z is not None])
        self.runs_ = {}   # track_id -> [start_s, distance_m, last_s, fired]
        self.paths_ = Paths(keep_s=2 * window_s + 1)
        self.episodes_ = Episodes()

    @classmethod
    def from_config(cls, camera) -> WrongWayRule:
        return cls(camera.scene(), flows={zone: list(vec) for zone, vec in camera.flow.items()})

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        if not self.flows_:
            return []
        people = Objects.of(detections).people()
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
                found.append(event(self.kind, frame_index, time_s, -cosine, zone, [tid], duration,
                                    speed_m_s=round(speed, 2), cosine=round(cosine, 3),
                                    distance_m=round(run[1], 2)))
        return found

    def _zones_of(self, people: Objects) -> list:
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
