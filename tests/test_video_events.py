"""Event detectors, end to end: rendered clip -> background model, detector, tracker -> events.

Each detector must fire during its scripted episode and stay silent on the
``normal`` clip (ordinary passers-by). Clips are rendered and tracked once per
module (seed 0, a seed the defaults were tuned on: these tests guard against
regressions; the README reports held-out seeds).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import supervision as sv

from safecity.data.schema import validate
from safecity.evaluation import video_events as evaluation
from safecity.sim.clips import render_clip
from safecity.video import events as ev
from safecity.video.track import from_table

SEED = 0
TOLERANCE = int(evaluation.TOLERANCE_S * 10)


@pytest.fixture(scope="module")
def tracked():
    """scenario -> (clip, tracks, foreground masks), each clip detected and tracked once."""
    cache = {}

    def get(scenario):
        if scenario not in cache:
            clip = render_clip(scenario, seed=SEED)
            tracks, masks = evaluation.track_clip(clip.frames, clip.scene, clip.scene["fps"])
            cache[scenario] = clip, tracks, masks
        return cache[scenario]

    return get


def _run(tracked, scenario, kind):
    clip, tracks, masks = tracked(scenario)
    found = evaluation.run_rules(ev.make_rules(clip.scene, [kind]), clip.frames, tracks,
                             clip.scene["fps"], masks)
    return clip, found


@pytest.mark.parametrize("kind", ev.KINDS)
def test_detector_fires_on_its_scenario_and_not_on_normal(tracked, kind):
    clip, found = _run(tracked, kind, kind)
    episodes = clip.truth[clip.truth["kind"] == kind]
    assert len(episodes), f"the {kind} clip has no scripted {kind} episode"
    for ep in episodes.itertuples():
        inside = [e for e in found if ep.start_frame - TOLERANCE <= e["frame"] <= ep.end_frame]
        assert inside, f"{kind}: no event in frames {ep.start_frame}..{ep.end_frame}; found {found}"
    for e in found:
        assert e["kind"] == kind and 0.0 <= e["score"] <= 1.0 and e["duration_s"] >= 0
    _, on_normal = _run(tracked, "normal", kind)
    assert on_normal == [], f"{kind} fired on the normal clip: {on_normal}"


def test_one_event_per_episode(tracked):
    """A person loitering for many seconds is one alarm, not one per frame."""
    clip, found = _run(tracked, "loitering", "loitering")
    ep = clip.truth.iloc[0]
    during = [e for e in found if ep.start_frame - TOLERANCE <= e["frame"] <= ep.end_frame]
    assert len(during) == 1
    assert during[0]["duration_s"] >= clip.scene["loitering_limit_s"]
    assert during[0]["zone"] == "plaza"


def test_events_become_valid_event_rows(tracked):
    clip, found = _run(tracked, "abandoned_object", "abandoned_object")
    start = pd.Timestamp("2026-06-01 12:00", tz="UTC")
    rows = ev.to_event_rows(found, "cam-7", start, lon=2.35, lat=48.85)
    validate(rows, "events")
    assert len(rows) == len(found) and set(rows["source"]) == {"video"}
    first = rows.iloc[0]
    assert first["ts"] == start + pd.Timedelta(seconds=found[0]["time_s"])
    details = json.loads(first["details"])
    assert details["track_ids"] == found[0]["track_ids"] and details["unattended_s"] >= 5.0
    assert ev.to_event_rows([], "cam-7", start).empty


def test_fire_detector_ignores_static_flame_colours():
    """The yellow hatched zone is flame-coloured but does not flicker by itself."""
    clip = render_clip("normal", seed=SEED, n_frames=60)
    fire = ev.FireRule(clip.scene)
    assert fire.flame_mask(clip.frames[0]).any()  # the hatching passes the colour rule
    found = [e for f, image in enumerate(clip.frames) for e in fire.update(f, f / 10, image)]
    assert found == []


def test_weapon_detector_refuses_without_a_model(tmp_path):
    with pytest.raises(ValueError, match="no weapon model ships"):
        ev.WeaponRule({})
    missing = tmp_path / "gun.onnx"
    with pytest.raises(FileNotFoundError, match="gun.onnx"):
        ev.WeaponRule({}, model_path=missing)
    assert all(d.kind != "weapon" for d in ev.make_rules(render_clip("normal", n_frames=2).scene))


def test_bad_settings_name_the_field():
    scene = render_clip("normal", n_frames=2).scene
    with pytest.raises(ValueError, match="gate"):
        ev.LoiteringRule(scene, zones=["gate"])
    with pytest.raises(ValueError, match="unknown event kind.*teleport"):
        ev.make_rules(scene, ["fire", "teleport"])
    with pytest.raises(ValueError, match="flow of zone 'main'"):
        ev.WrongWayRule(scene, flows={"main": [0, 0]})
    with pytest.raises(ValueError, match="event 0 from camera cam-1 lacks"):
        ev.to_event_rows([{"kind": "fire"}], "cam-1", "2026-01-01")


def test_evaluation_counts_false_alarms_on_other_clips():
    """Precision is over all clips: an event on a clip without that episode is a false alarm."""
    table, events = evaluation.evaluate_clips(seeds=(SEED,), scenarios=("normal", "fire"), tracker="truth",
                                      kinds=("fire",))
    row = table.set_index("kind").loc["fire"]
    assert row["episodes"] == 1 and row["recall"] == 1.0
    assert row["precision"] == events["true_positive"].mean()
    assert set(events["scenario"]) <= {"normal", "fire"}
    hit, found = evaluation.match_events([{"kind": "fire", "frame": 45}, {"kind": "fire", "frame": 30}],
                                 render_clip("fire", n_frames=60).truth, fps=10)
    assert hit == [True, False] and found == [True]   # 45 is within the 1 s tolerance of frame 50


def test_tracks_without_a_contract_column_are_refused_by_name():
    scene = render_clip("normal", n_frames=2).scene
    no_height = pd.DataFrame({"frame": [0], "time_s": [0.0], "track_id": [1], "x": [10.0], "y": [10.0],
                              "w": [5.0], "cls": ["person"], "confidence": [1.0]})
    with pytest.raises(ValueError, match=r"tracks table lacks column\(s\) h "):
        from_table(no_height)
    untracked = sv.Detections(xyxy=np.array([[10.0, 10.0, 15.0, 30.0]]), class_id=np.array([0]))
    with pytest.raises(ValueError, match="tracker_id is missing"):
        ev.LoiteringRule(scene).update(0, 0.0, None, untracked)
    with pytest.raises(ValueError, match="pixel_step"):
        ev.ExcessiveDensityRule(scene, pixel_step=0)


def test_detectors_sharing_a_frame_table_find_what_each_finds_alone(tracked):
    """Each frame's detections are shared by every detector: none may see another frame's, nor
    change what the next one sees."""
    clip, tracks, masks = tracked("crowd_movement")
    shared = evaluation.run_rules(ev.make_rules(clip.scene), clip.frames, tracks, 10, masks)
    alone = []
    for det in ev.make_rules(clip.scene):  # each fed its own copy of every frame's rows
        by_frame = {f: rows for f, rows in tracks.groupby("frame")}
        for f, image in enumerate(clip.frames):
            alone.extend(det.update(f, f / 10, image, from_table(by_frame.get(f, tracks.iloc[:0]).copy()),
                                    masks[f]))
    assert len(shared) >= 3 and {e["kind"] for e in shared} >= {"crowd_movement"}

    def key(e):
        return e["kind"], e["frame"]

    assert sorted(shared, key=key) == sorted(alone, key=key)


def test_fire_judged_at_half_width_finds_what_full_width_finds():
    """Flame colours are judged at 240 px wide for speed; at 480 (every pixel) the alarm is the same."""
    fire = render_clip("fire", seed=SEED)
    ep = fire.truth.iloc[0]
    tracks = evaluation.truth_tracks(fire)
    found = {width: evaluation.run_rules([ev.FireRule(fire.scene, work_width=width)], fire.frames, tracks, 10)
             for width in (240, 480)}
    half, full = found[240], found[480]
    assert len(half) == len(full) == 1
    assert ep.start_frame - TOLERANCE <= half[0]["frame"] <= ep.end_frame
    assert abs(half[0]["frame"] - full[0]["frame"]) <= 2
    assert half[0]["area_px"] == pytest.approx(full[0]["area_px"], rel=0.25)  # both in 480 px wide pixels
    (x, y, w, h), (X, Y, W, H) = half[0]["box_px"], full[0]["box_px"]
    assert abs(x - X) <= 4 and abs(y - Y) <= 4 and abs(w - W) <= 6 and abs(h - H) <= 6


def test_density_on_every_other_pixel_counts_what_every_pixel_counts(tracked):
    """``pixel_step=2`` does a quarter of the work; the alarm and the pixel estimate stay the same.

    The estimates are compared frame by frame: while the crowd gathers the estimate climbs by
    two people a frame, so the alarms' own estimates, up to two frames apart, need not agree
    (the smoothed count sits within 0.1 of the limit for a second before it)."""
    clip, tracks, masks = tracked("excessive_density")
    rules = {step: ev.ExcessiveDensityRule(clip.scene, pixel_step=step) for step in (1, 2)}
    estimates = {step: {} for step in rules}
    for step, rule in rules.items():
        def counted(frame_index, people, foreground, count=rule._pixel_counts, seen=estimates[step]):
            found = count(frame_index, people, foreground)
            seen.update({(frame_index, zone): n for zone, n in found.items()})
            return found
        rule._pixel_counts = counted
    found = {step: evaluation.run_rules([rule], clip.frames, tracks, 10, masks) for step, rule in rules.items()}
    assert len(found[2]) == len(found[1]) >= 1
    for every, other in zip(found[1], found[2]):
        assert abs(every["frame"] - other["frame"]) <= 2
        at = (every["frame"], every["zone"])
        assert estimates[2][at] == pytest.approx(every["pixel_estimate"], rel=0.05)
    assert estimates[1].keys() == estimates[2].keys() and len(estimates[1]) > 100
    for at, every in estimates[1].items():
        assert estimates[2][at] == pytest.approx(every, rel=0.05, abs=0.5), at


def test_density_keeps_the_person_size_it_learnt_within_what_it_saw():
    """People seen on one band of rows only: the line through their heights is not carried below
    half the shortest of them (a first fit went below zero a third of the way up the view, and a
    handful of pixels there counted as 150 people)."""
    from safecity.sim.clips import scene_for

    rule = ev.ExcessiveDensityRule(scene_for("excessive_density"))
    seen = [(y, 0.6 * y - 78) for y in np.linspace(200, 260, 40)]   # 42 to 78 px tall
    rule.heights_.extend(seen)
    rule.fills_.extend([0.25] * 20)
    height = 1 / np.sqrt(rule._row_weights(360) * 0.25)             # the person height by row
    assert height.min() >= 0.5 * 42 - 1e-6 and height.max() <= 2 * 78 + 1e-6
    feet = 0.6 * 230 - 78                                             # the line, where people were seen
    assert height[230] == pytest.approx(0.6 * (230 + feet / 2) - 78, rel=1e-6)
