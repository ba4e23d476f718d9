"""Video anomaly detection for a fixed camera: learn normal footage, score every frame of new footage.

The detector measures *object momentum*: dense optical flow (OpenCV's DIS)
between consecutive grayscale frames, averaged as a vector field over a
window about one pedestrian tall. Inside such a window the swinging limbs of
a walker cancel and what is left is roughly "moving area x translation
speed", so a cyclist, a skateboarder or a car (large and fast) stands out from
walkers. A frame's score is the largest windowed flow magnitude (pixels per
frame) away from the image border, smoothed over time. Only normal footage is
needed: fitting learns the window from the height of the moving blobs in it
and an alarm threshold from its scores. No per-clip normalisation, no GPU.

Frames are read at the edge (``read_frames``); everything else takes arrays.
Scores are higher for more anomalous frames (the opposite of scikit-learn's
outlier detectors, whose ``score_samples`` is higher for normal samples), and
``predict`` answers 1 for an alarm and 0 otherwise.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from safecity.data.frames import FrameSource

#: Window used when the training footage shows too few moving blobs to measure
#: them: 31 px is a pedestrian's height on UCSD Ped2 (240 x 360 frames), where
#: the method was developed; windows from 15 to 46 px give the same ranking there.
DEFAULT_WINDOW = 31

#: Fewer moving blobs than this in the training footage: the window is not learned.
MIN_BLOBS = 20

SOURCE = "vad"

Frames = Iterable[np.ndarray]


def _frames(clip) -> Frames:
    """A clip given as a path becomes a ``FrameSource``; arrays pass through."""
    if isinstance(clip, (str, os.PathLike)):
        return FrameSource(clip)
    if isinstance(clip, np.ndarray) and clip.ndim < 3:
        raise ValueError(f"a clip is a sequence of frames; got one array of shape {clip.shape}")
    return clip


def _clips(clips) -> list:
    """A list of clips, refusing the easy mistake of passing one clip where several are expected."""
    if isinstance(clips, (str, os.PathLike)):
        raise ValueError(f"expected a list of clips, got the single path {str(clips)!r}; "
                         "wrap it in a list")
    clips = list(clips)
    if any(isinstance(c, np.ndarray) and c.ndim == 2 for c in clips):
        raise ValueError("expected a list of clips, got a list of frames; wrap the clip in a list")
    return clips


def _gray(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if frame.dtype != np.uint8:  # DIS needs 8-bit images
        if frame.dtype.kind == "f" and frame.size and float(frame.max()) <= 1.0:
            frame = frame * 255.0  # images as floats in [0, 1]
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame


# =========================================================================== flow and scores


def _dis(finest_scale: int | None) -> cv2.DISOpticalFlow:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    if finest_scale is not None:
        # The FAST preset computes flow at 1/4 resolution (scale 2); 1/2 (scale 1)
        # resolves pedestrians 20-40 px tall well enough to separate their speeds.
        dis.setFinestScale(int(finest_scale))
    return dis


def _flows(frames: Frames, finest_scale: int | None, stride: int = 1) -> Iterator[np.ndarray]:
    """Optical flow (H x W x 2, px/frame) from each frame to the next; every ``stride``-th pair only."""
    dis = _dis(finest_scale)
    prev = None
    for i, frame in enumerate(frames):
        frame = _gray(frame)
        if prev is not None and (i - 1) % stride == 0:
            yield dis.calc(prev, frame, None)
        prev = frame


def _inner(a: np.ndarray, margin: int) -> np.ndarray:
    """``a`` without a border of ``margin`` pixels, where flow is least reliable."""
    if margin <= 0 or 2 * margin >= min(a.shape[:2]):
        return a
    return a[margin:-margin, margin:-margin]


def _frame_scores(frames: Frames, finest_scale: int | None,
                  score: Callable[[np.ndarray], float]) -> np.ndarray:
    """``score(flow)`` for each frame, the flow coming from the frame before.

    The first frame has no predecessor and takes the second frame's score; a
    clip of one frame scores 0.
    """
    dis = _dis(finest_scale)
    prev, scores, n = None, [], 0
    for frame in frames:
        frame = _gray(frame)
        n += 1
        if prev is not None:
            scores.append(score(dis.calc(prev, frame, None)))
        prev = frame
    if not scores:
        return np.zeros(n)
    return np.asarray([scores[0]] + scores, dtype=float)


def momentum_scores(frames: Frames, window: int = DEFAULT_WINDOW, margin: int = 8,
                    finest_scale: int | None = 1) -> np.ndarray:
    """Raw (unsmoothed) object-momentum score of each frame, in pixels per frame.

    The flow *vector* field is averaged over a ``window`` x ``window`` box and
    the largest magnitude of that mean, ``margin`` pixels or more from the
    border, is the frame's score.
    """
    k = (int(window), int(window))

    def score(flow):
        mean = cv2.boxFilter(flow, -1, k)
        return float(_inner(cv2.magnitude(mean[..., 0], mean[..., 1]), margin).max())

    return _frame_scores(frames, finest_scale, score)


def smooth(scores: np.ndarray, smoothing: float = 5.0, causal: bool = False) -> np.ndarray:
    """Smooth per-frame scores over time: anomalies last, flow glitches do not.

    Centred Gaussian with standard deviation ``smoothing`` frames, or, with
    ``causal``, an exponential moving average of span ``smoothing`` (weight
    2 / (span + 1) on the newest frame), which uses only past frames and so
    gives the same values live as offline.
    """
    scores = np.asarray(scores, dtype=float)
    if smoothing <= 0 or len(scores) < 2:
        return scores
    if causal:
        alpha = 2.0 / (smoothing + 1.0)
        out, _ = lfilter([alpha], [1.0, alpha - 1.0], scores, zi=[(1.0 - alpha) * scores[0]])
        return out
    return gaussian_filter1d(scores, smoothing)


def flow_percentile_scores(frames: Frames, q: float = 99.9, smoothing: float = 5.0) -> np.ndarray:
    """Baseline: the ``q``-th percentile of optical-flow magnitude per frame, smoothed (Gaussian, frames).

    DIS with its FAST preset unchanged; no window, no training. It is the plain
    "something moves fast" detector that the momentum score has to beat.
    """
    def score(flow):
        return float(np.percentile(cv2.magnitude(flow[..., 0], flow[..., 1]), q))

    return smooth(_frame_scores(_frames(frames), None, score), smoothing)


# =========================================================================== window


def moving_blob_heights(flow: np.ndarray, relative: float = 0.5, q: float = 99.9) -> list[int]:
    """Heights (px) of the blobs that move in one flow field.

    A pixel moves when its flow exceeds ``relative`` x the frame's ``q``-th
    percentile of flow magnitude: relative to the frame's fastest motion, so
    the rule does not depend on how many pixels per frame people cover on a
    given camera. A frame where nothing moves (that percentile under 10x the
    median, i.e. noise) has no blobs; blobs under 0.05% of the frame are noise.
    """
    mag = cv2.magnitude(flow[..., 0], flow[..., 1])
    peak = float(np.percentile(mag, q))
    if peak <= 10 * float(np.median(mag)):
        return []
    mask = cv2.morphologyEx((mag > relative * peak).astype(np.uint8), cv2.MORPH_OPEN,
                            np.ones((3, 3), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    min_area = max(9.0, 5e-4 * mag.size)
    return [int(h) for h, area in stats[1:, [cv2.CC_STAT_HEIGHT, cv2.CC_STAT_AREA]] if area >= min_area]


def estimate_window(clips: Iterable, finest_scale: int | None = 1, stride: int = 4,
                    progress: Callable[[str], None] | None = None) -> tuple[int, float]:
    """The box window for a camera: the median height of its moving blobs; and that median.

    Looks at every ``stride``-th frame pair of each clip. The window is the
    odd number nearest the median, clamped to [9, a third of the frame's
    short side]. With fewer than ``MIN_BLOBS`` blobs it is ``DEFAULT_WINDOW``
    (with a warning) and the median is NaN.
    """
    heights, shape = [], None
    for clip in clips:
        for flow in _flows(_frames(clip), finest_scale, stride=stride):
            shape = shape or flow.shape[:2]
            heights += moving_blob_heights(flow)
        _tick(progress, "fit: object size")
    if len(heights) < MIN_BLOBS:
        warnings.warn(f"only {len(heights)} moving blobs in the training footage (need {MIN_BLOBS}): "
                      f"window set to the default {DEFAULT_WINDOW} px", stacklevel=2)
        return DEFAULT_WINDOW, float("nan")
    estimate = float(np.median(heights))
    window = int(np.clip(round(estimate), 9, max(9, min(shape) // 3)))
    return window + 1 - window % 2, estimate


# =========================================================================== scorer


class FlowMomentumScorer(BaseEstimator):
    """Frame-level anomaly scorer for a fixed camera, fitted on normal footage only.

    Parameters
    ----------
    window : int or None
        Side (px) of the box over which flow vectors are averaged: about one
        person's height. None learns it at ``fit`` from the median height of
        the moving blobs in the training footage (``DEFAULT_WINDOW`` if too
        few are seen).
    margin : int
        Border (px) ignored when taking the frame's maximum.
    smoothing : float
        Temporal smoothing in frames: Gaussian sigma, or EMA span if ``causal``.
    causal : bool
        Use only past frames (exponential moving average), for live use.
    finest_scale : int
        DIS finest pyramid level: 1 computes flow at half resolution, 2 (the
        FAST preset's default) at a quarter.
    false_alarm_rate : float
        Share of the normal training frames allowed above ``threshold_``.

    Attributes
    ----------
    window_ : int            the window used.
    window_estimate_ : float the median moving-blob height measured (NaN if not learned).
    threshold_ : float       alarm threshold: the (1 - false_alarm_rate) quantile
                             of the smoothed training scores.
    n_frames_seen_ : int     training frames scored.
    """

    def __init__(self, window: int | None = None, margin: int = 8, smoothing: float = 5.0,
                 causal: bool = False, finest_scale: int = 1, false_alarm_rate: float = 0.001):
        self.window = window
        self.margin = margin
        self.smoothing = smoothing
        self.causal = causal
        self.finest_scale = finest_scale
        self.false_alarm_rate = false_alarm_rate

    def fit(self, clips: Iterable, y=None, *, progress: Callable[[str], None] | None = None):
        """Learn the window (if not given) and the alarm threshold from normal clips.

        ``clips``: folders of frames, video files, or sequences of frames. Two
        passes over the clips when the window is learned (a sparse one, every
        4th frame pair, for blob heights, then the scoring pass), so a clip
        cannot then be a one-pass iterator.
        """
        clips = _clips(clips)
        if not clips:
            raise ValueError("fit needs at least one training clip")
        if not 0 <= self.false_alarm_rate < 1:
            raise ValueError(f"false_alarm_rate must be in [0, 1), got {self.false_alarm_rate!r}")
        if self.window is None:
            if any(isinstance(c, Iterator) for c in clips):  # read twice: a generator would be empty
                raise ValueError("to learn the window each clip must be a path, list or array, "
                                 "not a one-pass iterator (or give window)")
            self.window_, self.window_estimate_ = estimate_window(clips, self.finest_scale,
                                                                  progress=progress)
        else:
            if int(self.window) < 1:
                raise ValueError(f"window must be a positive number of pixels, got {self.window!r}")
            self.window_, self.window_estimate_ = int(self.window), float("nan")
        scores = self.score_clips(clips, progress=progress, stage="fit: scores")
        pooled = np.concatenate(scores) if scores else np.zeros(0)
        if len(pooled) == 0:
            raise ValueError("the training clips hold no readable frame")
        self.n_frames_seen_ = int(len(pooled))
        self.threshold_ = float(np.quantile(pooled, 1.0 - self.false_alarm_rate))
        return self

    def score_samples(self, frames) -> np.ndarray:
        """One smoothed score per frame of a clip (px/frame); higher is more anomalous."""
        check_is_fitted(self, "window_")
        raw = momentum_scores(_frames(frames), self.window_, self.margin, self.finest_scale)
        return smooth(raw, self.smoothing, self.causal)

    def score_clips(self, clips: Iterable, progress: Callable[[str], None] | None = None,
                    stage: str = "score") -> list[np.ndarray]:
        """``score_samples`` of each clip; clips are smoothed separately."""
        check_is_fitted(self, "window_")
        out = []
        for clip in _clips(clips):
            out.append(self.score_samples(clip))
            _tick(progress, stage)
        return out

    def decision_function(self, frames) -> np.ndarray:
        """Score minus threshold: positive on alarm frames."""
        check_is_fitted(self, "threshold_")
        return self.score_samples(frames) - self.threshold_

    def predict(self, frames) -> np.ndarray:
        """1 where a frame's score exceeds ``threshold_``, else 0."""
        return (self.decision_function(frames) > 0).astype(int)


def _tick(progress, stage: str) -> None:
    if progress is not None:
        progress(stage)


# =========================================================================== events


def to_events(scores: Sequence[float], timestamps, sensor_id: str, threshold: float,
              lon: float | None = None, lat: float | None = None) -> pd.DataFrame:
    """``anomaly`` events from per-frame scores: one per contiguous run of frames above ``threshold``.

    ``timestamps`` gives each frame's time (anything ``pandas.to_datetime``
    reads; naive times are UTC). ts is the run's first frame, when a live
    system would have raised the alarm; score is the run's peak divided by the
    threshold; details hold the threshold, the peak score and the frame span.
    """
    from safecity.data.schema import empty, validate

    scores = np.asarray(scores, dtype=float)
    ts = pd.to_datetime(pd.Series(list(timestamps)), utc=True)
    if len(ts) != len(scores):
        raise ValueError(f"{len(scores)} scores but {len(ts)} timestamps")
    over = scores > threshold
    if not over.any():
        return empty("events")
    edges = np.flatnonzero(np.diff(np.r_[0, over.astype(np.int8), 0]))
    rows = []
    for first, stop in zip(edges[::2], edges[1::2]):
        last = stop - 1
        peak = first + int(np.argmax(scores[first:stop]))
        start = ts.iloc[first]
        details = {"threshold": float(threshold), "peak_score": round(float(scores[peak]), 4),
                   "first_frame": int(first), "last_frame": int(last), "peak_frame": int(peak),
                   "frames": int(stop - first), "start": start.isoformat(),
                   "end": ts.iloc[last].isoformat(), "peak_time": ts.iloc[peak].isoformat()}
        rows.append({
            "event_id": f"anomaly-{SOURCE}-{sensor_id}-{start:%Y%m%dT%H%M%S.%fZ}",
            "ts": start, "kind": "anomaly", "sensor_id": str(sensor_id),
            "lon": np.nan if lon is None else lon, "lat": np.nan if lat is None else lat,
            "score": round(float(scores[peak]) / threshold, 4) if threshold else np.inf,
            "source": SOURCE, "details": json.dumps(details)})
    return validate(pd.DataFrame(rows), "events")


# =========================================================================== evaluation


class LabelsError(ValueError):
    """A labels file does not fit the test clips; the message names the file and the column or video."""


def read_labels(labels: str | os.PathLike | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Frame labels (video, frame_file, abnormal 0/1) and the name to use in errors."""
    if isinstance(labels, pd.DataFrame):
        table, name = labels.copy(), "labels"
    else:
        name = str(labels)
        try:
            table = pd.read_csv(labels, dtype={"video": str, "frame_file": str})
        except FileNotFoundError:
            raise LabelsError(f"{name}: no such labels file") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise LabelsError(f"{name}: not a readable CSV ({err})") from None
    missing = [c for c in ("video", "frame_file", "abnormal") if c not in table.columns]
    if missing:
        raise LabelsError(f"{name}: missing column {', '.join(repr(c) for c in missing)} (labels need "
                          f"video, frame_file, abnormal; the file has {', '.join(map(str, table.columns))})")
    table["video"] = table["video"].astype(str)
    table["frame_file"] = table["frame_file"].astype(str)
    abnormal = pd.to_numeric(table["abnormal"], errors="coerce")
    bad = table.index[~abnormal.isin([0, 1])].tolist()
    if bad:
        shown = ", ".join(f"{r + 2} ({table['abnormal'][r]!r})" for r in bad[:10])
        raise LabelsError(f"{name}: column 'abnormal' must be 0 or 1; it is not at lines {shown}")
    table["abnormal"] = abnormal.astype(int)
    return table, name


def _clip_labels(table: pd.DataFrame, name: str, folder: Path) -> pd.DataFrame:
    """The labels of one test clip folder, checked against the folder's image files."""
    video = folder.name
    rows = table[table["video"] == video]
    if rows.empty:
        raise LabelsError(f"{name}: column 'video' has no labels for test clip '{video}' ({folder})")
    files = [f.name for f in FrameSource(folder).files()]
    if len(rows) != len(files):
        raise LabelsError(f"{name}: video '{video}' has {len(rows)} labelled frames but {folder} "
                          f"holds {len(files)} image files")
    unknown = sorted(set(rows["frame_file"]) - set(files))
    if unknown:
        raise LabelsError(f"{name}: video '{video}', column 'frame_file' names files not in {folder}: "
                          f"{', '.join(unknown[:5])}")
    return rows.set_index("frame_file")["abnormal"]


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, s)), 4) if 0 < y.sum() < len(y) else None


def _timed(fn, items, progress, stage) -> tuple[list, float]:
    """Run ``fn`` on each item on one OpenCV thread; the results and the seconds taken."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        start = time.perf_counter()
        out = []
        for item in items:
            out.append(fn(item))
            _tick(progress, stage)
        return out, time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)


def evaluate(train_dirs: Sequence[str | os.PathLike], test_dirs: Sequence[str | os.PathLike],
             labels: str | os.PathLike | pd.DataFrame, scorer: FlowMomentumScorer | None = None,
             baseline_q: float = 99.9, progress: Callable[[str], None] | None = None) -> dict:
    """Fit on normal clips, score labelled test clips; frame-level ROC AUC against the flow baseline.

    Each test folder's name is its ``video`` in the labels; frames are matched
    to labels by file name. Frames per second are measured on one OpenCV
    thread, decoding included (a test clip at a time), for the scorer and
    the baseline in the same run. AUCs are pooled over all test frames, so
    one threshold must work for every clip, as it would live.
    """
    scorer = FlowMomentumScorer() if scorer is None else scorer
    test_dirs = [Path(d) for d in test_dirs]
    table, name = read_labels(labels)
    truth = {d.name: _clip_labels(table, name, d) for d in test_dirs}
    extra = sorted(set(table["video"]) - set(truth))
    if extra:
        warnings.warn(f"{name}: labels of videos without a test folder are not used: {', '.join(extra)}",
                      stacklevel=2)

    start = time.perf_counter()
    scorer.fit([Path(d) for d in train_dirs], progress=progress)
    fit_seconds = time.perf_counter() - start

    def ours(folder):
        source = FrameSource(folder)
        return scorer.score_samples(source), source

    def baseline(folder):
        return flow_percentile_scores(FrameSource(folder), q=baseline_q, smoothing=scorer.smoothing)

    scored, seconds = _timed(ours, test_dirs, progress, "test: scores")
    base, base_seconds = _timed(baseline, test_dirs, progress, "test: baseline")

    ys, ss, bs, per_clip, base_per_clip, skipped = [], [], [], {}, {}, {}
    for folder, (s, source), b in zip(test_dirs, scored, base):
        y = truth[folder.name].loc[source.names].to_numpy()  # unreadable frames have no score
        if source.skipped:
            skipped[folder.name] = source.skipped
        ys.append(y), ss.append(s), bs.append(b)
        per_clip[folder.name] = _auc(y, s)
        base_per_clip[folder.name] = _auc(y, b)
    y, s, b = np.concatenate(ys), np.concatenate(ss), np.concatenate(bs)
    if not 0 < y.sum() < len(y):
        raise LabelsError(f"{name}: the test frames need both normal (0) and abnormal (1) labels "
                          f"for an AUC; all {len(y)} are {int(y[0])}")
    alarm = s > scorer.threshold_
    return {
        "auc": _auc(y, s), "fps": round(len(s) / seconds, 1),
        "baseline_auc": _auc(y, b), "baseline_fps": round(len(b) / base_seconds, 1),
        "per_clip_auc": per_clip, "baseline_per_clip_auc": base_per_clip,
        "threshold": round(scorer.threshold_, 4),
        "fpr_at_threshold": round(float(alarm[y == 0].mean()), 4),
        "tpr_at_threshold": round(float(alarm[y == 1].mean()), 4),
        "frames": int(len(s)), "abnormal_frames": int(y.sum()), "train_frames": scorer.n_frames_seen_,
        "train_clips": len(train_dirs), "test_clips": len(test_dirs),
        "window": scorer.window_,
        "window_estimate": None if np.isnan(scorer.window_estimate_) else scorer.window_estimate_,
        "skipped_frames": skipped, "fit_seconds": round(fit_seconds, 2),
        "params": scorer.get_params(), "baseline": f"flow magnitude q{baseline_q:g} (DIS FAST), smoothed",
    }
