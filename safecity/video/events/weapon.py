"""The weapons plug-in point: a user's own ONNX model; none ships."""
from __future__ import annotations

import os
from pathlib import Path

from safecity.video.events.common import EventRule, event


class WeaponRule(EventRule):
    """The weapons plug-in point: a user's own ONNX model run through ``cv2.dnn``; none ships.

    safecity does not ship, train or recommend a weapon model; an
    installation that has one (and the legal basis to use it) passes its
    path. Building without one fails with a message saying so. Detections of
    the classes in ``weapon_classes`` over ``min_confidence`` become
    ``weapon`` events (one per frame in which they are seen: there are no
    weapon tracks).
    """

    kind = "weapon"

    def __init__(self, scene: dict, model_path: str | os.PathLike | None = None,
                 classes: tuple[str, ...] = ("weapon",), weapon_classes=None,
                 min_confidence: float = 0.5, input_size=(640, 640)):
        self.scene = scene
        self.model_path = model_path
        self.classes = tuple(classes)
        self.weapon_classes = tuple(weapon_classes or classes)
        self.min_confidence = min_confidence
        self.input_size = input_size
        if model_path is None:
            raise ValueError("WeaponRule needs model_path: no weapon model ships with safecity; "
                             "pass the path of your own ONNX detection model (see safecity.video.detect."
                             "OnnxFinder for the input and output it must have)")
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"weapon model {model_path}: no such file")
        from safecity.video.detect import OnnxFinder

        self.model_ = OnnxFinder(model_path, input_size=input_size, classes=self.classes,
                                   confidence=min_confidence, kind="weapons")

    @classmethod
    def from_config(cls, camera) -> WeaponRule:
        """The camera's first plug-in of kind ``weapon...`` (validation makes sure there is one
        when the camera lists ``weapon``)."""
        plugin = next((p for p in camera.plugins if p.kind.startswith("weapon")), None)
        if plugin is None:
            return cls(camera.scene())  # refused with the message that no model ships
        return cls(camera.scene(), model_path=plugin.path, classes=tuple(plugin.classes),
                   input_size=tuple(plugin.input_size), min_confidence=plugin.confidence)

    def update(self, frame_index, time_s, image=None, detections=None, foreground=None) -> list[dict]:
        if image is None:
            return []
        det = self.model_.detect(image)
        names = det.data.get("class_name", [None] * len(det))
        return [event(self.kind, frame_index, time_s, float(c), None, [], 0.0, class_name=str(n),
                       box_px=[round(float(v), 1) for v in box])
                for box, c, n in zip(det.xyxy, det.confidence, names)
                if n in self.weapon_classes and c >= self.min_confidence]
