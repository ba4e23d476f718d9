"""Flames from the pixels: fire colours that flicker in place, grow and persist; steady lights
and reflections are told apart."""
from __future__ import annotations

import math
from collections import deque

import cv2
import numpy as np

from safecity.video.detect import components, shrunk
from safecity.video.events.common import EventRule, event


class FireRule(EventRule):
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
    Flickering pixels are grouped into blobs; a blob of ``min_area_px`` (at
    480 px wide) is a candidate when, over the window,

    * its flame-coloured pixel count changes from frame to frame (by a median
      of at least ``min_variation`` of its mean): flames' tongues come and
      go, while a steady light (a lamp, a lit sign; switching on is a single
      step) only toggles pixels near the colour threshold at random, a nearly
      constant count;
    * at least ``min_core`` of it has been yellow-white (green >= ``core_green``
      beside the bright red): a flame has a hot core; a reflection (a lamp
      on a wet floor or a window, a sunset on glass) and a light seen through
      tinted glass are orange or red only.

    The alarm needs a candidate held for ``min_duration_s`` that has grown
    to ``min_growth`` times its first area (a fire starting), or held for
    ``steady_fire_s``. A frame that looks steady or core-less neither raises
    nor ends an episode (flames have such frames). Growth is weak evidence
    alone: any flickering blob grows while the window fills after it
    appears; the two checks above are what reject lights and reflections.
    A fire already burning in the first frame is mostly taken for paint
    (only its flickering fringe counts). The evidence is reported. The colours are judged on the frame
    scaled to ``work_width`` pixels wide. Windows are in the frames' seconds, whatever the
    camera's frame rate, and a window of under ``min_frames`` frames decides nothing.
    """

    kind = "fire"

    def __init__(self, scene: dict, min_red: int = 220, min_saturation: float = 0.55,
                 window_s: float = 2.0, min_switches: int = 3, min_presence: float = 0.3,
                 min_area_px: int = 150,
                 min_duration_s: float = 1.0, paint_s: float = 10.0, paint_share: float = 0.8,
                 work_width: int = 240, min_variation: float = 0.08, core_green: int = 180,
                 min_core: float = 0.1, min_growth: float = 1.5, steady_fire_s: float = 5.0,
                 min_frames: int = 3):
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
        self.min_variation = min_variation
        self.core_green = core_green
        self.min_core = min_core
        self.min_growth = min_growth
        self.steady_fire_s = steady_fire_s
        self.min_frames = min_frames
        # the window's frames, by their time: the rule counts seconds, whatever the frame rate
        self.times_ = deque()
        self.switches_ = deque()
        self.masks_ = deque()
        self.hot_ = deque()   # yellow-white pixels of each frame
        self.last_mask_ = None
        self.count_ = None
        self.since_ = None
        self.first_area_ = None
        self.active_ = False

    def flame_mask(self, image: np.ndarray) -> np.ndarray:
        """Boolean mask of flame-coloured pixels (of a BGR image)."""
        return self._flame(image).view(bool)

    def _hot(self, image: np.ndarray, flame: np.ndarray) -> np.ndarray:
        """Of the flame-coloured pixels (0/1 ``uint8``), those yellow-white: a flame's hot core."""
        if not cv2.countNonZero(flame):
            return np.zeros_like(flame)
        return cv2.compare(cv2.extractChannel(image, 1), float(self.core_green), cv2.CMP_GE) & flame

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

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        if image is None:
            return []
        # Colours are judged at ``work_width`` (a quarter of the pixels of a 480 px frame: the
        # flicker of a fire spans many of them); areas are reported as if at 480 px wide.
        scale = min(1.0, self.work_width / image.shape[1])
        unit = scale * image.shape[1] / 480.0   # working pixels per pixel of a 480 px wide frame
        small = shrunk(image, scale)  # the pipeline's frame carries it already at 480 px
        flame = self._flame(small)
        mask = flame.view(bool)
        if self.last_mask_ is None or self.last_mask_.shape != mask.shape:
            self.last_mask_, self.count_ = mask, np.zeros(mask.shape, np.int16)
            self.paint_ = mask.astype(np.float32)
            self.is_paint_ = mask.copy()
            self.times_.clear()
            self.masks_.clear()
            self.presence_ = np.zeros(mask.shape, np.int16)
            self.switches_.clear()
            self.hot_.clear()
            self.first_t_ = self.last_t_ = time_s
            side = max(1, round(5 * unit)) | 1  # the 5 px closing of a 480 px frame, odd
            self.kernel_ = np.ones((side, side), np.uint8)
            return []
        # The running counts over the window's seconds with OpenCV's arithmetic on the 0/1 masks:
        # the same integers as numpy's, without its casts from uint8 to int16 (the cost halves).
        while self.times_ and self.times_[0] <= time_s - self.window_s + 1e-6:
            self.times_.popleft()
            cv2.subtract(self.count_, self.switches_.popleft(), dst=self.count_, dtype=cv2.CV_16S)
            cv2.subtract(self.presence_, self.masks_.popleft(), dst=self.presence_, dtype=cv2.CV_16S)
            self.hot_.popleft()
        self.times_.append(time_s)
        self.masks_.append(flame)
        self.hot_.append(self._hot(small, flame))
        cv2.add(self.presence_, flame, dst=self.presence_, dtype=cv2.CV_16S)
        switch = cv2.bitwise_xor(flame, self.last_mask_.view(np.uint8))  # 1 where it changed
        self.switches_.append(switch)
        cv2.add(self.count_, switch, dst=self.count_, dtype=cv2.CV_16S)
        self.last_mask_ = mask
        step = min(max(time_s - self.last_t_, 0.0), self.paint_s)  # this frame's share of paint_s
        self.last_t_ = time_s
        cv2.accumulateWeighted(flame, self.paint_, step / self.paint_s)
        self.is_paint_ |= self.paint_ >= self.paint_share  # once paint, always paint
        if time_s - self.first_t_ < self.window_s - 1e-6 or len(self.times_) < self.min_frames:
            return []  # the window is not yet full, or too few frames to see a flicker
        # counts are whole: ``count >= t`` is ``count >= ceil(t)``, a threshold OpenCV keeps exact
        flicker = cv2.compare(self.count_, float(math.ceil(self.min_switches)), cv2.CMP_GE)
        flicker &= cv2.compare(self.presence_, float(math.ceil(self.min_presence * len(self.masks_))),
                               cv2.CMP_GE)
        flicker &= cv2.compare(self.is_paint_.view(np.uint8), 0.0, cv2.CMP_EQ)
        min_area = self.min_area_px * unit * unit
        candidates = cv2.countNonZero(flicker)
        if candidates * self.kernel_.size < min_area:
            # a closing grows a set at most kernel-size times: no blob can reach the minimum
            return self._quiet(candidates > 0)
        flicker = cv2.morphologyEx(flicker, cv2.MORPH_CLOSE, self.kernel_)
        n, labels, stats, _ = components(flicker)
        area = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
        if area < min_area:
            return self._quiet(area > 0)
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        variation, core = self._evidence(labels == k, stats[k])
        steady_or_reflection = variation < self.min_variation or core < self.min_core
        if self.since_ is None:
            if steady_or_reflection:
                return []  # not a fire (yet): the episode starts with the first frame that looks one
            self.since_, self.first_area_ = time_s, area
        elif steady_or_reflection:
            return []  # a frame of a flame can look steady: it neither raises nor ends the episode
        held, growth = time_s - self.since_, area / max(self.first_area_, 1)
        if self.active_ or held < self.min_duration_s or (growth < self.min_growth
                                                           and held < self.steady_fire_s):
            return []
        self.active_ = True
        x, y, w, h = (int(stats[k, c] / scale) for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                          cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        return [event(self.kind, frame_index, time_s, min(1.0, area / (4 * min_area)), None, [],
                       held, area_px=round(area / (unit * unit)), growth=round(growth, 2),
                       variation=round(variation, 3), core=round(core, 3), box_px=[x, y, w, h])]

    def _evidence(self, blob: np.ndarray, stat) -> tuple[float, float]:
        """Over the window, the median change of the blob's flame-coloured pixel count from one frame
        to the next (a share of its mean count),
        and the share of the blob that was yellow-white at least once."""
        x, y, w, h = (int(stat[c]) for c in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                             cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
        inside = blob[y:y + h, x:x + w]
        counts = np.array([np.count_nonzero(m[y:y + h, x:x + w][inside]) for m in self.masks_], float)
        hot = np.zeros(inside.shape, bool)
        for m in self.hot_:
            hot |= m[y:y + h, x:x + w].view(bool)
        # the typical change from one frame to the next: a light switched on is one step, not many
        variation = float(np.median(np.abs(np.diff(counts))) / counts.mean()) if counts.mean() > 0 else 0.0
        return variation, float(np.count_nonzero(hot & inside) / max(np.count_nonzero(inside), 1))

    def _quiet(self, flickering: bool) -> list:
        """No blob big enough: the episode ends once nothing flickers any more."""
        self.since_ = None
        self.active_ = self.active_ and flickering
        return []
