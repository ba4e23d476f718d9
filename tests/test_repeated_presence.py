"""Repeated presence: fires on the scripted returning person, stays silent on other clips
and when not enabled, forgets after its time-to-live, audits its enabling, and never lets
an appearance signature reach a file, a log or a pickle."""
from __future__ import annotations

import copy
import json
import logging
import pickle

import numpy as np
import pandas as pd
import pytest
import supervision as sv

from safecity.data.store import Store
from safecity.evaluation.video_events import detections_by_frame
from safecity.sim.clips import RETURNING_PERSON, SCENARIOS, render_clip
from safecity.video.events import to_event_rows
from safecity.video.events.repeated_presence import RepeatedPresenceRule
from safecity.video.track import from_table

START = pd.Timestamp("2026-06-01 08:00", tz="UTC")


def run(detector: RepeatedPresenceRule, clip, frames=None, time_offset: float = 0.0) -> list[dict]:
    """Feed the clip's frames and ground-truth boxes to the detector, as the pipeline would."""
    fps = clip.scene["fps"]
    by_frame = detections_by_frame(clip.tracks)
    empty = from_table(clip.tracks.iloc[:0])
    events = []
    for f in frames if frames is not None else range(len(clip.frames)):
        events += detector.update(f, time_offset + f / fps, clip.frames[f], by_frame.get(f, empty), None)
    return events


def returning_visits(clip) -> dict[int, np.ndarray]:
    """The frames of each visit (track) of the scripted returning person."""
    t = clip.tracks[clip.tracks["person_id"] == RETURNING_PERSON]
    return {int(k): g["frame"].to_numpy() for k, g in t.groupby("track_id")}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fires_once_on_the_returning_person_during_the_scripted_episode(seed):
    clip = render_clip("repeated_presence", seed=seed)
    truth = clip.truth.iloc[0]
    events = run(RepeatedPresenceRule(clip.scene, enabled=True), clip)

    assert len(events) == 1, events
    event = events[0]
    assert event["kind"] == "repeated_presence"
    assert truth["start_frame"] <= event["frame"] <= truth["end_frame"]
    assert event["zone"] == truth["zone"]
    assert event["visits"] >= clip.scene["repeat_count"]
    assert set(event["track_ids"]) <= set(json.loads(truth["track_ids"]))
    assert len(event["track_ids"]) == event["visits"]
    assert 0 < event["score"] <= 1
    assert 0 < event["duration_s"] <= clip.scene["repeat_window_s"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_silent_on_normal_clips(seed):
    clip = render_clip("normal", seed=seed)
    detector = RepeatedPresenceRule(clip.scene, enabled=True)
    assert run(detector, clip) == []
    assert detector.remembered_ > 0  # it did watch people, none came back


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in ("normal", "repeated_presence")])
def test_silent_on_the_other_scenarios(scenario):
    clip = render_clip(scenario, seed=5)
    assert run(RepeatedPresenceRule(clip.scene, enabled=True), clip) == []


def test_not_enabled_returns_nothing_and_keeps_nothing():
    clip = render_clip("repeated_presence", seed=0)
    detector = RepeatedPresenceRule(clip.scene)  # opt-in: off unless asked
    assert run(detector, clip) == []
    assert detector.remembered_ == 0
    assert not detector._tracks and not detector._people


def test_forgets_people_after_the_time_to_live():
    clip = render_clip("repeated_presence", seed=0)
    visits = list(returning_visits(clip).values())
    ttl = 600.0
    detector = RepeatedPresenceRule(clip.scene, enabled=True, ttl_s=ttl)
    # The first two visits, then the same footage of visits three and four a day later.
    first_two = range(0, int(visits[1][-1]) + 15)
    assert run(detector, clip, first_two) == []
    remembered = detector.remembered_
    assert remembered > 0
    last_time = first_two[-1] / clip.scene["fps"]
    assert detector.forget_expired(last_time + ttl - 5) == 0  # not yet
    assert detector.remembered_ == remembered

    later = run(detector, clip, range(first_two[-1] + 1, len(clip.frames)), time_offset=ttl + 60)

    assert later == [], "a person forgotten after the time-to-live was recognised again"
    assert detector.forget_expired(10 ** 7) > 0
    assert detector.remembered_ == 0 and not detector._tracks

    # Control: without the gap the same footage does fire.
    control = RepeatedPresenceRule(clip.scene, enabled=True, ttl_s=ttl)
    assert len(run(control, clip)) == 1


def test_enabling_writes_an_audit_record(tmp_path):
    scene = {**render_clip("normal", n_frames=1).scene, "camera_id": "cam-canebiere-3"}
    store = Store(tmp_path)
    RepeatedPresenceRule(scene, enabled=False, audit=store.state)
    assert store.read("audit_log").empty  # not enabled: nothing to audit

    RepeatedPresenceRule(scene, enabled=True, audit=store.state, actor="supervisor-2", ttl_s=3600)

    log = Store(tmp_path).read("audit_log")
    assert len(log) == 1
    record = log.iloc[0]
    assert (record["actor"], record["action"], record["target"]) == (
        "supervisor-2", "enable_repeated_presence", "cam-canebiere-3")
    details = json.loads(record["details"])
    assert details == {"ttl_s": 3600.0, "count": 3, "window_s": 60.0}


def signature_forms(arrays: list[np.ndarray]) -> list[bytes]:
    """Byte patterns that would betray a signature: raw float64/float32 bytes and text forms."""
    forms = []
    for a in arrays:
        for dtype in (np.float64, np.float32):
            raw = a.astype(dtype).tobytes()
            forms += [raw, raw[: 8 * 16]]  # the whole array or its first bins
        forms += [np.array2string(a).encode(), json.dumps(a.tolist()).encode(), repr(a).encode()]
        forms += [repr(float(v)).encode() for v in a if 0 < v and len(repr(float(v))) >= 10]
    return forms


def test_signatures_never_reach_disk_logs_or_pickles(tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    clip = render_clip("repeated_presence", seed=0)
    store = Store(tmp_path)
    detector = RepeatedPresenceRule({**clip.scene, "camera_id": "cam-7"}, enabled=True, audit=store.state)
    events = run(detector, clip)
    assert events
    store.append("events", to_event_rows(events, "cam-7", START))  # the pipeline's own conversion
    print(detector, events)  # what a careless notebook would show
    logging.getLogger("safecity").info("repeated presence: %r %s", detector, events)

    # The signatures alive now: remembered people and tracks still open.
    arrays = [p.signature.copy() for p in detector._people.values()]
    arrays += [t.mean() for t in detector._tracks.values() if t.frames]
    assert arrays and all(a.any() for a in arrays)
    forms = signature_forms(arrays)
    # Control: the scan does catch a signature written out in binary or as text.
    assert any(f in pickle.dumps(arrays[0]) for f in forms)
    assert any(f in str(arrays[0].tolist()).encode() for f in forms)

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.name == "state.sqlite" for p in files)
    for path in files:
        content = path.read_bytes()
        for form in forms:
            assert form not in content, f"a signature reached {path.relative_to(tmp_path)}"
    text = (caplog.text + capsys.readouterr().out).encode()
    for form in forms:
        assert form not in text, "a signature reached the log or the console"
    assert "remembered=" in repr(detector) and "[" not in repr(detector)

    for obj in (detector, next(iter(detector._people.values()))):
        with pytest.raises(TypeError, match="never leave memory"):
            pickle.dumps(obj)
        with pytest.raises(TypeError, match="never leave memory"):
            copy.deepcopy(obj)


def test_through_the_camera_pipeline_signatures_stay_off_disk(tmp_path):
    """The real path: configuration -> CameraPipeline (detector, tracker, events) -> Store.

    Over three seeds, not one: the pipeline found the episode on 10 of 10 seeds when
    measured (README, repeated presence), so two of three is a floor, not a lucky draw."""
    from safecity.video.pipeline import CameraPipeline

    hits = 0
    for seed in (0, 1, 2):
        clip = render_clip("repeated_presence", seed=seed)
        scene = {**clip.scene, "camera_id": "cam-1",
                 "repeated_presence": {"enabled": True, "ttl_s": 86400.0, "count": 3, "window_s": 60.0}}
        store = Store(tmp_path / f"seed{seed}")
        pipeline = CameraPipeline(scene, audit=store.state, start=START)
        [detector] = [d for d in pipeline.rules if isinstance(d, RepeatedPresenceRule)]
        pipeline.run(clip.frames, store=store)

        audit = store.read("audit_log")
        assert audit["action"].tolist() == ["enable_repeated_presence"]
        found = store.read("events")
        found = found[found["kind"] == "repeated_presence"]
        truth = clip.truth.iloc[0]
        assert len(found) <= 1, found
        frames = [json.loads(d)["frame"] for d in found["details"]]
        assert all(truth["start_frame"] <= f <= truth["end_frame"] for f in frames), (seed, frames)
        hits += len(frames)
        arrays = [p.signature.copy() for p in detector._people.values()]
        assert arrays
        forms = signature_forms(arrays)
        for path in (p for p in (tmp_path / f"seed{seed}").rglob("*") if p.is_file()):
            content = path.read_bytes()
            assert not any(form in content for form in forms), f"a signature reached {path.name}"
    assert hits >= 2


def test_forgetting_erases_the_signature_in_memory():
    clip = render_clip("repeated_presence", seed=0, n_frames=60)
    detector = RepeatedPresenceRule(clip.scene, enabled=True, ttl_s=30)
    run(detector, clip)
    people = list(detector._people.values())
    assert people
    detector.forget_expired(10 ** 6)
    assert all(not p.signature.any() for p in people)  # overwritten, not just dropped


def test_bad_settings_and_tracks_name_the_camera():
    scene = {**render_clip("normal", n_frames=1).scene, "camera_id": "cam-9"}
    with pytest.raises(ValueError, match="cam-9.*at least 2"):
        RepeatedPresenceRule(scene, count=1)
    with pytest.raises(ValueError, match="cam-9.*positive"):
        RepeatedPresenceRule(scene, window_s=0)
    detector = RepeatedPresenceRule(scene, enabled=True)
    image = np.zeros((360, 480, 3), np.uint8)
    with pytest.raises(ValueError, match="cam-9.*tracker_id"):
        detector.update(0, 0.0, image, sv.Detections(xyxy=np.array([[1.0, 1.0, 6.0, 10.0]]),
                                                     class_id=np.array([0])), None)


def tracked(clip) -> pd.DataFrame:
    """The clip's tracks as the pipeline's own detector and tracker see them (not the script's boxes)."""
    from safecity.video.track import track_frames

    return track_frames(clip.frames, clip.scene, clip.scene["fps"])


def test_end_to_end_on_the_trackers_tracks_fires_on_the_returns_and_not_on_normal_clips():
    # Seeds 0..4 are the ones the detector was tuned on (5 of 5 found when measured; 5 of 5
    # on the held-out seeds 5..9 too, see the README): the floor leaves room for one miss.
    hits = 0
    for seed in range(5):
        clip = render_clip("repeated_presence", seed=seed)
        truth = clip.truth.iloc[0]
        events = run(RepeatedPresenceRule(clip.scene, enabled=True), clip._replace(tracks=tracked(clip)))
        assert len(events) <= 1, events
        assert all(truth["start_frame"] <= e["frame"] <= truth["end_frame"] for e in events), events
        hits += len(events)
        normal = render_clip("normal", seed=seed)
        assert run(RepeatedPresenceRule(normal.scene, enabled=True), normal._replace(tracks=tracked(normal))) == []
    # The tracker splits or merges some visits (a person entering at the border, two
    # people crossing), so a seed may be missed; most must be found.
    assert hits >= 4


@pytest.mark.parametrize("scenario", ["loitering", "crowd_movement", "excessive_density"])
def test_silent_on_the_trackers_tracks_of_people_who_stay(scenario):
    """Where people linger or crowd, the tracker loses and swaps their ids again and again:
    pieces of one continuous stay must not add up to returns."""
    for seed in range(3):
        clip = render_clip(scenario, seed=seed)
        assert run(RepeatedPresenceRule(clip.scene, enabled=True), clip._replace(tracks=tracked(clip))) == []


def test_a_track_that_swaps_two_people_is_cut_where_the_colours_change():
    """Two people crossing, and the tracker swaps their ids: each id now carries half of
    one person and half of the other. Cut where the colours change, the returning person's
    visits stay apart; left whole, the passer-by's id stretches the second visit over the
    third and the return is only seen a visit later."""
    clip = render_clip("repeated_presence", seed=1)
    tracks = clip.tracks.copy()
    (_, first), (second_id, second), (_, third), *_ = returning_visits(clip).items()
    swap = int(second[len(second) // 2])
    present = tracks[(tracks["frame"] == swap) & (tracks["person_id"] != RETURNING_PERSON)]
    leaves = {int(k): int(tracks.loc[tracks["track_id"] == k, "frame"].max()) for k in present["track_id"]}
    passer_by = max(leaves, key=leaves.get)
    assert leaves[passer_by] > third[0]  # the script gives a passer-by still there on the third visit
    later = tracks["frame"] > swap
    mine, theirs = later & (tracks["track_id"] == second_id), later & (tracks["track_id"] == passer_by)
    tracks.loc[mine, "track_id"], tracks.loc[theirs, "track_id"] = passer_by, second_id
    swapped = clip._replace(tracks=tracks)

    [event] = run(RepeatedPresenceRule(clip.scene, enabled=True), swapped)
    assert third[0] <= event["frame"] <= third[-1]  # on the third visit, as without the swap
    assert event["visits"] == 3

    whole = run(RepeatedPresenceRule(clip.scene, enabled=True, switch_frames=10 ** 6), swapped)
    assert all(e["frame"] > third[-1] for e in whole), whole


def test_the_evaluation_behind_the_readme_counts_found_and_false_events():
    from safecity.evaluation.repeated_presence import evaluate_clips

    table = evaluate_clips(seeds=(0,), scenarios=["repeated_presence", "normal"], tracks="script")
    returns, normal = (table[table["scenario"] == s].iloc[0] for s in ("repeated_presence", "normal"))
    assert returns["found"] and returns["events"] == 1 and returns["false_events"] == 0
    assert not normal["found"] and normal["events"] == normal["false_events"] == 0
    with pytest.raises(ValueError, match="tracks must be"):
        evaluate_clips(tracks="ground truth")
