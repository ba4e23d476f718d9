"""Event rules: the situations the law lets a camera flag, found in tracks and pixels.

One module and one small class per kind (loitering, forbidden_zone, wrong_way,
person_on_ground, abandoned_object, excessive_density, crowd_movement, fire;
repeated_presence, opt-in; weapon, a plug-in point), each fed frame by frame
through the same method::

    found = rule.update(frame_index, time_s, image, detections, foreground)

where ``detections`` are the objects tracked in this frame (a
``supervision.Detections`` with ``tracker_id``; the class from
``data['class_name']`` or ``class_id``). A rule returns
one dict per *episode*, when the situation starts to hold (a person who has
loitered for ten minutes is one alarm, not six thousand), with ``kind, frame,
time_s, score, zone, track_ids, duration_s`` and evidence fields. A rule is
built from a validated camera configuration (``from_config``; ``rules_for``
builds a camera's set) or from a scripted clip's ``scene`` dict
(``make_rules``); every setting is a plain ``__init__`` argument so a notebook
can tune it. ``RULES`` is the registry (kind -> class), built from
``safecity.config.event_kinds``; ``to_event_rows`` (``rows``) turns what was
found into ``events`` rows; ``safecity.evaluation.video_events`` measures
precision and recall on the scripted clips.

Weapons are only a plug-in point (``WeaponRule``): no model ships.
"""
from __future__ import annotations

from safecity.config.event_kinds import CAMERA_KINDS, DEFAULT_CAMERA_KINDS
from safecity.video.events.abandoned_object import AbandonedObjectRule
from safecity.video.events.crowd_movement import CrowdMovementRule
from safecity.video.events.excessive_density import ExcessiveDensityRule
from safecity.video.events.fire import FireRule
from safecity.video.events.forbidden_zone import ForbiddenZoneRule
from safecity.video.events.loitering import LoiteringRule
from safecity.video.events.person_on_ground import PersonOnGroundRule
from safecity.video.events.repeated_presence import RepeatedPresenceRule
from safecity.video.events.rows import to_event_rows
from safecity.video.events.weapon import WeaponRule
from safecity.video.events.wrong_way import WrongWayRule

#: The kinds ``make_rules`` builds by default (repeated presence is opt-in, weapons need a user's model).
KINDS = DEFAULT_CAMERA_KINDS

_CLASSES = (LoiteringRule, ForbiddenZoneRule, WrongWayRule, PersonOnGroundRule,
            AbandonedObjectRule, ExcessiveDensityRule, CrowdMovementRule, FireRule,
            RepeatedPresenceRule, WeaponRule)

#: The registry: camera kind -> its event rule class, in the order of ``config.event_kinds``.
RULES = {kind: next(c for c in _CLASSES if c.kind == kind) for kind in CAMERA_KINDS}

#: Built by the pipeline itself, when the camera opts in (its enabling is audited).
OPT_IN_BY_PIPELINE = ("repeated_presence",)


def rules_for(camera, audit=None) -> list:
    """The event rules a validated ``CameraConfig`` enables, each built from its typed settings
    (``from_config``); repeated presence last, when enabled, its enabling recorded to ``audit``.
    A camera listing no kinds gets ``KINDS``, as a scene without ``detectors`` does."""
    asked = list(camera.enabled_detectors or KINDS)
    built = [RULES[kind].from_config(camera) for kind in asked if kind not in OPT_IN_BY_PIPELINE]
    if camera.repeated_presence.enabled:
        built.append(RepeatedPresenceRule.from_config(camera, audit=audit))
    return built


def make_rules(scene: dict, kinds=None, **options) -> list:
    """One rule per kind, set from a scene dict (a scripted clip's); ``options[kind]`` (a dict)
    overrides settings. A validated camera configuration goes through ``rules_for``.

    ``kinds`` defaults to the scene's ``detectors`` list (a camera's YAML)
    or ``KINDS``; kinds that other modules handle (``repeated_presence``) are
    left out. ``weapon`` is built only from a plug-in of kind ``weapon...``
    in ``scene['plugins']`` (or ``options['weapon']['model_path']``).
    """
    asked = list(kinds if kinds is not None else scene.get("detectors") or KINDS)
    unknown = [k for k in asked if k not in RULES]
    if unknown:
        raise ValueError(f"unknown event kind {unknown}; choose from {', '.join(RULES)}")
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
        built.append(RULES[kind](scene, **settings))
    return built


__all__ = ["RULES", "KINDS", "make_rules", "rules_for", "to_event_rows", *(c.__name__ for c in _CLASSES)]
