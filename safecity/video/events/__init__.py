"""Event detectors: the situations the law lets a camera flag, found in tracks and pixels.

One module and one small class per kind (loitering, forbidden_zone, wrong_way,
person_on_ground, abandoned_object, excessive_density, crowd_movement, fire;
repeated_presence, opt-in; weapon, a plug-in point), each fed frame by frame
through the same method::

    found = detector.update(frame_index, time_s, image, tracks, foreground)

where ``tracks`` holds the objects tracked in this frame (the package contract:
``frame, time_s, track_id, x, y, w, h, cls, confidence``). A detector returns
one dict per *episode*, when the situation starts to hold (a person who has
loitered for ten minutes is one alarm, not six thousand), with ``kind, frame,
time_s, score, zone, track_ids, duration_s`` and evidence fields. Settings
default from the camera's ``scene`` (``safecity.sim.clips.scene_for``
has the shape); every one is a plain ``__init__`` argument so a notebook can
tune them. ``DETECTORS`` is the registry (kind -> class), built from
``safecity.config.event_kinds``; ``to_event_rows`` (``rows``) turns what was
found into ``events`` rows; ``safecity.evaluation.video_events`` measures
precision and recall on the scripted clips.

Weapons are only a plug-in point (``WeaponDetector``): no model ships.
"""
from __future__ import annotations

from safecity.config.event_kinds import CAMERA_KINDS, DEFAULT_CAMERA_KINDS
from safecity.video.events.abandoned_object import AbandonedObjectDetector
from safecity.video.events.crowd_movement import CrowdMovementDetector
from safecity.video.events.excessive_density import ExcessiveDensityDetector
from safecity.video.events.fire import FireDetector
from safecity.video.events.forbidden_zone import ForbiddenZoneDetector
from safecity.video.events.loitering import LoiteringDetector
from safecity.video.events.person_on_ground import PersonOnGroundDetector
from safecity.video.events.repeated_presence import RepeatedPresence
from safecity.video.events.rows import to_event_rows
from safecity.video.events.weapon import WeaponDetector
from safecity.video.events.wrong_way import WrongWayDetector

#: The kinds ``make_detectors`` builds by default (repeated presence is opt-in, weapons need a user's model).
KINDS = DEFAULT_CAMERA_KINDS

_CLASSES = (LoiteringDetector, ForbiddenZoneDetector, WrongWayDetector, PersonOnGroundDetector,
            AbandonedObjectDetector, ExcessiveDensityDetector, CrowdMovementDetector, FireDetector,
            RepeatedPresence, WeaponDetector)

#: Camera kind -> its detector class, in the order of the registry of kinds.
DETECTORS = {kind: next(c for c in _CLASSES if c.kind == kind) for kind in CAMERA_KINDS}

#: Built by the pipeline itself, when the camera opts in (its enabling is audited).
OPT_IN_BY_PIPELINE = ("repeated_presence",)


def make_detectors(scene: dict, kinds=None, **options) -> list:
    """One detector per kind, set from the scene; ``options[kind]`` (a dict) overrides settings.

    ``kinds`` defaults to the scene's ``detectors`` list (a camera's YAML)
    or ``KINDS``; kinds that other modules handle (``repeated_presence``) are
    left out. ``weapon`` is built only from a plug-in of kind ``weapon...``
    in ``scene['plugins']`` (or ``options['weapon']['model_path']``).
    """
    asked = list(kinds if kinds is not None else scene.get("detectors") or KINDS)
    unknown = [k for k in asked if k not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown event kind {unknown}; choose from {', '.join(DETECTORS)}")
    built = []
    for kind in asked:
        if kind in OPT_IN_BY_PIPELINE:
            continue
        settings = dict(options.get(kind, {}))
        if kind == "weapon" and "model_path" not in settings:
            plugin = next((p for p in scene.get("plugins") or [] if str(p.get("kind", "")).startswith("weapon")),
                          None)
            if plugin is not None:
                settings.update(model_path=plugin["path"], classes=tuple(plugin.get("classes", ("weapon",))),
                                input_size=tuple(plugin.get("input_size", (640, 640))),
                                min_confidence=plugin.get("confidence", 0.5))
        built.append(DETECTORS[kind](scene, **settings))
    return built


__all__ = ["DETECTORS", "KINDS", "make_detectors", "to_event_rows", *(c.__name__ for c in _CLASSES)]
