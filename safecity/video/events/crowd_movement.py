"""Sudden convergence or dispersal of a crowd."""
from __future__ import annotations

import math

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from safecity.video.events.common import EventRule, Objects, Paths, event


class CrowdMovementRule(EventRule):
    """Sudden convergence or dispersal: many tracks moving towards, or away from, a common centre.

    Each frame, the moving people (over ``min_speed_m_s``) are taken with
    their velocity over ``window_s``; the centre is their mean position; a
    person converges when their velocity points at the centre (cosine below
    ``-min_cosine``) and disperses when it points away. An episode starts
    when at least ``min_people`` move and ``min_share`` of them agree for
    ``min_duration_s`` and at least ``min_frames`` frames in a row (at 2
    frames a second, half a second is one or two frames: shoppers' chance
    agreement in one frame is not a crowd moving), and ends after
    ``min_duration_s`` without.
    People streaming past in one direction split half towards, half away
    from their mean, so ordinary flow never reaches the share.

    A person is counted once however many boxes the people finder cuts them
    into: moving boxes that overlap or touch (within ``touch`` of the
    smaller box's height) and move alike (velocities differing by at most
    ``same_motion`` of their mean speed) are one body, moving with their
    mean velocity from their mean position; ``min_people`` counts bodies. On real footage (UP-Fall) a single walker cut into a
    grid of tiles, and their reflection in a glass door, otherwise made
    eighteen "people" dispersing from their own middle.
    """

    kind = "crowd_movement"

    def __init__(self, scene: dict, min_people: int = 6, min_share: float = 0.7,
                 min_speed_m_s: float = 0.5, min_cosine: float = 0.5, window_s: float = 0.5,
                 min_duration_s: float = 0.5, touch: float = 0.05,
                 same_motion: float = 0.3, min_frames: int = 3):
        self.scene = scene
        self.min_people = min_people
        self.min_share = min_share
        self.min_speed_m_s = min_speed_m_s
        self.min_cosine = min_cosine
        self.window_s = window_s
        self.min_duration_s = min_duration_s
        self.touch = touch
        self.same_motion = same_motion
        self.min_frames = min_frames
        self.paths_ = Paths(keep_s=2 * window_s + 1)
        self.state_ = {"direction": None, "since": None, "frames": 0, "quiet_since": None, "active": None}

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        people = Objects.of(detections).people()
        self.paths_.add(time_s, people)
        ids, rows, vel = [], [], []
        for k, tid in enumerate(people.ids.tolist()):
            v = self.paths_.velocity(tid, self.window_s)
            if v is not None and math.hypot(*v) >= self.min_speed_m_s:
                ids.append(tid)
                rows.append(k)
                vel.append(v)
        direction, share, speed, n_bodies = None, 0.0, 0.0, 0
        if len(ids) >= self.min_people:
            moving, vel = people.take(np.asarray(rows, np.int64)), np.asarray(vel)
            bodies = self._bodies(moving, vel)
            n_bodies = len(bodies)
            pos = np.array([(moving.fx[b].mean(), moving.fy[b].mean()) for b in bodies])
            vel = np.array([vel[b].mean(0) for b in bodies])
        if n_bodies >= self.min_people:
            out = pos - pos.mean(0)
            cos = (out * vel).sum(1) / np.maximum(np.hypot(*out.T) * np.hypot(*vel.T), 1e-9)
            towards, away = (cos < -self.min_cosine).mean(), (cos > self.min_cosine).mean()
            share = max(towards, away)
            speed = float(np.hypot(*vel.T).mean())
            if share >= self.min_share:
                direction = "convergence" if towards > away else "dispersal"
        return self._episode(frame_index, time_s, direction, share, ids, speed, n_bodies)

    def _bodies(self, moving: Objects, vel: np.ndarray) -> list[np.ndarray]:
        """The moving boxes grouped into bodies: connected sets of boxes that overlap or touch and
        move alike (velocities within ``same_motion`` of their mean speed)."""
        x0, y0, x1, y1 = moving.x, moving.y, moving.x + moving.w, moving.y + moving.h
        gap = self.touch * np.minimum(moving.h[:, None], moving.h[None, :])
        touching = ((x0[:, None] <= x1[None, :] + gap) & (x0[None, :] <= x1[:, None] + gap)
                    & (y0[:, None] <= y1[None, :] + gap) & (y0[None, :] <= y1[:, None] + gap))
        speed = np.hypot(*vel.T)
        differ = np.hypot(*(vel[:, None, :] - vel[None, :, :]).transpose(2, 0, 1))
        alike = differ <= self.same_motion * 0.5 * (speed[:, None] + speed[None, :])
        _, label = connected_components(csr_matrix(touching & alike), directed=False)
        return [np.flatnonzero(label == k) for k in range(label.max() + 1)]

    def _episode(self, frame_index, time_s, direction, share, ids, speed, n_bodies=0) -> list[dict]:
        st = self.state_
        if direction is None:
            st["direction"] = st["since"] = None
            st["quiet_since"] = st["quiet_since"] if st["quiet_since"] is not None else time_s
            if st["active"] and time_s - st["quiet_since"] >= self.min_duration_s:
                st["active"] = None
            return []
        st["quiet_since"] = None
        if direction != st["direction"]:
            st["direction"], st["since"], st["frames"] = direction, time_s, 0
        st["frames"] += 1
        held = time_s - st["since"]
        if st["active"] == direction or held < self.min_duration_s or st["frames"] < self.min_frames:
            return []
        st["active"] = direction
        return [event(self.kind, frame_index, time_s, share, None, ids, held, direction=direction,
                       people_moving=len(ids), bodies_moving=n_bodies, share=round(float(share), 3),
                       mean_speed_m_s=round(speed, 2))]
