"""Frigate NVR's ``frigate/events`` messages as safecity events.

Frigate publishes one JSON message each time a tracked object changes: ``type`` is
``new``, ``update`` or ``end`` and ``after`` is the object's state (``id``, ``camera``,
``label``, ``top_score``, ``start_time``/``end_time``/``frame_time`` in epoch seconds,
``current_zones``, ``entered_zones`` in the order they were entered, ``stationary``,
``motionless_count``...). Most of those are ordinary detections, not incidents, so
``FrigateConfig`` says which ones are:

- a person (``person_labels``) in a zone of ``forbidden_zones`` -> ``forbidden_zone``;
- a person tracked for ``loitering_s`` seconds or more and now in a zone of
  ``loitering_zones`` -> ``loitering`` (with ``loitering_s: 0`` for a Frigate zone that
  has its own ``loitering_time``, since Frigate enters it only after that time);
- a ``fire_labels`` object (Frigate+ models) -> ``fire``;
- an ``object_labels`` object (bags) stationary for ``abandoned_s`` seconds or more
  -> ``abandoned_object``;
- anything else -> no row.

One Frigate object raises each kind at most once: the event id is
``frigate-<frigate id>-<kind>`` and the row's content is the same in every message that
finds it (its time is Frigate's ``start_time``, plus ``loitering_s`` for loitering; its
zone, for forbidden_zone and loitering, is the first such zone the object entered, as
Frigate lists zones in the order they were entered; no score, since Frigate's scores
change from one update to the next). So updates, the end message and redelivered messages are
stored once: the store and the API skip a known event id with identical values.

Privacy: nothing but the camera, label, zone and Frigate's id is kept. Frigate's
``sub_label`` (which may be a name from its face recognition), ``attributes`` (faces),
snapshots and thumbnails are never copied.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Mapping

#: The ``source`` of every event the bridge makes from Frigate messages.
SOURCE = "frigate"
MESSAGE_TYPES = ("new", "update", "end")


class MessageError(ValueError):
    """A message that cannot be used; the text names the field at fault."""


@dataclass(frozen=True)
class FrigateCamera:
    """Where one Frigate camera is, and its own zone lists (None: the bridge's)."""

    sensor_id: str | None = None  # default: the Frigate camera name
    lon: float | None = None
    lat: float | None = None
    forbidden_zones: tuple[str, ...] | None = None
    loitering_zones: tuple[str, ...] | None = None
    loitering_s: float | None = None


@dataclass(frozen=True)
class FrigateConfig:
    """Which Frigate objects are incidents, and where each camera is (see the module doc)."""

    forbidden_zones: tuple[str, ...] = ()
    loitering_zones: tuple[str, ...] = ()
    loitering_s: float = 60.0
    abandoned_s: float = 30.0
    detect_fps: float = 5.0  # Frigate's detect fps: turns motionless_count into seconds
    person_labels: tuple[str, ...] = ("person",)
    fire_labels: tuple[str, ...] = ("fire", "smoke")
    object_labels: tuple[str, ...] = ("backpack", "suitcase", "handbag")
    min_score: float = 0.0  # of Frigate's top_score; Frigate already applies its threshold
    unknown_cameras: str = "accept"  # or "skip": only cameras listed below raise events
    cameras: Mapping[str, FrigateCamera] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        for name in ("loitering_s", "abandoned_s"):
            if not _finite(getattr(self, name)) or getattr(self, name) < 0:
                problems.append(f"{name}: expected a number of seconds >= 0")
        if not _finite(self.detect_fps) or self.detect_fps <= 0:
            problems.append("detect_fps: expected a number > 0")
        if not _finite(self.min_score) or not 0 <= self.min_score <= 1:
            problems.append("min_score: expected a number in 0..1")
        if self.unknown_cameras not in ("accept", "skip"):
            problems.append(f"unknown_cameras: expected accept or skip, got {self.unknown_cameras!r}")
        for name, cam in self.cameras.items():
            for coord, bound in (("lon", 180), ("lat", 90)):
                value = getattr(cam, coord)
                if value is not None and (not _finite(value) or abs(value) > bound):
                    problems.append(f"cameras.{name}.{coord}: expected a number in -{bound}..{bound}")
            if (cam.lon is None) != (cam.lat is None):
                problems.append(f"cameras.{name}: give both lon and lat, or neither")
            if cam.loitering_s is not None and (not _finite(cam.loitering_s) or cam.loitering_s < 0):
                problems.append(f"cameras.{name}.loitering_s: expected a number of seconds >= 0")
        if problems:
            raise ValueError("invalid Frigate mapping: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FrigateConfig":
        """From plain data (YAML); unknown keys are errors, so a misspelt key never falls back."""
        if not isinstance(data, Mapping):
            raise ValueError("invalid Frigate mapping: expected a mapping of settings")
        kwargs = _typed(cls, data, "")
        cameras = data.get("cameras") or {}
        if not isinstance(cameras, Mapping):
            raise ValueError("invalid Frigate mapping: cameras: expected a mapping of camera names")
        kwargs["cameras"] = {str(name): FrigateCamera(**_typed(FrigateCamera, cam or {},
                                                               f"cameras.{name}."))
                             for name, cam in cameras.items()}
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "FrigateConfig":
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ValueError(f"{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
        except (UnicodeDecodeError, OSError) as err:
            raise ValueError(f"{path}: cannot read the Frigate mapping: {err}") from None
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def camera(self, name: str) -> FrigateCamera | None:
        """The camera's settings; None for an unlisted camera when those are skipped."""
        if name in self.cameras:
            return self.cameras[name]
        return FrigateCamera() if self.unknown_cameras == "accept" else None


def _typed(cls, data: Mapping[str, Any], prefix: str) -> dict:
    """``data``'s settings for dataclass ``cls``, lists made tuples, types checked."""
    if not isinstance(data, Mapping):
        raise ValueError(f"invalid Frigate mapping: {prefix.rstrip('.')}: expected a mapping")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ValueError(f"invalid Frigate mapping: {prefix}{unknown[0]}: unknown key "
                         f"(known: {', '.join(names)})")
    out = {}
    for name, value in data.items():
        if name == "cameras" or value is None:
            continue
        kind = str(names[name].type)
        where = f"invalid Frigate mapping: {prefix}{name}"
        if "tuple" in kind:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{where}: expected a list of names")
            out[name] = tuple(value)
        elif "float" in kind:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}: expected a number, got {value!r:.60}")
            out[name] = float(value)
        else:
            if not isinstance(value, str):
                raise ValueError(f"{where}: expected text, got {value!r:.60}")
            out[name] = value
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- messages


def decode(payload: bytes | str) -> Any:
    """The JSON value of an MQTT payload, or ``MessageError``."""
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MessageError(f"not JSON: {err}") from None


def frigate_rows(message: Any, config: FrigateConfig) -> list[dict]:
    """The ``events`` rows (API form: ISO times) for one ``frigate/events`` message.

    Empty for an ordinary detection. Raises ``MessageError`` naming the field for a
    message that is not Frigate's shape.
    """
    if not isinstance(message, Mapping):
        raise MessageError(f"expected a JSON object, got {type(message).__name__}")
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        raise MessageError(f"type: expected one of {', '.join(MESSAGE_TYPES)}, got {kind!r:.40}")
    obj = message.get("after")
    if not isinstance(obj, Mapping):
        raise MessageError(f"after: expected an object, got {type(obj).__name__}")
    frigate_id = _text(obj, "id")
    camera_name = _text(obj, "camera")
    label = _text(obj, "label")
    start = _epoch(obj, "start_time")
    now = _epoch(obj, "end_time", required=False) or _epoch(obj, "frame_time", required=False) or start
    current = _zones(obj, "current_zones")
    entered = _zones(obj, "entered_zones")
    stationary = obj.get("stationary", False)
    if not isinstance(stationary, bool):
        raise MessageError(f"after.stationary: expected true or false, got {stationary!r:.40}")
    motionless = obj.get("motionless_count", 0)
    if not _finite(motionless or 0) or (motionless or 0) < 0:
        raise MessageError(f"after.motionless_count: expected a count, got {motionless!r:.40}")
    score = obj.get("top_score", obj.get("score"))
    if score is not None and not _finite(score):
        raise MessageError(f"after.top_score: expected a number, got {score!r:.40}")

    camera = config.camera(camera_name)
    if camera is None or obj.get("false_positive") is True or (score or 0) < config.min_score:
        return []
    forbidden = camera.forbidden_zones if camera.forbidden_zones is not None else config.forbidden_zones
    loitering = camera.loitering_zones if camera.loitering_zones is not None else config.loitering_zones
    loitering_s = camera.loitering_s if camera.loitering_s is not None else config.loitering_s

    found: list[tuple[str, float, str | None]] = []  # (kind, ts, zone)
    if label in config.person_labels:
        zone = _first(entered, forbidden)
        if zone is not None:
            found.append(("forbidden_zone", start, zone))
        if now - start >= loitering_s and set(current) & set(loitering):
            found.append(("loitering", start + loitering_s, _first(entered + current, loitering)))
    if label in config.fire_labels:
        found.append(("fire", start, None))
    if (label in config.object_labels and stationary
            and (motionless or 0) / config.detect_fps >= config.abandoned_s):
        found.append(("abandoned_object", start, None))

    rows = []
    for event_kind, ts, zone in found:
        details = {"frigate_id": frigate_id, "camera": camera_name, "label": label}
        if zone is not None:
            details["zone"] = zone
        rows.append({"event_id": f"{SOURCE}-{frigate_id}-{event_kind}", "ts": _iso(ts),
                     "kind": event_kind, "sensor_id": camera.sensor_id or camera_name,
                     "lon": camera.lon, "lat": camera.lat, "source": SOURCE,
                     "details": details})
    return rows


def safecity_batches(message: Any) -> list[tuple[str, list]]:
    """``[(table, rows)]`` of a message already in safecity's form.

    ``{"table": "events"|"observations"|"units"|"police-log", "rows": [...]}``, or a bare
    array of events. The rows themselves are checked by the sink (``parse_rows``).
    """
    from safecity.ingest.client import TABLES

    if isinstance(message, list):
        return [("events", message)]
    if not isinstance(message, Mapping):
        raise MessageError(f"expected an object with table and rows, or an array of events, "
                           f"got {type(message).__name__}")
    unknown = sorted(set(message) - {"table", "rows"})
    if unknown:
        raise MessageError(f"{unknown[0]}: unknown key (expected table and rows)")
    table = message.get("table")
    if table not in TABLES:
        raise MessageError(f"table: expected one of {', '.join(TABLES)}, got {table!r:.40}")
    rows = message.get("rows")
    if not isinstance(rows, list):
        raise MessageError(f"rows: expected an array of objects, got {type(rows).__name__}")
    return [(table, rows)]


def _text(obj: Mapping, name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise MessageError(f"after.{name}: expected text, got {value!r:.40}")
    if len(value) > 200:
        raise MessageError(f"after.{name}: longer than 200 characters")
    return value


def _epoch(obj: Mapping, name: str, required: bool = True) -> float | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not _finite(value) or not 0 < value < 1e11:
        raise MessageError(f"after.{name}: expected epoch seconds, got {value!r:.40}")
    return float(value)


def _zones(obj: Mapping, name: str) -> list[str]:
    value = obj.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(z, str) for z in value):
        raise MessageError(f"after.{name}: expected a list of zone names, got {value!r:.60}")
    return value


def _first(zones: list[str], wanted) -> str | None:
    return next((z for z in zones if z in wanted), None)


def _iso(epoch: float) -> str:
    """A UTC ISO 8601 time, to the microsecond: the same epoch always gives the same text."""
    return datetime.fromtimestamp(round(epoch, 6), tz=timezone.utc).isoformat()
