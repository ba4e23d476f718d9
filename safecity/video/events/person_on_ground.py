"""A fall: a person standing at a spot goes down quickly into a long, low shape that stays there."""
from __future__ import annotations

import math
from collections import deque

from safecity.video.events.common import (
    PERSON_HEIGHT_M,
    Episodes,
    EventRule,
    Objects,
    event,
)


class PersonOnGroundRule(EventRule):
    """A fall: a person stood at a spot, then within ``fall_window_s`` a long, low shape lies
    there and stays still for ``still_s``.

    A box is "down" when its width exceeds ``min_aspect`` times its height
    (an upright person is about 0.4). With ``require_upright`` (the default)
    a down box only counts where an upright person stood (feet within
    ``reach`` of their heights) in the last ``fall_window_s``, and only if it
    has that person's proportions lying down: no taller than
    ``max_height_ratio`` of their standing height (a seated person keeps about
    half of it, and a box of aspect near 1) and at least ``min_length_ratio``
    of it long (a body's length; shorter is a fragment of someone, a bag, a
    background patch). That is what tells a fall from a bench, someone
    sitting, a parked scooter or the pieces of a person walking behind. The
    spot, not the track id, links the two, because a tracker often gives the
    body on the ground a new id (and may call it an object: ``classes`` takes
    both).
    """

    kind = "person_on_ground"

    def __init__(self, scene: dict, min_aspect: float = 1.3, still_s: float = 2.0,
                 still_m_s: float = 0.3, require_upright: bool = True, fall_window_s: float = 5.0,
                 reach: float = 1.0, classes=("person", "object"), max_height_ratio: float = 0.6,
                 min_length_ratio: float = 0.0):
        self.scene = scene
        self.min_aspect = min_aspect
        self.still_s = still_s
        self.still_m_s = still_m_s
        self.require_upright = require_upright
        self.fall_window_s = fall_window_s
        self.reach = reach
        self.classes = classes
        self.max_height_ratio = max_height_ratio
        self.min_length_ratio = min_length_ratio
        self.upright_ = deque()   # (time_s, track_id, feet x, feet y, box_h) of upright people
        self.down_ = {}           # track_id -> [since_s, cx, cy, fired, the upright person seen there]
        self.episodes_ = Episodes(gap_s=fall_window_s)

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        objects = Objects.of(detections)
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
            down = self.down_.get(tid)
            if down is None:
                stood = self._stood_here(x + w / 2, y + h, w, h)
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
                stood = down[4]
                ids = [tid] + ([stood[1]] if stood is not None and stood[1] != tid else [])
                aspect = w / max(h, 1.0)
                extra = {} if stood is None else {"stood_h": round(stood[4], 1), "stood_s": round(stood[0], 3)}
                found.append(event(self.kind, frame_index, time_s, min(1.0, aspect / 3), None,
                                    ids, lying, aspect=round(aspect, 2), fell_s=round(down[0], 3),
                                    box=[round(v, 1) for v in (x, y, w, h)], **extra))
        return found

    def _stood_here(self, fx, fy, w, h):
        """The upright person (time_s, track_id, feet x, feet y, box_h) recently standing where
        this low box lies, whose body it could be lying down (low and long enough for their
        height), or None."""
        for stood in reversed(self.upright_):
            t, tid, ux, uy, uh = stood
            if abs(fx - ux) <= self.reach * uh and abs(fy - uy) <= 0.5 * uh \
                    and h <= self.max_height_ratio * uh and w >= self.min_length_ratio * uh:
                return stood
        return None
