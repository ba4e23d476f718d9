"""Ground speed and image direction of each track, over a sliding window of about a second."""
from __future__ import annotations

from collections import defaultdict, deque

import numpy as np

from safecity.video.detect import PERSON_HEIGHT_M
from safecity.video.track import ground_points


class Motion:
    """Ground speed and image direction of each track, over a sliding window of about a second.

    Over a second rather than frame to frame, because a blob's box jitters by a
    pixel or two, a large share of a walker's step at 10 fps. Metres come from
    the scene's homography or ``pixels_per_metre``; a scene with neither is
    measured in people heights (``person_height(feet_row)`` pixels = 1.7 m),
    the scale the detector learns from the people it sees.
    """

    def __init__(self, scene: dict, window_s: float = 1.0, forget_s: float = 5.0, person_height=None):
        self.scene = scene
        self.window_s = window_s
        self.forget_s = forget_s
        self.person_height = person_height
        self._paths: dict[int, deque] = defaultdict(deque)
        self._metric = bool(scene.get("homography") or scene.get("image_to_ground") or scene.get("pixels_per_metre"))

    def update(self, time_s: float, track_ids: np.ndarray, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(speed m/s per box, unit direction per box in image axes); NaN speed without calibration."""
        n = len(track_ids)
        speed, direction = np.zeros(n), np.zeros((n, 2))
        if n:
            feet = np.c_[(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]].astype(float)
            if self._metric:
                ground = ground_points(feet, self.scene)
            elif self.person_height is not None:  # local metres: feet rows scaled by a person's height
                ground = feet / (np.asarray(self.person_height(feet[:, 1]), float)[:, None] / PERSON_HEIGHT_M)
            else:
                ground = feet
            for k, tid in enumerate(track_ids):
                path = self._paths[int(tid)]
                path.append((time_s, feet[k], ground[k]))
                while path and path[0][0] < time_s - self.window_s - 1e-9:
                    path.popleft()
                t0, f0, g0 = path[0]
                if time_s > t0:
                    speed[k] = float(np.hypot(*(ground[k] - g0))) / (time_s - t0)
                    d = feet[k] - f0
                    norm = float(np.hypot(*d))
                    direction[k] = d / norm if norm > 0 else 0.0
            if not self._metric and self.person_height is None:
                speed[:] = np.nan
        for tid in [t for t, p in self._paths.items() if p and p[-1][0] < time_s - self.forget_s]:
            del self._paths[tid]
        return speed, direction
