"""A fall: a person standing at a spot goes down quickly into a long, low shape that stays there."""
from __future__ import annotations

import math
from collections import deque

import cv2
import numpy as np

from safecity.video.detect import components
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
    (an upright person is about 0.4) and it is at least ``min_length_px``
    long. Down boxes are the tracked boxes and, given the foreground mask
    (``use_foreground``), its long low blobs: the people finder cuts a wide
    blob into person-wide boxes, so a body lying across the view is whole
    only in the mask. With ``require_upright`` (the default) a down box only
    counts where an upright person stood (feet within ``reach`` of their
    heights) in the last ``fall_window_s``, and only if it is at least
    ``min_length_ratio`` of that person's standing height long (lying, a body
    keeps its length; shorter is a fragment of someone walking behind, a bag,
    a flicker of the background) and, if ``max_height_ratio`` is set, no
    taller than that share of it. That is what tells a fall from a bench, a
    parked scooter or the pieces of people walking by. The spot, not the
    track id, links the two, because a tracker often gives the body on the
    ground a new id (and may call it an object: ``classes`` takes both).

    Given the mask, the upright people are its tall blobs (``mask_upright``;
    the finder cuts a near person into pieces, each shorter than they stood)
    and the tallest who stood at the spot sets the length a body needs, also
    while it lies still (a shape that shrinks below it is dropped). Low blobs
    are looked for in the mask's horizontal runs at least ``run_ratio`` of the
    tallest person seen lately long, so the ghost of where a near person stood,
    joined to their body on the floor, is left out; a blob over ``max_cover``
    of the view is a lighting change, not a body.

    A long low blob must be one body, not people standing side by side: people
    standing close (a crowd, a queue, a group by a fire) make a wide blob where
    a person stood, but the finder still sees each of them as a tall box. No
    alarm while upright people (boxes 1.5 times as tall as wide, at least half
    the blob's height) stand across ``max_standing_share`` of its width, and a
    body lying is at most ``max_height_ratio`` of the height the person stood.
    The hold needs ``still_s`` and at least ``min_frames`` frames, so a camera
    at 2 frames a second does not alarm on a chance pair of frames. Settings
    chosen on UP-Fall trial 1 and the scripted clips of seeds 0-9 only.
    """

    kind = "person_on_ground"

    def __init__(self, scene: dict, min_aspect: float = 1.3, still_s: float = 2.0,
                 still_m_s: float = 0.3, require_upright: bool = True, fall_window_s: float = 5.0,
                 reach: float = 1.0, classes=("person", "object"), max_height_ratio: float | None = 0.5,
                 min_length_ratio: float = 0.5, use_foreground: bool = True, blob_step: int = 4,
                 min_length_px: float = 24.0, mask_upright: bool = True, max_cover: float = 0.5,
                 run_ratio: float = 0.4, max_standing_share: float = 0.5, min_frames: int = 3):
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
        self.use_foreground = use_foreground
        self.blob_step = blob_step
        self.min_length_px = min_length_px
        self.mask_upright = mask_upright
        self.max_cover = max_cover
        self.run_ratio = run_ratio
        self.max_standing_share = max_standing_share
        self.min_frames = min_frames
        self.tall_ = []           # (x, y, w, h) of last frame's tall foreground blobs
        self.blobs_ = []          # (key, cx, cy, w) of last frame's long foreground blobs
        self.next_blob_ = 0
        self.upright_ = deque()   # (time_s, track_id, feet x, feet y, box_h) of upright people
        self.down_ = {}           # track_id -> [since_s, cx, cy, fired, the upright person seen there, frames still]
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
        candidates = list(zip(rows.ids.tolist(), rows.x.tolist(), rows.y.tolist(),
                              rows.w.tolist(), rows.h.tolist(), rows.person.tolist()))
        candidates += [(key, x, y, w, h, False) for key, (x, y, w, h) in self._long_blobs(foreground)]
        for x, y, w, h in self.tall_:
            self.upright_.append((time_s, None, x + w / 2, y + h, h))
        for tid, x, y, w, h, person in candidates:
            if person and h > 1.5 * w:
                if tid >= 0 and (foreground is None or not self.mask_upright):
                    self.upright_.append((time_s, tid, x + w / 2, y + h, h))
                self.down_.pop(tid, None)
                continue
            if w < self.min_aspect * h or w < self.min_length_px:
                self.down_.pop(tid, None)
                continue
            down = self.down_.get(tid)
            if down is None:
                stood = self._stood_here(x + w / 2, y + h, w, h)
                if self.require_upright and stood is None:
                    continue
                self.down_[tid] = [time_s, x + w / 2, y + h / 2, False, stood, 1]
                continue
            if down[4] is not None and w < self.min_length_ratio * down[4][4]:
                self.down_.pop(tid)  # shrunk: no longer a body's length for who stood there
                continue
            scale = PERSON_HEIGHT_M / max(w, 1.0)  # lying, the box's width is about a body's length
            if math.hypot(x + w / 2 - down[1], y + h / 2 - down[2]) * scale > self.still_m_s * self.still_s:
                down[0], down[1], down[2], down[5] = time_s, x + w / 2, y + h / 2, 1
                continue
            down[5] += 1
            lying = time_s - down[0]
            if not down[3] and lying >= self.still_s and down[5] >= self.min_frames \
                    and _standing_share(objects, x, y, w, h) < self.max_standing_share:
                down[3] = True
                if not self.episodes_.add(tid, time_s, x + w / 2, y + h, w):
                    continue
                stood = down[4]
                ids = [tid] + ([stood[1]] if stood is not None and stood[1] not in (None, tid) else [])
                aspect = w / max(h, 1.0)
                extra = {} if stood is None else {"stood_h": round(stood[4], 1), "stood_s": round(stood[0], 3)}
                found.append(event(self.kind, frame_index, time_s, min(1.0, aspect / 3), None,
                                    ids, lying, aspect=round(aspect, 2), fell_s=round(down[0], 3),
                                    box=[round(v, 1) for v in (x, y, w, h)], **extra))
        return found

    def _long_blobs(self, foreground) -> list[tuple[int, tuple]]:
        """The long, low foreground blobs (x, y, w, h), each keyed by a negative id that stays
        while the blob stays put, and (in ``tall_``) the tall ones, standing people.

        The people finder cuts a wide blob into person-wide boxes (people side by side), so
        a body lying across the view is only whole in the mask. Low blobs are looked for in
        the mask's horizontal runs at least ``run_ratio`` of the tallest person seen lately
        long: a body on the floor keeps its length, while the ghost of where a near person
        stood, joined to the body, is a narrow column those runs leave out."""
        if foreground is None or not self.use_foreground:
            return []
        step = self.blob_step
        small = np.ascontiguousarray(foreground[::step, ::step] > 0, np.uint8)
        self.tall_ = []
        if self.mask_upright:
            _, _, stats, _ = components(small)
            for x, y, w, h, area in stats[1:].tolist():
                # a tall blob is a standing person's silhouette (the finder may cut a near
                # person into pieces, each shorter than they stand)
                if h > 1.5 * w and h * step >= self.min_length_px and area >= 0.3 * w * h:
                    self.tall_.append((x * step, y * step, w * step, h * step))
        tallest = max((u[4] for u in self.upright_), default=0.0)
        run = max(self.min_length_px, self.run_ratio * tallest) / step
        if run >= 2:
            small = cv2.morphologyEx(small, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (round(run), 1)))
            # then rejoin the bands of one body that a row of background cut apart
            small = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, 3)))
        _, _, stats, _ = components(small)
        found, previous, self.blobs_, taken = [], self.blobs_, [], set()
        for x, y, w, h, area in stats[1:].tolist():
            if w < self.min_aspect * h or w * step < self.min_length_px or area < 0.3 * w * h \
                    or w * h > self.max_cover * small.size or h < 2:
                continue  # (one row of the grid is an edge that moved, a door frame: no body is so thin)
            box = (x * step, y * step, w * step, h * step)
            cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
            near = [(abs(cx - px) + abs(cy - py), k) for k, px, py, pw in previous
                    if abs(cx - px) <= 0.25 * pw and abs(cy - py) <= 0.25 * pw and k not in taken]
            key = min(near)[1] if near else None
            if key is None:
                self.next_blob_ -= 1
                key = self.next_blob_
            taken.add(key)
            self.blobs_.append((key, cx, cy, box[2]))
            found.append((key, box))
        kept = {k for k, _ in found}
        for key in [k for k in self.down_ if k < 0 and k not in kept]:
            del self.down_[key]  # that blob is gone (it moved, or the person got up)
        return found

    def _stood_here(self, fx, fy, w, h):
        """The tallest upright person (time_s, track_id, feet x, feet y, box_h) recently standing
        where this low box lies, if the box is low and long enough to be their body lying
        down, or None. The tallest, because a near person is often seen in pieces."""
        near = [stood for stood in self.upright_
                if abs(fx - stood[2]) <= self.reach * stood[4] and abs(fy - stood[3]) <= 0.5 * stood[4]]
        if not near:
            return None
        stood = max(near, key=lambda s: s[4])
        uh = stood[4]
        if (self.max_height_ratio is None or h <= self.max_height_ratio * uh) and w >= self.min_length_ratio * uh:
            return stood
        return None


def _standing_share(objects: Objects, x: float, y: float, w: float, h: float) -> float:
    """The share of a low box's width that upright people the finder sees stand across: people
    standing side by side make one long low blob where none is lying, and each of them is
    still a tall box (at least the low box's height) the tracker follows."""
    upright = (objects.person & (objects.h >= 1.5 * objects.w) & (objects.h >= 0.5 * h)
               & (objects.x < x + w) & (objects.x + objects.w > x)
               & (objects.y < y + h) & (objects.y + objects.h > y))
    if not upright.any():
        return 0.0
    spans = sorted(zip(np.maximum(objects.x[upright], x).tolist(),
                       np.minimum(objects.x[upright] + objects.w[upright], x + w).tolist()))
    covered, end = 0.0, x
    for a, b in spans:  # the length of the union of the spans
        a = max(a, end)
        if b > a:
            covered, end = covered + b - a, b
    return covered / max(w, 1.0)
