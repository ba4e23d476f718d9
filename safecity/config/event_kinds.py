"""Every kind of event safecity knows, declared once: the schema, the camera config and the
event rules all read this list (it imports nothing heavy, so the schema can use it).

The first eight camera kinds are the situations that the French experimental
framework for algorithmic video (law 2023-380, art. 10; decree 2023-828)
allows a system to flag (with ``weapon``); ``loitering`` and
``repeated_presence`` are other video findings; the rest come from the
baseline, the forecast and other sources. The three ``camera_*`` kinds are the
camera's own health (offline, frozen picture, tampered: lens covered or view moved):
every camera reports them, whatever its ``detectors`` list, so they are not
``camera`` kinds a configuration chooses; ``HEALTH_KINDS`` lists them.
"""
from __future__ import annotations

from typing import NamedTuple


class EventKind(NamedTuple):
    """One kind of event: its name, what it means, and how a camera may report it."""

    name: str
    description: str
    camera: bool = False    # a camera's event rules can report it
    opt_in: bool = False    # a camera reports it only when its configuration asks
    health: bool = False    # the camera's own state (offline, frozen, tampered), always reported


#: The one event taxonomy, camera kinds first (in the order a camera runs their rules).
EVENT_KINDS: tuple[EventKind, ...] = (
    EventKind("loitering", "presence in one zone longer than its limit", camera=True),
    EventKind("forbidden_zone", "a person entering a forbidden or sensitive zone", camera=True),
    EventKind("wrong_way", "movement against the expected flow", camera=True),
    EventKind("person_on_ground", "a person on the ground after a fall", camera=True),
    EventKind("abandoned_object", "an object left unattended", camera=True),
    EventKind("excessive_density", "people per square metre over the zone's limit", camera=True),
    EventKind("crowd_movement", "sudden convergence or dispersal of a crowd", camera=True),
    EventKind("fire", "fire or smoke", camera=True),
    EventKind("repeated_presence", "the same anonymous person back in a zone (opt-in)", camera=True,
              opt_in=True),
    EventKind("weapon", "weapon (plug-in model only; none ships with safecity)", camera=True, opt_in=True),
    EventKind("camera_offline", "a camera gave no frame for too long (source failed)", health=True),
    EventKind("camera_frozen", "a camera's picture stopped changing while frames still arrive",
              health=True),
    EventKind("camera_tampered", "a camera's view changed as a whole: lens covered or camera moved",
              health=True),
    EventKind("anomaly", "a departure from the learned usual situation"),
    EventKind("gathering_forecast", "a forecast crowd above a zone's capacity"),
    EventKind("gunshot", "acoustic gunshot detection"),
    EventKind("panic", "panic button pressed"),
    EventKind("call", "emergency call"),
    EventKind("police_log", "police log entry (free text, untrusted)"),
    EventKind("drone", "drone observation"),
)

#: Kind name -> description (the ``events`` table's ``kind`` must be one of these).
DESCRIPTIONS: dict[str, str] = {k.name: k.description for k in EVENT_KINDS}

#: Event kinds a camera can be set to detect.
CAMERA_KINDS: tuple[str, ...] = tuple(k.name for k in EVENT_KINDS if k.camera)

#: Enabled on a camera that lists none: repeated presence is opt-in and weapons need a plug-in.
DEFAULT_CAMERA_KINDS: tuple[str, ...] = tuple(k.name for k in EVENT_KINDS if k.camera and not k.opt_in)

#: The camera's own health, raised by every camera (``safecity.video.health``, the camera runner).
HEALTH_KINDS: tuple[str, ...] = tuple(k.name for k in EVENT_KINDS if k.health)
