"""What an operator sees drawn on a (blurred) frame: zones, boxes with track ids, event names.

Drawn with supervision's annotators (one set per camera, built once). Drawing
comes after the blur (``CameraPipeline.display``): nothing drawn here can undo it.
"""
from __future__ import annotations

import cv2
import numpy as np
import supervision as sv

from safecity.video.track import class_names

#: Colours (RGB): zones amber, people green, objects blue, event names red.
ZONE_COLOUR = sv.Color(r=255, g=200, b=0)
CLASS_COLOURS = sv.ColorPalette([sv.Color(r=0, g=255, b=0), sv.Color(r=0, g=128, b=255)])
EVENT_COLOUR = sv.Color(r=255, g=0, b=0)


class Annotator:
    """Draws one camera's zones (with their names), tracked boxes labelled with their track id
    and class colour, and the names of the frame's events in the top-left corner."""

    def __init__(self, zones: dict[str, np.ndarray]):
        self.zones = {name: np.round(np.asarray(poly, float)).astype(np.int32) for name, poly in zones.items()}
        self.zone_annotators = [
            sv.PolygonZoneAnnotator(sv.PolygonZone(points), color=ZONE_COLOUR, thickness=1,
                                    display_in_zone_count=False)
            for points in self.zones.values()]
        self.boxes = sv.BoxAnnotator(color=CLASS_COLOURS, thickness=1, color_lookup=sv.ColorLookup.CLASS)
        self.labels = sv.LabelAnnotator(color=CLASS_COLOURS, color_lookup=sv.ColorLookup.CLASS,
                                        text_color=sv.Color.BLACK, text_scale=0.4, text_padding=2)

    def draw(self, image: np.ndarray, detections: sv.Detections, events: list[dict]) -> np.ndarray:
        """``image`` with zones, ``detections`` (tracked) and ``events`` drawn on it, in place."""
        for (name, points), zone in zip(self.zones.items(), self.zone_annotators):
            image = zone.annotate(image)
            cv2.putText(image, name, tuple(int(v) for v in points[0] + [3, 12]), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4, ZONE_COLOUR.as_bgr(), 1, cv2.LINE_AA)
        if len(detections):
            # colour by class: people (class 0) and objects (class 1) of the tracker
            shown = sv.Detections(xyxy=detections.xyxy, tracker_id=detections.tracker_id,
                                  class_id=(class_names(detections) != "person").astype(int))
            image = self.boxes.annotate(image, shown)
            image = self.labels.annotate(image, shown, labels=[str(t) for t in shown.tracker_id])
        for k, ev in enumerate(events):  # free text in a corner: no annotator fits, OpenCV draws it
            cv2.putText(image, f"{ev.get('kind')} {ev.get('zone') or ''}", (5, 15 + 15 * k),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, EVENT_COLOUR.as_bgr(), 1, cv2.LINE_AA)
        return image
