"""What an operator sees drawn on a (blurred) frame: zones, boxes with track ids, event names."""
from __future__ import annotations

import cv2
import numpy as np


def draw(image: np.ndarray, result, zones: dict) -> np.ndarray:
    """Zones, boxes with track ids, and the names of this frame's events, drawn in place."""
    for name, poly in zones.items():
        pts = np.round(poly).astype(np.int32)
        cv2.polylines(image, [pts], True, (0, 200, 255), 1)
        cv2.putText(image, name, tuple(int(v) for v in pts[0] + [3, 12]), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 200, 255), 1, cv2.LINE_AA)
    for r in result.tracks.itertuples(index=False):
        colour = (0, 255, 0) if r.cls == "person" else (255, 128, 0)
        p0, p1 = (int(r.x), int(r.y)), (int(r.x + r.w), int(r.y + r.h))
        cv2.rectangle(image, p0, p1, colour, 1)
        cv2.putText(image, str(r.track_id), (p0[0], max(10, p0[1] - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    colour, 1, cv2.LINE_AA)
    for k, ev in enumerate(result.events):
        cv2.putText(image, f"{ev.get('kind')} {ev.get('zone') or ''}", (5, 15 + 15 * k),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
    return image
