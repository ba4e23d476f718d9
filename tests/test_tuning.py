"""Alarm metrics on hand-computed cases, and the tuner object the dashboard serves."""
import math

import numpy as np
import pandas as pd
import pytest

from safecity.evaluation.tuning import AlarmTuner, alarm_counts, alarm_metrics, event_labels


def test_hand_computed_case():
    # frames:    0    1    2    3    4    5    6    7    8    9
    scores = np.array([0.0, 3.0, 3.0, 0.0, 0.0, 5.0, 5.0, 5.0, 0.0, 4.0])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0], dtype=bool)
    m = alarm_metrics(scores, labels, threshold=2.0, fps=1.0)
    # alarms on 1,2 (false run), 5,6,7 (hits the label) and 9 (false run): 6 alarm frames, 2 true
    assert m["precision"] == pytest.approx(2 / 6)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["false_alarms"] == 2
    assert m["hours"] == pytest.approx(10 / 3600)
    assert m["false_alarms_per_camera_hour"] == pytest.approx(2 / (10 / 3600))
    m = alarm_metrics(scores, labels, threshold=4.5, fps=1.0)
    assert (m["precision"], m["recall"], m["false_alarms"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 0)


def test_score_at_threshold_does_not_alarm_and_empty_cases_are_nan():
    scores, labels = np.array([1.0, 2.0]), np.array([False, False])
    m = alarm_metrics(scores, labels, threshold=2.0, fps=10)
    assert math.isnan(m["precision"]) and math.isnan(m["recall"]) and m["false_alarms"] == 0


def test_runs_do_not_cross_clips():
    one = alarm_counts(np.array([0, 0, 3, 3]), np.zeros(4, bool), 1)
    assert one["false_alarms"] == 1
    m = alarm_metrics([np.array([0, 3.0]), np.array([3.0, 0])], [np.zeros(2, bool)] * 2, 1, fps=2)
    assert m["false_alarms"] == 2 and m["hours"] == pytest.approx(2 / 3600)


def test_mismatched_lengths_and_bad_fps_are_refused():
    with pytest.raises(ValueError):
        alarm_metrics(np.zeros(3), np.zeros(2, bool), 1, fps=10)
    with pytest.raises(ValueError):
        alarm_metrics(np.zeros(3), np.zeros(3, bool), 1, fps=0)


def test_raising_the_threshold_never_increases_false_alarm_frames():
    rng = np.random.default_rng(0)
    scores = [rng.gamma(2.0, 1.0, 500) for _ in range(3)]
    labels = [rng.random(500) < 0.1 for _ in range(3)]
    previous = None
    for threshold in np.linspace(0, max(s.max() for s in scores) + 1, 80):
        counts = [alarm_counts(s, y, threshold) for s, y in zip(scores, labels)]
        false_frames = sum(c["alarm_frames"] - c["true_positive_frames"] for c in counts)
        if previous is not None:
            assert false_frames <= previous
        previous = false_frames
    assert previous == 0 and alarm_metrics(scores, labels, threshold, fps=10)["false_alarms"] == 0


def test_raising_the_threshold_can_split_one_false_alarm_run_in_two():
    # Why the monotone guarantee above is on frames: a dip inside an alarm run splits it.
    scores, labels = np.array([3.0, 1.5, 3.0]), np.zeros(3, bool)
    assert alarm_metrics(scores, labels, 1.0, fps=1)["false_alarms"] == 1
    assert alarm_metrics(scores, labels, 2.0, fps=1)["false_alarms"] == 2


def test_false_alarm_runs_never_increase_when_scores_are_unimodal_bumps():
    # Each false bump rises then falls, so a higher threshold can only shrink or drop its run.
    bump = np.array([0, 1, 2, 3, 4, 3, 2, 1, 0], float)
    scores = np.concatenate([bump, bump * 2, np.zeros(5), bump * 0.5])
    labels = np.zeros(len(scores), bool)
    counts = [alarm_metrics(scores, labels, t, fps=1)["false_alarms"] for t in np.linspace(0, 9, 50)]
    assert counts == sorted(counts, reverse=True) and counts[0] == 3 and counts[-1] == 0


def test_event_labels_inclusive_spans():
    truth = pd.DataFrame({"start_frame": [1, 6], "end_frame": [2, 6]})
    assert event_labels(truth, 8).tolist() == [0, 1, 1, 0, 0, 0, 1, 0]


def test_tuner_readout_follows_threshold():
    rng = np.random.default_rng(1)
    labels = np.zeros(300, bool)
    labels[100:150] = True
    scores = rng.random(300) + 3 * labels
    tuner = AlarmTuner(["clip"], [scores], [labels], fps=10, threshold=0.5)
    low = tuner.readout().object
    assert tuner.metrics()["recall"] == 1.0
    tuner.threshold = 3.5
    assert tuner.readout().object != low
    assert tuner.metrics()["precision"] == 1.0 and tuner.metrics()["false_alarms"] == 0
    assert tuner.param.threshold.bounds[1] >= scores.max()
    tuner.plot()
