"""Event rules built from the typed camera configuration (``from_config``) carry the settings the
scene-dict path gives them, and the pipeline builds them that way from a ``CameraConfig``."""
from __future__ import annotations

import pytest

from safecity.config.cameras import CameraConfig
from safecity.sim.clips import SCENARIOS, scene_for
from safecity.video import events
from safecity.video.pipeline import CameraPipeline

SETTINGS = ("kind", "limit_s", "limit_per_m2", "max_people", "flows_", "polygons_", "area_m2_",
            "min_inside_s", "require_stop", "enabled", "ttl_s", "count_", "window_s_", "camera_")


def _settings(rule) -> dict:
    return {name: getattr(rule, name) for name in SETTINGS if hasattr(rule, name)}


def _camera(scenario: str, **changes) -> CameraConfig:
    scene = {**scene_for(scenario), **changes}
    return CameraConfig.from_scene(scene, f"cam-{scenario}", "0")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rules_from_the_config_have_the_settings_of_the_scene_path(scenario):
    camera = _camera(scenario, repeat_enabled=True)
    typed = events.rules_for(camera)
    scene = camera.scene()
    from_scene = events.make_rules(scene) + [events.RepeatedPresenceRule(scene, **scene["repeated_presence"])]
    assert [type(r) for r in typed] == [type(r) for r in from_scene]
    assert [_settings(r) for r in typed] == [_settings(r) for r in from_scene]
    assert typed[-1].kind == "repeated_presence" and typed[-1].enabled


def test_each_path_keeps_its_own_density_default():
    """A configured camera that gives no density limit gets the configuration's 4 people/m²; a bare
    scene dict without one, the rule's own 2 people/m² (both as before the typed path existed)."""
    scene = scene_for("excessive_density")
    del scene["density_limit_per_m2"]
    assert events.ExcessiveDensityRule(scene).limit_per_m2 == 2.0
    camera = CameraConfig.from_scene(scene, "cam-d", "0")
    assert camera.density_limit_per_m2 == 4.0
    assert events.ExcessiveDensityRule.from_config(camera).limit_per_m2 == 4.0


def test_the_pipeline_builds_a_configured_cameras_rules_from_the_config():
    camera = _camera("loitering", loitering_limit_s=12.5, detectors=["loitering", "fire"])
    pipe = CameraPipeline(camera)
    assert [r.kind for r in pipe.rules] == ["loitering", "fire"]
    assert pipe.rules[0].limit_s == 12.5
