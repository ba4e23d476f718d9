"""People per square metre in a zone over its limit."""
from __future__ import annotations

import math
from collections import defaultdict, deque

import cv2
import numpy as np
import shapely

from safecity.video.events.common import (
    EventRule,
    Objects,
    event,
    median,
    zone_polygons,
)


class ExcessiveDensityRule(EventRule):
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
        self.polygons_ = zone_polygons(scene, names)
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

    @classmethod
    def from_config(cls, camera) -> ExcessiveDensityRule:
        return cls(camera.scene(), limit_per_m2=camera.density_limit_per_m2, max_people=dict(camera.max_people))

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        if not self.polygons_:
            return []
        people = Objects.of(detections).people()
        estimate = self._pixel_counts(frame_index, people, foreground) if self.use_foreground else {}
        found = []
        for zone, poly in self.polygons_.items():
            inside = shapely.contains_xy(poly, people.fx, people.fy) if len(people) else np.zeros(0, bool)
            tracked = int(inside.sum())
            q = self.counts_[zone]
            q.append((time_s, max(tracked, estimate.get(zone, 0.0))))
            while q[0][0] < time_s - self.smooth_s:
                q.popleft()
            count = float(median([c for _, c in q]))
            st, limit = self.state_[zone], self.limit(zone)
            if count > limit:
                st["under_since"] = None
                st["over_since"] = st["over_since"] if st["over_since"] is not None else time_s
                held = time_s - st["over_since"]
                if not st["active"] and held >= self.min_duration_s:
                    st["active"] = True
                    found.append(event(self.kind, frame_index, time_s, min(1.0, count / (2 * limit)) + 0.5,
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

    def _learn(self, people: Objects, foreground: np.ndarray) -> None:
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
        # The line is only known over the rows people were seen on: beyond them it is kept within
        # half the shortest and twice the tallest seen. A first fit on a few dozen boxes of one
        # band of rows went below zero a third of the way up the view, and a handful of pixels
        # there counted as 150 people (a scripted fall, seed 2).
        low, high = 0.5 * float(np.percentile(h, 5)), 2.0 * float(np.percentile(h, 95))
        height = np.clip(intercept + slope * rows, max(low, 4.0), max(high, 4.0))
        height = np.clip(intercept + slope * (rows + height / 2), max(low, 4.0), max(high, 4.0))  # a body pixel is above its feet
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
