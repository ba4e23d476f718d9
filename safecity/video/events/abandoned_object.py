"""A new static object whose owner has walked away from it for its limit."""
from __future__ import annotations

import math

import cv2
import numpy as np

from safecity.video.events.common import (
    EventRule,
    Objects,
    Paths,
    event,
    median,
    metres_per_pixel,
)


class AbandonedObjectRule(EventRule):
    """A new static object whose owner has left it for ``limit_s``.

    Objects come from the tracker (``cls == 'object'``). An object counts as
    static when its feet point stays within ``still_px`` of where it was
    first seen for ``min_static_s``. Its owner is found by back-tracing: the
    person whose feet were within ``owner_reach`` of their own heights of
    the object's when it appeared (now, or in the last seconds of paths),
    the one who brought it. The object is abandoned once that owner has been
    seen more than ``away`` of their heights from it; the clock runs from
    then, and the alarm comes after ``limit_s`` of it. The owner coming back
    within ``away`` stops the clock, and so does anyone standing (slower
    than ``still_m_s``) within ``owner_radius_m``: whoever waits beside a bag
    attends it, while people walking past do not.

    Without an owner seen leaving there is no alarm. On real footage most
    static "objects" are not bags: the legs of someone sitting, a chair
    moved, a patch of a lighting change. The first have an owner who never
    walks away (the seated person fades into the background where they sit),
    the others no owner at all (nobody brought them), so neither is called
    abandoned. A bag left in pieces (a background model often cuts one
    object into several blobs) is one alarm: an object within ``same_place``
    owner heights of a place already alarmed on does not raise another.

    A static object must also be new: different from the street as it was.
    The rule keeps a second, slow background of its own (grey, at
    ``scene_scale`` of the frame, updated every ``scene_every_s`` seconds
    where the people finder sees no foreground, following the street over
    ``scene_s`` seconds), which does not learn a bag in seconds as the
    finder's model does. An object whose patch matches that background
    (normalised correlation ``min_match`` or more) is the same street lit
    differently (a flicker on a glass wall, a cloud) and is not watched.

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
                 min_match: float = 0.6, owner_reach: float = 1.0, away: float = 1.5,
                 same_place: float = 0.75, trace_s: float = 2.0, scene_s: float = 60.0,
                 scene_scale: float = 0.25, scene_every_s: float = 0.5):
        self.scene = scene
        self.limit_s = float(limit_s if limit_s is not None else scene.get("abandon_limit_s", 30.0))
        self.owner_radius_m = owner_radius_m
        self.still_m_s = still_m_s
        self.still_px = still_px
        self.min_static_s = min_static_s
        self.min_match = min_match
        self.owner_reach = owner_reach
        self.away = away
        self.same_place = same_place
        self.objects_ = {}   # track_id -> dict(first_s, x, y, box, patch, owner, owner_at, away_since, fired)
        self.alarmed_ = []   # (x, y, reach_px) of the places alarmed on
        self.scene_s = scene_s
        self.scene_scale = scene_scale
        self.scene_every_s = scene_every_s
        self.empty_ = None   # the slow background: the street without what came lately (grey, small)
        self._empty_t = None
        self.paths_ = Paths(keep_s=trace_s)

    @classmethod
    def from_config(cls, camera) -> AbandonedObjectRule:
        return cls(camera.scene(), limit_s=camera.abandon_limit_s)

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        self._learn_empty(time_s, image, foreground)
        everything = Objects.of(detections)
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
                                      "patch": None, "away_since": None, "fired": False,
                                      "owner": self._owner(fx, fy, people), "owner_at": None}
            elif (obj["patch"] is None and obj["owner"] is not None and image is not None
                  and time_s - obj["first_s"] >= self.min_static_s):
                obj["box"], obj["patch"] = (x, y, w, h), _patch(image, (x, y, w, h))
                obj["patch_std"] = _std(obj["patch"]) if obj["patch"] is not None else 0.0
                if obj["patch"] is not None and not self._new_here(image, obj["box"]):
                    obj["owner"] = None  # the street as it was, lit differently: nothing was left
        for tid in list(self.objects_):
            if tid not in seen and not self._still_there(self.objects_[tid], image, people):
                del self.objects_[tid]
        if not self.objects_:  # nothing left to watch: no need for anyone's speed
            return []
        mpp = metres_per_pixel(people.h)
        standing = np.array([self._standing(t) for t in people.ids.tolist()], bool)
        where = {t: k for k, t in enumerate(people.ids.tolist())}
        found = []
        for tid, obj in self.objects_.items():
            if obj["owner"] is None or time_s - obj["first_s"] < self.min_static_s:
                continue  # nobody brought it (kept, so that a passer-by is not taken for its owner)
            owner_h = self._follow_owner(obj, people, where)
            dist_m = np.hypot(people.fx - obj["x"], people.fy - obj["y"]) * mpp
            attended = bool(((dist_m <= self.owner_radius_m) & standing).any())
            if attended or not self._owner_away(obj):
                obj["away_since"] = None
                continue
            if obj["away_since"] is None:
                obj["away_since"] = time_s
            alone = time_s - obj["away_since"]
            if not obj["fired"] and alone >= self.limit_s:
                obj["fired"] = True
                if self._alarmed_here(obj["x"], obj["y"]):
                    continue  # another piece of an object already alarmed on
                self.alarmed_.append((obj["x"], obj["y"], self.same_place * owner_h))
                found.append(event(self.kind, frame_index, time_s, min(1.0, alone / (2 * self.limit_s)) + 0.5,
                                   None, [tid, obj["owner"]], time_s - obj["first_s"],
                                   unattended_s=round(alone, 2), limit_s=self.limit_s,
                                   position_px=[round(float(obj["x"]), 1), round(float(obj["y"]), 1)],
                                   tracked=tid in seen))
        return found

    def _learn_empty(self, time_s: float, image, foreground) -> None:
        """Every ``scene_every_s`` seconds, blend the frame's background pixels (not foreground)
        into a small grey image that follows the street over ``scene_s`` seconds: a
        second, slow background that does not learn a bag in the clip's first minute, as the
        people finder's model does in seconds (the classic dual-background method)."""
        if image is None or (self.empty_ is not None
                             and 0 <= time_s - self._empty_t < self.scene_every_s - 1e-6):
            return
        small = self._small(image)
        if self.empty_ is None:
            self.empty_, self._empty_t = small, time_s
            return
        rate = min(1.0, max(time_s - self._empty_t, 0.0) / self.scene_s)
        self._empty_t = time_s
        mask = None
        if foreground is not None:
            mask = cv2.resize(foreground, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
            mask = cv2.bitwise_not(mask)
        cv2.accumulateWeighted(small, self.empty_, rate, mask)

    def _small(self, image: np.ndarray) -> np.ndarray:
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape[:2]
        size = (max(1, round(w * self.scene_scale)), max(1, round(h * self.scene_scale)))
        return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)

    def _new_here(self, image: np.ndarray, box) -> bool:
        """Does the frame differ, in ``box``, from the slow background? Not when the patch
        matches it as well as an object still there matches itself (``min_match``): a change
        of light over the same texture. Flat patches compare by mean grey level."""
        if self.empty_ is None:
            return True
        s = self.scene_scale
        x, y, w, h = box
        x0, y0 = max(int(x * s) - 1, 0), max(int(y * s) - 1, 0)
        x1 = min(math.ceil((x + w) * s) + 1, self.empty_.shape[1])
        y1 = min(math.ceil((y + h) * s) + 1, self.empty_.shape[0])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return True
        now = self._small(image)[y0:y1, x0:x1]
        before = self.empty_[y0:y1, x0:x1]
        if _std(now) < 2 or _std(before) < 2:
            return abs(float(now.mean()) - float(before.mean())) > 20
        return float(cv2.matchTemplate(now, before, cv2.TM_CCOEFF_NORMED)[0, 0]) < self.min_match

    def _owner(self, fx: float, fy: float, people: Objects):
        """Back-tracing: the person whose feet are nearest the object's (in their own heights,
        within ``owner_reach``) now, else in the last ``trace_s`` seconds, or None."""
        if len(people):
            d = np.hypot(people.fx - fx, people.fy - fy) / np.maximum(people.h, 1.0)
            k = int(np.argmin(d))
            if d[k] <= self.owner_reach:
                return int(people.ids[k])
        best, best_d = None, self.owner_reach
        for tid, rows in self.paths_.rows.items():
            for _, px, py, _, ph in rows:
                d = math.hypot(px - fx, py - fy) / max(ph, 1.0)
                if d <= best_d:
                    best, best_d = tid, d
        return best

    def _follow_owner(self, obj: dict, people: Objects, where: dict) -> float:
        """Note where the owner is (or was last seen); return their height in pixels."""
        k = where.get(obj["owner"])
        if k is not None:
            rows = self.paths_.rows.get(obj["owner"])
            h = median([r[4] for r in rows]) if rows else float(people.h[k])
            obj["owner_at"] = (float(people.fx[k]), float(people.fy[k]), h)
        return obj["owner_at"][2] if obj["owner_at"] else 60.0

    def _owner_away(self, obj: dict) -> bool:
        """The owner was last seen more than ``away`` of their heights from the object: walking
        off, or gone out of view from there (one lost beside it has not left)."""
        if obj["owner_at"] is None:
            return False
        ox, oy, h = obj["owner_at"]
        return math.hypot(ox - obj["x"], oy - obj["y"]) > self.away * max(h, 1.0)

    def _alarmed_here(self, x: float, y: float) -> bool:
        return any(math.hypot(x - ax, y - ay) <= r for ax, ay, r in self.alarmed_)

    def _standing(self, track_id) -> bool:
        speed = self.paths_.speed(track_id, 1.0)
        return speed is None or speed <= self.still_m_s

    def _still_there(self, obj, image, people: Objects) -> bool:
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
    x, y, w, h = (round(v) for v in box)
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
