"""The event rules on real footage, through the whole pipeline (real video decoded by OpenCV).

Each block below is one kind's; the clips are from the test split of
``bench/real_footage`` (never tuned on). They skip when the real data is
absent (``../shared/data``), and fail then under ``SAFECITY_REQUIRE_DATA=1``.
"""
from __future__ import annotations

import pytest
from conftest import shared_data

from safecity.evaluation.real_clips import run_clip

# =========================================================================== person_on_ground
# UP-Fall camera 1, trials 2 and 3 (the test split): two falls that must raise a person on the
# ground, and two daily activities (standing, sitting) that must not; and a street
# (PETS 2009 S2L1) where no one falls.

UPFALL = "video/upfall_cam1"
FALLS = ("Activity2_Trial2Cam1.mp4", "Activity4_Trial3Cam1.mp4")
NOT_FALLS = ("Activity7_Trial2Cam1.mp4", "Activity8_Trial3Cam1.mp4")


@pytest.mark.parametrize("clip", FALLS)
def test_person_on_ground_raised_on_a_real_fall(clip):
    run = run_clip(shared_data(UPFALL) / clip, kinds=["person_on_ground"])
    assert run.frames > 100
    found = [e for e in run.events if e["kind"] == "person_on_ground"]
    assert found, f"{clip}: a fall, yet no person_on_ground in {run.frames} frames"
    assert all(e["duration_s"] >= 2.0 for e in found)  # down and still for still_s


@pytest.mark.parametrize("clip", NOT_FALLS)
def test_person_on_ground_silent_on_real_daily_activity(clip):
    run = run_clip(shared_data(UPFALL) / clip, kinds=["person_on_ground"])
    assert run.frames > 100
    found = [e for e in run.events if e["kind"] == "person_on_ground"]
    assert found == [], f"{clip}: no one falls, yet {found}"


def test_person_on_ground_silent_on_a_street():
    """PETS 2009 S2L1: people walking across a square (far, many, crossing each other), no fall."""
    run = run_clip(shared_data("video/pets2009_s2l1") / "vtest.avi", kinds=["person_on_ground"])
    assert run.frames > 700
    found = [e for e in run.events if e["kind"] == "person_on_ground"]
    assert found == [], f"PETS S2L1: no one falls, yet {found}"

# =========================================================================== end person_on_ground
