"""The one registry of event kinds: the schema, the camera config and the event rules read it."""
import subprocess
import sys
import typing

from safecity.config import event_kinds
from safecity.config.cameras import CameraConfig
from safecity.data import schema
from safecity.video import events


def test_schema_kinds_are_the_registry():
    assert list(schema.EVENT_KINDS) == [k.name for k in event_kinds.EVENT_KINDS]
    assert len(set(schema.EVENT_KINDS)) == len(event_kinds.EVENT_KINDS)


def test_camera_config_accepts_the_camera_kinds_and_defaults_to_the_non_opt_in_ones():
    field = CameraConfig.model_fields["detectors"]
    (literal,) = typing.get_args(field.annotation)
    assert typing.get_args(literal) == event_kinds.CAMERA_KINDS
    assert tuple(field.default_factory()) == event_kinds.DEFAULT_CAMERA_KINDS
    assert "repeated_presence" not in event_kinds.DEFAULT_CAMERA_KINDS
    assert "weapon" not in event_kinds.DEFAULT_CAMERA_KINDS


def test_every_camera_kind_has_a_rule():
    assert tuple(events.RULES) == event_kinds.CAMERA_KINDS
    assert all(cls.kind == kind for kind, cls in events.RULES.items())
    assert events.KINDS == event_kinds.DEFAULT_CAMERA_KINDS


def test_registry_imports_without_opencv():
    code = "import sys, safecity.config.event_kinds, safecity.data.schema; print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
