"""A camera's own health from its pixels: a frozen picture, a covered lens, a moved camera.

A camera that stops seeing is the first thing an operator must know, and a
health table nobody looks at does not tell them: ``CameraHealthCheck`` raises
``camera_frozen`` and ``camera_tampered`` events that go, like every other
event, to the store and the incident queue. (``camera_offline``, no frame at all,
is known only where the frames should come from: the camera runner.)

Two cheap samples of the frame are judged:

- *frozen*, every frame, on a 64 x 48 grey sample of nearest pixels (a few
  microseconds): the sample is the same as the previous frame's (fewer than
  ``frozen_share`` of its pixels moved by more than ``frozen_tolerance`` grey
  levels) for ``frozen_s`` seconds while frames keep arriving. Sensor noise
  moves many pixels of a live picture, even of an empty street; a stuck encoder
  or a player repeating its last frame moves none;
- *tampered*, every ``check_every_s`` seconds, on a 48 x 36 grey sample of
  averaged pixels against the learned view: *covered* when the picture lost its
  texture (its grey levels vary by less than ``covered_std``, where the learned
  view's varied by more than twice that: a hand, a cloth, paint, a torch in the
  lens); *moved* when the picture best matches the learned view shifted by
  ``min_shift`` or more of its width (normalised cross-correlation of its centre
  over shifts of up to ``max_shift``: people walking by, lights and clouds leave
  the best match where it was; a camera turned or pushed moves it).

A tampering must hold ``tampered_s`` seconds (every check in that time agreeing).
The learned view is a running mean over ``background_s`` seconds, paused while an
episode lasts; a view moved for longer than ``relearn_s`` is taken as the new
normal (a camera turned on purpose stops alarming). One event per episode, as the
event rules do; the camera's first ``warmup_s`` seconds are learned, not judged,
so a camera that starts covered is not noticed (it never had a view to lose).
"""
from __future__ import annotations

import cv2
import numpy as np

from safecity.video.events.common import event

#: The samples' sizes (width, height) in pixels: nearest pixels for frozen, averaged for tampered.
STILL_SAMPLE = (64, 48)
VIEW_SAMPLE = (48, 36)


class CameraHealthCheck:
    """Frozen, covered or moved camera, frame by frame (``update`` as an event rule's)."""

    def __init__(self, frozen_s: float = 10.0, frozen_tolerance: float = 2.0,
                 frozen_share: float = 0.002, tampered_s: float = 3.0, check_every_s: float = 0.5,
                 covered_std: float = 4.0, min_shift: float = 0.04, max_shift: float = 0.125,
                 background_s: float = 30.0, relearn_s: float = 60.0, warmup_s: float = 5.0):
        self.frozen_s = frozen_s
        self.frozen_tolerance = frozen_tolerance
        self.frozen_share = frozen_share
        self.tampered_s = tampered_s
        self.check_every_s = check_every_s
        self.covered_std = covered_std
        self.min_shift = min_shift
        self.max_shift = max_shift
        self.background_s = background_s
        self.relearn_s = relearn_s
        self.warmup_s = warmup_s
        self.restart()

    def restart(self) -> None:
        """Forget the picture (a reopened source, a looped clip): start learning afresh."""
        self.previous_ = self.background_ = None
        self.started_ = self.last_time_ = self.checked_ = None
        self.seen_ = 0
        self.frozen_since_ = self.tampered_since_ = None
        self.frozen_alarmed_ = self.tampered_alarmed_ = False

    # ------------------------------------------------------------------ measures

    @staticmethod
    def still_sample(image: np.ndarray) -> np.ndarray:
        """The frozen check's grey sample (nearest pixels: the noise is kept, few pixels are read)."""
        small = cv2.resize(image, STILL_SAMPLE, interpolation=cv2.INTER_NEAREST)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small

    @staticmethod
    def view_sample(image: np.ndarray) -> np.ndarray:
        """The tamper checks' grey sample (averaged pixels: the view without its noise)."""
        small = cv2.resize(image, VIEW_SAMPLE, interpolation=cv2.INTER_AREA)
        small = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        return small.astype(np.float32)

    def still(self, sample: np.ndarray) -> bool:
        """True when ``sample`` is (nearly) the previous frame's."""
        if self.previous_ is None or self.previous_.shape != sample.shape:
            return False
        moved = cv2.absdiff(sample, self.previous_) > self.frozen_tolerance
        return np.count_nonzero(moved) < self.frozen_share * moved.size

    def tamper_cause(self, view: np.ndarray) -> tuple[str | None, float]:
        """``("covered" | "moved" | None, score)`` of a view sample against the learned view."""
        bg = self.background_
        bg_std = float(cv2.meanStdDev(bg)[1][0, 0])
        std = float(cv2.meanStdDev(view)[1][0, 0])
        if std < self.covered_std:
            return ("covered", 1.0 - std / bg_std) if bg_std > 2 * self.covered_std else (None, 0.0)
        r = max(1, round(self.max_shift * view.shape[1]))
        match = cv2.matchTemplate(bg, view[r:-r, r:-r], cv2.TM_CCOEFF_NORMED)
        _, best, _, (x, y) = cv2.minMaxLoc(match)
        shift = max(abs(x - r), abs(y - r)) / view.shape[1]
        if shift < self.min_shift:
            return None, 0.0
        return "moved", min(1.0, shift / (2 * self.min_shift)) * max(0.0, best)

    # ------------------------------------------------------------------ one frame

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        """Events (``camera_frozen``, ``camera_tampered``) that start on this frame."""
        if image is None:
            return []
        if self.last_time_ is not None and time_s < self.last_time_:
            self.restart()
        if self.started_ is None:
            self.started_ = time_s
        sample = self.still_sample(image)
        found = self._frozen(frame_index, time_s, self.still(sample))
        if self.checked_ is None or time_s - self.checked_ >= self.check_every_s:
            found += self._tampered(frame_index, time_s, self.view_sample(image))
            self.checked_ = time_s
        self.previous_, self.last_time_ = sample, time_s
        return found

    def _frozen(self, frame_index, time_s, still: bool) -> list[dict]:
        if not still:
            self.frozen_since_, self.frozen_alarmed_ = None, False
            return []
        if self.frozen_since_ is None:  # the previous frame is the first of the stretch
            self.frozen_since_ = self.last_time_
        held = time_s - self.frozen_since_
        if self.frozen_alarmed_ or held < self.frozen_s:
            return []
        self.frozen_alarmed_ = True
        return [event("camera_frozen", frame_index, time_s, 1.0, None, [], held,
                      since_s=round(float(self.frozen_since_), 3))]

    def _tampered(self, frame_index, time_s, view: np.ndarray) -> list[dict]:
        warming = time_s - self.started_ < self.warmup_s
        if self.background_ is None or self.background_.shape != view.shape:
            self.background_, self.seen_ = view.copy(), 1
            return []
        cause, score = (None, 0.0) if warming else self.tamper_cause(view)
        if cause is None:
            self.tampered_since_, self.tampered_alarmed_ = None, False
            if warming:  # the first seconds' mean
                self.seen_ += 1
                alpha = 1.0 / self.seen_
            else:  # then a running mean over about ``background_s``
                alpha = min(1.0, max(0.0, time_s - self.checked_) / self.background_s)
            cv2.accumulateWeighted(view, self.background_, alpha)
            return []
        if self.tampered_since_ is None:
            self.tampered_since_ = time_s
        held = time_s - self.tampered_since_
        if held >= self.relearn_s and cause == "moved":  # the new view is the view now
            self.background_ = view.copy()
            self.tampered_since_, self.tampered_alarmed_ = None, False
            return []
        if self.tampered_alarmed_ or held < self.tampered_s:
            return []
        self.tampered_alarmed_ = True
        return [event("camera_tampered", frame_index, time_s, score, None, [], held, cause=cause,
                      since_s=round(float(self.tampered_since_), 3))]


__all__ = ["CameraHealthCheck"]
