"""Tuning an alarm threshold on labelled footage: the analyst's side of the alarms.

An analyst moves a detector's threshold and sees, at once, the alarms it would
raise on labelled clips: frame-level precision and recall, and false alarms
per camera-hour (runs of alarm frames that touch no labelled frame, per hour of
footage). The figures come from plain functions over arrays
(``alarm_metrics``); ``AlarmTuner`` is the ``param.Parameterized`` object a
notebook shows in a cell and ``dashboards/tuning.py`` serves unchanged.
"""
from __future__ import annotations

import functools

from collections.abc import Sequence

import numpy as np
import pandas as pd
import param

#: Clips scored at start-up: one normal clip to fit on, then clips with scripted events.
TRAIN_SCENARIO = "normal"
TEST_SCENARIOS = ("normal", "wrong_way", "crowd_movement", "fire")
CLIP_SIZE = (240, 180)  # half the default size: start-up stays a few seconds


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) half-open index ranges of the True runs of a boolean array."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


def alarm_counts(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, int]:
    """Frame and alarm-run counts of one clip when frames scoring above ``threshold`` alarm."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D and of one length, "
                         f"got {scores.shape} and {labels.shape}")
    alarm = scores > threshold
    false_runs = sum(1 for a, b in _runs(alarm) if not labels[a:b].any())
    return {"frames": len(scores), "alarm_frames": int(alarm.sum()),
            "true_positive_frames": int((alarm & labels).sum()),
            "labelled_frames": int(labels.sum()), "false_alarms": false_runs}


def alarm_metrics(scores, labels, threshold: float, fps: float) -> dict[str, float]:
    """Precision, recall and false alarms per camera-hour at ``threshold``.

    ``scores`` and ``labels`` (True on frames inside a labelled event) are one
    clip's arrays, or lists of arrays, one per clip, so that an alarm run never
    spans two clips. Precision and recall count frames; precision is NaN when
    nothing alarms and recall NaN when nothing is labelled. A false alarm is a
    run of consecutive alarm frames that overlaps no labelled frame.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if isinstance(scores, np.ndarray) and scores.ndim == 1:
        scores, labels = [scores], [labels]
    if len(scores) != len(labels):
        raise ValueError("give as many label arrays as score arrays")
    total = pd.DataFrame([alarm_counts(s, y, threshold) for s, y in zip(scores, labels)]).sum()
    hours = total["frames"] / fps / 3600.0
    return {
        "precision": float(total["true_positive_frames"] / total["alarm_frames"])
        if total["alarm_frames"] else float("nan"),
        "recall": float(total["true_positive_frames"] / total["labelled_frames"])
        if total["labelled_frames"] else float("nan"),
        "false_alarms": int(total["false_alarms"]),
        "false_alarms_per_camera_hour": float(total["false_alarms"] / hours) if hours else float("nan"),
        "hours": float(hours),
    }


def event_labels(truth: pd.DataFrame, n_frames: int) -> np.ndarray:
    """True on the frames inside any scripted event (``start_frame``..``end_frame`` inclusive)."""
    labels = np.zeros(n_frames, dtype=bool)
    for start, end in zip(truth.get("start_frame", []), truth.get("end_frame", [])):
        labels[int(start):int(end) + 1] = True
    return labels


def synthetic_labelled_scores(seed: int = 0, scenarios: Sequence[str] = TEST_SCENARIOS,
                              size=CLIP_SIZE, fps: int = 10):
    """The video detector fitted on a normal clip, its scores on scripted clips, and their labels.

    Returns ``(names, scores, labels, detector)`` with one score and label array per clip.
    """
    from safecity.sim.clips import render_clip
    from safecity.video.anomaly import FlowMomentumScorer

    train = render_clip(TRAIN_SCENARIO, seed=seed, size=size, fps=fps)
    detector = FlowMomentumScorer().fit([train.frames])
    names, scores, labels = [], [], []
    for name in scenarios:
        clip = render_clip(name, seed=seed + 1, size=size, fps=fps)
        s = detector.score_samples(clip.frames)
        names.append(name)
        scores.append(s)
        labels.append(event_labels(clip.truth, len(s)))
    return names, scores, labels, detector


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.2f}"


class AlarmTuner(param.Parameterized):
    """An alarm threshold over precomputed per-frame scores of labelled clips."""

    threshold = param.Number(default=2.5, bounds=(0.0, 8.0), step=0.05,
                             doc="Frames scoring above this raise an alarm (px/frame of momentum).")
    role = param.String(default=None, allow_None=True, constant=True, precedence=-1,
                        doc="The session's role (safecity.app.access); only an analyst may tune.")

    def __init__(self, names: Sequence[str], scores: Sequence[np.ndarray],
                 labels: Sequence[np.ndarray], fps: float = 10.0, **params):
        from safecity.app import access

        params.setdefault("role", access.current_role())
        super().__init__(**params)
        # a constant parameter is a disabled widget, and setting it raises
        self.param.threshold.constant = not access.can_tune(self.role)
        self.names = list(names)
        self.scores = [np.asarray(s, dtype=float) for s in scores]
        self.labels = [np.asarray(y, dtype=bool) for y in labels]
        self.fps = float(fps)
        top = float(max(s.max() for s in self.scores))
        self.param.threshold.bounds = (0.0, round(top * 1.05 + 0.05, 2))

    @classmethod
    def from_synthetic_clips(cls, seed: int = 0, **params) -> "AlarmTuner":
        """Tuner over the video detector's scores on synthetic clips, starting at its fitted threshold."""
        names, scores, labels, detector = synthetic_labelled_scores(seed)
        params.setdefault("threshold", round(detector.threshold_, 2))
        return cls(names, scores, labels, fps=10, **params)

    def metrics(self) -> dict[str, float]:
        return alarm_metrics(self.scores, self.labels, self.threshold, self.fps)

    @param.depends("threshold")
    def readout(self):
        import panel as pn

        m = self.metrics()
        text = (f"**Threshold {self.threshold:.2f}**  \n"
                f"Precision: **{_fmt(m['precision'])}** · Recall: **{_fmt(m['recall'])}**  \n"
                f"False alarms: **{m['false_alarms']}** in {m['hours'] * 60:.1f} camera-minutes "
                f"= **{_fmt(m['false_alarms_per_camera_hour'])}** per camera-hour")
        return pn.pane.Markdown(text, css_classes=["tuning-readout"], width=520)

    @param.depends("threshold")
    def plot(self):
        import holoviews as hv
        import holoviews.plotting.bokeh  # noqa: F401  registers the backend the options are for
        offset, curves = 0, []
        for name, s, y in zip(self.names, self.scores, self.labels):
            t = (offset + np.arange(len(s))) / self.fps
            for a, b in _runs(y):
                curves.append(hv.VSpan(t[a], t[b - 1]).opts(color="orange", alpha=0.25))
            curves.append(hv.Curve((t, s), "time (s)", "score", label=name))
            offset += len(s)
        curves.append(hv.HLine(self.threshold).opts(color="red", line_dash="dashed"))
        return hv.Overlay(curves).opts(width=800, height=320, legend_position="top_left",
                                       title="Scores, labelled events (orange) and threshold (red)")


class LedgerTuner(param.Parameterized):
    """A detector's threshold moved over its reviewed alarms (the alarm ledger's verdicts).

    Where ``AlarmTuner`` replays labelled clips, this starts from the field: of
    the alarms operators judged, which would a higher threshold have removed?
    The figures are ``ledger.threshold_effect``'s.
    """

    kind = param.Selector(objects=[], doc="The detector (event kind) whose threshold moves.")
    threshold = param.Number(default=0.0, bounds=(0.0, 1.0), step=0.01,
                             doc="Alarms scoring below this would not have been raised.")
    role = param.String(default=None, allow_None=True, constant=True, precedence=-1,
                        doc="The session's role (safecity.app.access); only an analyst may tune.")

    def __init__(self, verdicts: pd.DataFrame, source: str = "", **params):
        from safecity.app import access

        params.setdefault("role", access.current_role())
        events = verdicts[(verdicts["alarm_type"] == "event") & verdicts["score"].notna()]
        if events.empty:
            raise ValueError("the ledger holds no reviewed event with a score: nothing to tune")
        kinds = sorted(events["kind"].unique())
        # the detector with the most false alarms first: where tuning matters
        false = events[events["verdict"] == "false_alarm"].groupby("kind").size()
        first = false.idxmax() if len(false) else kinds[0]
        self.param.kind.objects = kinds
        params.setdefault("kind", first)
        super().__init__(**params)
        self.param.threshold.constant = not access.can_tune(self.role)
        self.verdicts, self.source = verdicts, source
        top = float(events["score"].max())
        self.param.threshold.bounds = (0.0, max(1.0, round(top + 0.01, 2)))

    @classmethod
    def from_state_dir(cls, state_dir, **params) -> LedgerTuner:
        """Over the verdicts of a served city's state directory (its state.sqlite)."""
        from safecity.evaluation.ledger import read_verdicts

        verdicts = read_verdicts(state_dir)
        if not verdicts["score"].notna().any():
            raise ValueError(f"{state_dir}: no reviewed alarm with a score yet: operators give "
                             "verdicts on the operations console")
        return cls(verdicts, source=f"verdicts of {state_dir}", **params)

    @classmethod
    def from_simulated_review(cls, days: int = 3, seed: int = 0, n_cameras: int = 40,
                              **params) -> LedgerTuner:
        """Over a synthetic city's alarms, every one reviewed from its ground truth."""
        return cls(_simulated_verdicts(days, seed, n_cameras), source=f"a synthetic city ({days} days) reviewed from its truth",
                   **params)

    def effect(self):
        from safecity.evaluation.ledger import threshold_effect

        return threshold_effect(self.verdicts, self.kind, self.threshold)

    @param.depends("kind", "threshold")
    def readout(self):
        import panel as pn

        e = self.effect()
        precision = ("n/a" if np.isnan(e.precision) else
                     f"{e.precision:.2f} ({e.precision_low:.2f}–{e.precision_high:.2f})")
        text = (f"**{e.kind} at threshold {e.threshold:.2f}**  \n"
                f"Confirmed alarms lost: **{e.confirmed_lost}** (kept {e.confirmed_kept})  \n"
                f"False alarms avoided: **{e.false_alarms_avoided}** (kept {e.false_alarms_kept})  \n"
                f"Unsure removed: {e.unsure_lost} (kept {e.unsure_kept})  \n"
                f"Precision: **{precision}**, 95% Wilson interval  \n"
                f"From {self.source}")
        return pn.pane.Markdown(text, css_classes=["ledger-readout"], width=520)

    @param.depends("kind", "threshold")
    def plot(self):
        import holoviews as hv
        import holoviews.plotting.bokeh  # registers the backend the options are for

        mine = self.verdicts[(self.verdicts["kind"] == self.kind)
                             & (self.verdicts["alarm_type"] == "event")]
        spikes = [hv.Spikes(mine.loc[mine["verdict"] == v, "score"].to_numpy(dtype=float),
                            "score", label=v).opts(color=c, line_width=2)
                  for v, c in (("confirmed", "seagreen"), ("false_alarm", "crimson"),
                               ("unsure", "grey"))]
        return hv.Overlay([*spikes, hv.VLine(self.threshold).opts(color="black", line_dash="dashed")]
                          ).opts(width=800, height=200, legend_position="top_left", yaxis=None,
                                 title="Reviewed alarms by score; the threshold (dashed)")


@functools.lru_cache(maxsize=2)
def _simulated_verdicts(days: int, seed: int, n_cameras: int) -> pd.DataFrame:
    """A synthetic city's verdicts, reviewed from its truth once per process (tens of seconds)."""
    import tempfile

    from safecity.evaluation.ledger import read_verdicts, simulated_ledger_dir

    with tempfile.TemporaryDirectory() as tmp:
        simulated_ledger_dir(tmp, days=days, seed=seed, n_cameras=n_cameras)
        return read_verdicts(tmp)
