"""Sudden convergence or dispersal of a crowd."""
from __future__ import annotations

import math

import numpy as np

from safecity.video.events.common import EventRule, Objects, Paths, event


class CrowdMovementRule(EventRule):
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
        self.paths_ = Paths(keep_s=2 * window_s + 1)
        self.state_ = {"direction": None, "since": None, "quiet_since": None, "active": None}

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        people = Objects.of(detections).people()
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
        return [event(self.kind, frame_index, time_s, share, None, ids, held, direction=direction,
                       people_moving=len(ids), share=round(float(share), 3),
                       mean_speed_m_s=round(speed, 2))]
