"""Crowd counting for a fixed camera: how many people are in the frame, and in each zone.

People far from the camera cover fewer pixels than people near it, so pixel
measurements are weighted by a *perspective map* (how much ground, relative
to the nearest row, one pixel of each row stands for) before they are
counted. ``CrowdCounter`` learns a *density* rather than one number per
frame: the image is cut into square cells, each cell is described by what
sits in it and around it (foreground against a background learned on the
training frames, edges on that foreground, gradient orientations), and a
gradient-boosted regressor learns how many annotated heads the cell holds.
A frame's count is the sum of its density map, a zone's count the sum over
the zone's polygon, so counts per zone add up to the frame's count.

``ForegroundEdgeRidge`` is the classical baseline: one ridge regression on the
perspective-weighted foreground area and edge pixels of the whole frame.
``evaluate`` fits both in one run and reports their errors side by side.

Frames are read at the edge (``FrameFiles``, ``read_counts``); the estimators
take arrays (BGR or grayscale ``uint8``). No face or identity is involved:
the features are pixel statistics per cell.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import shapely
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

#: Grey-level difference from the background above which a pixel is foreground.
FOREGROUND_THRESHOLD = 20

#: Canny thresholds for the edge pixels (OpenCV's usual 1:2 ratio).
CANNY_LOW, CANNY_HIGH = 50, 100

#: Gradient orientation bins per cell (unsigned, 0..180 degrees, as in HOG).
ORIENTATIONS = 6

#: Training frames used for the median background (more gives the same median, slower).
BACKGROUND_SAMPLES = 100

#: How far (pixels) around the foreground the background is left alone when it adapts.
ADAPT_MARGIN = 4


class CountingDataError(ValueError):
    """A counts, heads or perspective file that cannot be used, with the file and row named."""


# =========================================================================== perspective


def load_perspective(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """The perspective map and region of interest of a ``.mat`` file (Mall's ``perspective_roi.mat``).

    Reads ``pMapN`` (or any 2-D float array named like ``*pmap*``) and an
    optional ``roi`` (a mask, or a struct holding one in ``mask``).
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        mat = loadmat(str(path))
    except Exception as err:  # scipy raises several types for a non-.mat file
        raise CountingDataError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    names = [k for k in mat if not k.startswith("__")]
    pmap_key = next((k for k in names if k.lower().replace("_", "") in ("pmapn", "pmap")), None)
    if pmap_key is None:
        raise CountingDataError(f"{path}: no perspective map (expected a variable 'pMapN'); "
                                f"found {', '.join(names) or 'nothing'}")
    pmap = np.asarray(mat[pmap_key], dtype=np.float64)
    if pmap.ndim != 2 or not np.all(np.isfinite(pmap)) or pmap.min() <= 0:
        raise CountingDataError(f"{path}: '{pmap_key}' must be a 2-D map of positive numbers")
    roi = None
    if "roi" in mat:
        roi = mat["roi"]
        if roi.dtype.names and "mask" in roi.dtype.names:
            roi = roi[0, 0]["mask"]
        roi = np.asarray(roi).astype(bool)
        if roi.shape != pmap.shape:
            raise CountingDataError(f"{path}: 'roi' is {roi.shape} but '{pmap_key}' is {pmap.shape}")
    return pmap, roi


def perspective_from_boxes(boxes: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """A perspective map from people's boxes: their height, fitted as a line in the image row.

    A person of height ``h(y)`` pixels whose feet are on row ``y`` covers an
    area proportional to ``h(y)**2``; the map is ``(h(bottom) / h(y))**2``, 1
    on the nearest row and larger further away (the convention of Mall's
    ``pMapN``). ``boxes`` has columns ``y`` (top) and ``h``, in pixels.
    """
    missing = {"y", "h"} - set(boxes.columns)
    if missing:
        raise CountingDataError(f"boxes: missing column(s) {', '.join(sorted(missing))}")
    if len(boxes) < 2:
        raise CountingDataError("boxes: at least two boxes are needed to fit a perspective")
    feet = boxes["y"].to_numpy(float) + boxes["h"].to_numpy(float)
    slope, intercept = np.polyfit(feet, boxes["h"].to_numpy(float), 1)
    rows = np.arange(shape[0], dtype=float)
    height = np.maximum(intercept + slope * rows, 0.05 * max(boxes["h"].max(), 1.0))
    scale = (height[-1] / height) ** 2
    return np.repeat(scale[:, None], shape[1], axis=1)


def perspective_from_pixels_per_metre(pixels_per_metre, shape: tuple[int, int]) -> np.ndarray:
    """A perspective map from a camera's pixels per metre, one value or one per image row."""
    ppm = np.broadcast_to(np.asarray(pixels_per_metre, dtype=float), (shape[0],))
    if np.any(ppm <= 0):
        raise CountingDataError("pixels_per_metre must be positive")
    scale = (ppm.max() / ppm) ** 2
    return np.repeat(scale[:, None], shape[1], axis=1)


# =========================================================================== features


def gray(frame: np.ndarray) -> np.ndarray:
    """A frame as 2-D ``uint8`` grayscale."""
    frame = np.asarray(frame)
    if frame.ndim == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return frame.astype(np.uint8, copy=False)


def median_background(frames: Sequence[np.ndarray], samples: int = BACKGROUND_SAMPLES) -> np.ndarray:
    """The per-pixel median of up to ``samples`` evenly spaced frames: the empty scene, roughly.

    People move, so over many frames each pixel most often shows the floor.
    """
    n = len(frames)
    if n == 0:
        raise ValueError("no frames to learn a background from")
    picks = np.unique(np.linspace(0, n - 1, min(samples, n)).round().astype(int))
    stack = np.stack([gray(frames[i]) for i in picks])
    return np.median(stack, axis=0).astype(np.uint8)


def adapt_background(background: np.ndarray, frame: np.ndarray, rate: float) -> np.ndarray:
    """The background moved ``rate`` of the way toward ``frame`` where the frame shows no one.

    Pixels unlike the background, and a margin around them, keep their
    level, so a crowd that lingers is not learnt as floor (following every
    pixel did that: at Mall it under-counted by 2 to 4 people); the floor's
    slow changes of light are followed. ``background`` is float32 and is
    returned as a new array.
    """
    g = gray(frame).astype(np.float32)
    diff = g - background
    busy = (np.abs(diff) > FOREGROUND_THRESHOLD).astype(np.uint8)
    busy = cv2.dilate(busy, np.ones((2 * ADAPT_MARGIN + 1,) * 2, np.uint8))
    return background + np.float32(rate) * diff * (busy == 0)


def match_light(frame: np.ndarray, background: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """The background shifted by the frame's overall change of light.

    The shift is the median difference over the pixels of ``roi`` that look
    like background (within ``FOREGROUND_THRESHOLD``; every 7th, enough for a
    median); it follows a change of light across the whole scene at once,
    which ``adapt_background`` cannot (the floor then all looks like foreground).
    """
    diff = gray(frame).astype(np.float32) - background
    floor = diff[roi]
    floor = floor[np.abs(floor) < FOREGROUND_THRESHOLD][::7]
    return background + np.float32(np.median(floor)) if len(floor) else background


def pixel_maps(frame: np.ndarray, background: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel evidence of people: foreground, edges on the foreground, gradient by orientation."""
    g = gray(frame)
    if background.dtype != np.uint8:
        background = np.clip(background + 0.5, 0, 255).astype(np.uint8)
    diff = cv2.absdiff(g, background)
    fg = (diff > FOREGROUND_THRESHOLD).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    edges = (cv2.Canny(g, CANNY_LOW, CANNY_HIGH) > 0).astype(np.uint8)
    near_fg = cv2.dilate(fg, np.ones((5, 5), np.uint8))
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag, ang = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    return {"fg": fg, "diff": diff, "edges": edges, "fg_edges": edges & near_fg,
            "mag": mag, "bin": ((ang % 180.0) * (ORIENTATIONS / 180.0)).astype(np.int32) % ORIENTATIONS}


def zone_polygon(name: str, polygon) -> shapely.Geometry:
    """A zone's pixel polygon as a valid shapely geometry; fewer than 3 [x, y] points fail."""
    pts = np.asarray(polygon, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"zone '{name}': a polygon needs at least 3 [x, y] points")
    return shapely.make_valid(shapely.Polygon(pts))


def _cell_mean(image: np.ndarray, cell: int) -> np.ndarray:
    h, w = image.shape
    return cv2.resize(image.astype(np.float32), (w // cell, h // cell), interpolation=cv2.INTER_AREA)


def cell_features(frame: np.ndarray, background: np.ndarray, weight: np.ndarray, cell: int) -> np.ndarray:
    """One row of features per cell (row-major over the cell grid), perspective-weighted.

    ``weight`` is the perspective map averaged per cell: a cell's pixel
    measurements are multiplied by it, so that a person far away weighs what
    a person nearby weighs. Context matters (a head's cell holds little of
    its body), so each measurement is also given pooled over the 3x3 and 5x5
    neighbourhoods of cells.
    """
    maps = pixel_maps(frame, background)
    fg_mag = maps["mag"] * maps["fg"]
    base = [_cell_mean(maps["fg"], cell), _cell_mean(maps["fg_edges"], cell),
            _cell_mean(maps["edges"], cell), _cell_mean(maps["diff"], cell) / 255.0,
            _cell_mean(fg_mag, cell) / 255.0]
    for b in range(ORIENTATIONS):
        base.append(_cell_mean(fg_mag * (maps["bin"] == b), cell) / 255.0)
    base = [m * weight for m in base]
    pooled = []
    for k in (3, 5):
        pooled += [cv2.blur(m, (k, k), borderType=cv2.BORDER_CONSTANT) for m in base[:5]]
    rows = np.repeat(np.arange(weight.shape[0], dtype=np.float32)[:, None], weight.shape[1], 1)
    cols = np.repeat(np.arange(weight.shape[1], dtype=np.float32)[None, :], weight.shape[0], 0)
    return np.stack([m.ravel() for m in base + pooled + [rows, cols, weight]], axis=1)


def smooth_counts(counts: np.ndarray, window: int) -> np.ndarray:
    """A causal moving average over the last ``window`` frames (the first frames average what exists).

    Consecutive frames of a fixed camera see almost the same crowd, so
    averaging cancels part of each frame's error; using only past frames keeps
    it usable live.
    """
    counts = np.asarray(counts, dtype=float)
    if window <= 1 or len(counts) == 0:
        return counts
    csum = np.concatenate([[0.0], np.cumsum(counts)])
    idx = np.arange(1, len(counts) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


# =========================================================================== estimators


def _cell_grid(shape: tuple[int, int], cell: int) -> tuple[int, int]:
    if shape[0] < cell or shape[1] < cell:
        raise ValueError(f"frames of {shape[1]}x{shape[0]} px are smaller than one {cell}-px cell")
    return shape[0] // cell, shape[1] // cell


def _per_cell(image: np.ndarray, grid: tuple[int, int], cell: int) -> np.ndarray:
    """``image`` averaged over each cell (pixels beyond the last whole cell are left out)."""
    return _cell_mean(image[: grid[0] * cell, : grid[1] * cell], cell)


def _check_frames_counts(frames, counts) -> np.ndarray:
    counts = np.asarray(counts, dtype=float).ravel()
    if len(frames) != len(counts):
        raise ValueError(f"{len(frames)} frames but {len(counts)} counts")
    if len(counts) < 2:
        raise ValueError("at least two labelled frames are needed to fit a counter")
    if np.any(~np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("counts must be finite and non-negative")
    return counts


def _perspective_or_ones(perspective, shape) -> np.ndarray:
    if perspective is None:
        return np.ones(shape, dtype=np.float32)
    perspective = np.asarray(perspective, dtype=np.float32)
    if perspective.shape != shape:
        raise ValueError(f"the perspective map is {perspective.shape[1]}x{perspective.shape[0]} px "
                         f"but the frames are {shape[1]}x{shape[0]} px")
    return perspective


def _roi_or_all(roi, shape) -> np.ndarray:
    if roi is None:
        return np.ones(shape, dtype=bool)
    roi = np.asarray(roi).astype(bool)
    if roi.shape != shape:
        raise ValueError(f"the region of interest is {roi.shape[1]}x{roi.shape[0]} px "
                         f"but the frames are {shape[1]}x{shape[0]} px")
    return roi


class CrowdCounter(RegressorMixin, BaseEstimator):
    """People per frame and per zone, from a learned, perspective-weighted density of people.

    Fitting learns, from labelled training frames of one camera: the empty
    scene (a median background), the height of a person at the nearest row
    (from the foreground area per counted person, scaled by the perspective
    map), and a gradient-boosted regressor from each cell's features to the
    people it holds. With ``heads`` (one point per person per frame, as in
    Mall's annotation) the target of a cell is each person's body, spread as
    a Gaussian of the size the perspective predicts below the head point, so
    that the target lies where the foreground and edges are; every person
    still sums to one. Without heads each frame's count is spread over its
    cells in proportion to their weighted foreground.

    Hyperparameters
    ---------------
    cell : side of the square cells, pixels.
    perspective : map (frame-sized) of the relative ground area of a pixel, 1
        on the nearest row (``load_perspective``, ``perspective_from_boxes``,
        ``perspective_from_pixels_per_metre``); None for a flat weight.
    roi : boolean frame-sized mask of the counted region; None for the whole frame.
    body_offset, body_width, body_height : where and how wide a person's body
        is, in person heights: its centre lies ``body_offset`` below the head
        point, its spread is ``body_width`` across and ``body_height`` down.
    max_iter, learning_rate, min_samples_leaf, random_state : of the regressor.
    smoothing : causal moving average of ``predict`` over this many frames (1: none).
    adapt : share of the way the background moves toward each frame passed to
        ``fit`` or ``partial_fit``, where that frame shows no one (0: the
        median of the training frames, fixed).
    light : shift the background by each frame's overall change of light
        (``match_light``) before comparing them.

    The defaults were chosen on Mall by fitting frames 1..600 and validating on
    601..800, ``adapt`` and ``light`` also on earlier fits validated on the
    same frames (docs/counting.md); frames after 800 were never used to choose them.
    """

    def __init__(self, cell: int = 16, perspective: np.ndarray | None = None, roi: np.ndarray | None = None,
                 body_offset: float = 0.4, body_width: float = 0.15, body_height: float = 0.3,
                 max_iter: int = 200, learning_rate: float = 0.1, min_samples_leaf: int = 20,
                 smoothing: int = 1, adapt: float = 0.05, light: bool = True,
                 random_state: int | None = 0):
        self.cell = cell
        self.perspective = perspective
        self.roi = roi
        self.body_offset = body_offset
        self.body_width = body_width
        self.body_height = body_height
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.smoothing = smoothing
        self.adapt = adapt
        self.light = light
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, frames: Sequence[np.ndarray], counts, heads: Sequence[np.ndarray] | None = None):
        """Learn from ``frames`` (a sequence of arrays), their ``counts`` and optional ``heads``.

        ``heads``, when given, holds one ``(n, 2)`` array of head points
        ``x, y`` (pixels) per frame; a frame's count is then its number of points.
        """
        counts = _check_frames_counts(frames, counts)
        if heads is not None and len(heads) != len(frames):
            raise ValueError(f"{len(frames)} frames but head points for {len(heads)}")
        shape = gray(frames[0]).shape
        self.shape_ = shape
        self.grid_ = _cell_grid(shape, self.cell)
        self.perspective_ = _perspective_or_ones(self.perspective, shape)
        self.roi_ = _roi_or_all(self.roi, shape)
        self.weight_ = _per_cell(self.perspective_, self.grid_, self.cell)
        self.roi_cells_ = _per_cell(self.roi_.astype(np.float32), self.grid_, self.cell).ravel() > 0
        # The training frames are seen as the deployed counter sees frames: each
        # with the background as it stood before it, then learnt (``partial_fit``).
        self.background_ = median_background(frames).astype(np.float32)

        features, fg_area = [], []
        for frame in frames:
            g = gray(frame)
            f = cell_features(g, self._lit_background(g), self.weight_, self.cell)
            self._adapt(g)
            features.append(f[self.roi_cells_])
            fg_area.append(f[self.roi_cells_, 0].sum() * self.cell**2)  # weighted foreground pixels
        fg_area = np.asarray(fg_area)
        people = counts > 0
        # A standing person's silhouette covers about 0.4 of its height squared.
        area = np.median(fg_area[people] / counts[people]) if people.any() else 0.0
        self.person_height_ = float(np.sqrt(area / 0.4)) if area > 0 else float(shape[0] / 4)

        if heads is not None:
            targets = [self._body_density(np.asarray(p, dtype=float).reshape(-1, 2)).ravel()[self.roi_cells_]
                       for p in heads]
        else:
            targets = [self._spread(f[:, 0], n) for f, n in zip(features, counts)]
        self.model_ = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=self.learning_rate,
            min_samples_leaf=self.min_samples_leaf, random_state=self.random_state)
        self.model_.fit(np.concatenate(features), np.concatenate(targets))
        self.n_features_in_ = features[0].shape[1]
        self.n_frames_seen_ = len(frames)
        return self

    def partial_fit(self, frames: Sequence[np.ndarray], counts=None):
        """Let the background follow unlabelled ``frames`` (in time order) where they show no one.

        The deployed counter sees every frame: counting a frame, then passing
        it here, keeps the empty scene current as the light changes (a
        background learnt once ages). No labels are used; ``counts`` is ignored.
        """
        check_is_fitted(self, "model_")
        for frame in frames:
            g = gray(frame)
            if g.shape != self.shape_:
                raise ValueError(f"frame is {g.shape[1]}x{g.shape[0]} px; the counter was fitted on "
                                 f"{self.shape_[1]}x{self.shape_[0]} px")
            self._adapt(g)
        return self

    def _lit_background(self, g: np.ndarray) -> np.ndarray:
        return match_light(g, self.background_, self.roi_) if self.light else self.background_

    def _adapt(self, frame: np.ndarray) -> None:
        if self.adapt > 0:
            self.background_ = adapt_background(self.background_, frame, self.adapt)

    def _body_density(self, points: np.ndarray) -> np.ndarray:
        """Each head point spread over the cells as its body: a Gaussian below it, summing to one."""
        grid, cell = self.grid_, self.cell
        out = np.zeros(grid, dtype=np.float32)
        if len(points) == 0:
            return out
        rows = np.clip(points[:, 1].astype(int), 0, self.shape_[0] - 1)
        cols = np.clip(points[:, 0].astype(int), 0, self.shape_[1] - 1)
        height = self.person_height_ / np.sqrt(self.perspective_[rows, cols])
        centre_y = points[:, 1] + self.body_offset * height
        cy = (np.arange(grid[0]) + 0.5) * cell
        cx = (np.arange(grid[1]) + 0.5) * cell
        gy = np.exp(-0.5 * ((cy[None, :] - centre_y[:, None]) / (self.body_height * height[:, None] + 1)) ** 2)
        gx = np.exp(-0.5 * ((cx[None, :] - points[:, 0][:, None]) / (self.body_width * height[:, None] + 1)) ** 2)
        g = gy[:, :, None] * gx[:, None, :]
        g /= np.maximum(g.sum(axis=(1, 2), keepdims=True), 1e-12)
        return g.sum(axis=0)

    @staticmethod
    def _spread(weighted_fg: np.ndarray, count: float) -> np.ndarray:
        total = weighted_fg.sum()
        if total <= 0:
            return np.full(len(weighted_fg), count / max(len(weighted_fg), 1), dtype=np.float32)
        return (weighted_fg * (count / total)).astype(np.float32)

    # ------------------------------------------------------------------ predict
    def density(self, frame: np.ndarray) -> np.ndarray:
        """People per cell (``grid_``-shaped), zero outside the region of interest."""
        check_is_fitted(self, "model_")
        g = gray(frame)
        if g.shape != self.shape_:
            raise ValueError(f"frame is {g.shape[1]}x{g.shape[0]} px; the counter was fitted on "
                             f"{self.shape_[1]}x{self.shape_[0]} px")
        f = cell_features(g, self._lit_background(g), self.weight_, self.cell)
        out = np.zeros(self.grid_[0] * self.grid_[1], dtype=np.float64)
        # One frame's cells are too few to share among threads: the OpenMP
        # start-up per tree costs more than it saves (5x slower on a busy machine).
        with threadpool_limits(limits=1, user_api="openmp"):
            out[self.roi_cells_] = self.model_.predict(f[self.roi_cells_])
        return out.reshape(self.grid_)

    def predict(self, frames) -> np.ndarray:
        """People per frame: the sum of each frame's density (causally smoothed if ``smoothing`` > 1)."""
        with threadpool_limits(limits=1, user_api="openmp"):
            counts = np.array([self.density(frame).sum() for frame in frames], dtype=float)
        return smooth_counts(counts, self.smoothing)

    def zone_fractions(self, zones: dict[str, Sequence]) -> dict[str, np.ndarray]:
        """For each zone polygon (pixels), the share of each cell inside it."""
        check_is_fitted(self, "model_")
        out = {}
        for name, polygon in zones.items():
            zone = zone_polygon(name, polygon)
            # Exact areas (not rasterised pixels) so that zones sharing a border
            # split its cells instead of both counting them.
            out[name] = (shapely.area(shapely.intersection(self._cells(), zone)) / self.cell**2
                         ).reshape(self.grid_)
        return out

    def _cells(self) -> np.ndarray:
        rows, cols = np.mgrid[0:self.grid_[0], 0:self.grid_[1]]
        x0, y0 = (cols * self.cell).ravel(), (rows * self.cell).ravel()
        return shapely.box(x0, y0, x0 + self.cell, y0 + self.cell)

    def count_zones(self, frame: np.ndarray, zones: dict[str, Sequence]) -> dict[str, float]:
        """People in each zone of one frame: the density summed over the zone's share of each cell.

        Zones that tile the frame add up to the frame's count.
        """
        d = self.density(frame)
        return {name: float((d * share).sum()) for name, share in self.zone_fractions(zones).items()}


class ForegroundEdgeRidge(RegressorMixin, BaseEstimator):
    """The classical baseline: ridge regression of the count on two whole-frame measurements.

    The perspective-weighted foreground area (pixels unlike a median
    background) and the edge pixels on that foreground (weighted by the
    square root of the perspective map, since edges grow with length, not area).
    """

    def __init__(self, alpha: float = 1.0, perspective: np.ndarray | None = None,
                 roi: np.ndarray | None = None):
        self.alpha = alpha
        self.perspective = perspective
        self.roi = roi

    def _features(self, frame) -> np.ndarray:
        maps = pixel_maps(frame, self.background_)
        return np.array([(maps["fg"] * self.area_weight_).sum(),
                         (maps["fg_edges"] * self.edge_weight_).sum()]) / 1000.0

    def fit(self, frames: Sequence[np.ndarray], counts, heads=None):
        """Learn the background and the ridge weights; ``heads`` is accepted and not used."""
        counts = _check_frames_counts(frames, counts)
        shape = gray(frames[0]).shape
        perspective = _perspective_or_ones(self.perspective, shape)
        roi = _roi_or_all(self.roi, shape)
        self.area_weight_ = perspective * roi
        self.edge_weight_ = np.sqrt(perspective) * roi
        self.background_ = median_background(frames)
        X = np.array([self._features(f) for f in frames])
        self.model_ = Ridge(alpha=self.alpha).fit(X, counts)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, frames) -> np.ndarray:
        """People per frame."""
        check_is_fitted(self, "model_")
        X = np.array([self._features(f) for f in frames]).reshape(-1, 2)
        return self.model_.predict(X)


# =========================================================================== files and evaluation


class FrameFiles(Sequence):
    """The frames named in a counts table, read from ``folder`` when indexed (BGR ``uint8``)."""

    def __init__(self, folder: str | os.PathLike, names: Sequence[str]):
        self.folder = Path(folder)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return FrameFiles(self.folder, self.names[i])
        path = self.folder / self.names[i]
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise CountingDataError(f"{path}: cannot be decoded as an image")
        return frame


def read_counts(path: str | os.PathLike, frames_dir: str | os.PathLike) -> pd.DataFrame:
    """The ``frame_file, count`` table, checked: every count a whole number >= 0, every frame on disk.

    Errors name the file, the line (1 is the header) and the field.
    """
    path, frames_dir = Path(path), Path(frames_dir)
    try:
        table = pd.read_csv(path, dtype={"frame_file": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CountingDataError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in ("frame_file", "count") if c not in table.columns]
    if missing:
        raise CountingDataError(f"{path}: missing column(s) {', '.join(missing)} "
                                f"(expected frame_file,count; found {','.join(map(str, table.columns))})")
    counts = pd.to_numeric(table["count"], errors="coerce")
    bad = counts.isna() | (counts < 0) | (counts != counts.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise CountingDataError(f"{path}, line {i + 2}, field count: {table['count'].iloc[i]!r} "
                                "is not a whole number of people >= 0")
    names = table["frame_file"]
    if names.isna().any():
        i = int(np.flatnonzero(names.isna().to_numpy())[0])
        raise CountingDataError(f"{path}, line {i + 2}, field frame_file: empty")
    dup = names.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise CountingDataError(f"{path}, line {i + 2}, field frame_file: {names.iloc[i]} is listed twice")
    if not frames_dir.is_dir():
        raise CountingDataError(f"{frames_dir}: no such folder of frames")
    for i, name in enumerate(names):
        if not (frames_dir / name).is_file():
            raise CountingDataError(f"{path}, line {i + 2}, field frame_file: {name} "
                                    f"is not in {frames_dir}")
    return pd.DataFrame({"frame_file": names.to_list(), "count": counts.astype(int).to_list()})


def read_heads(path: str | os.PathLike, frame_files: Sequence[str]) -> list[np.ndarray]:
    """Head points ``(n, 2)`` per listed frame from a ``frame_file, x, y`` CSV (frames without rows: none)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"frame_file": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CountingDataError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in ("frame_file", "x", "y") if c not in table.columns]
    if missing:
        raise CountingDataError(f"{path}: missing column(s) {', '.join(missing)} (expected frame_file,x,y)")
    for col in ("x", "y"):
        values = pd.to_numeric(table[col], errors="coerce")
        if values.isna().any():
            i = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise CountingDataError(f"{path}, line {i + 2}, field {col}: {table[col].iloc[i]!r} is not a number")
        table[col] = values
    groups = {name: g[["x", "y"]].to_numpy(float) for name, g in table.groupby("frame_file")}
    empty = np.zeros((0, 2))
    return [groups.get(name, empty) for name in frame_files]


def count_live(counter: CrowdCounter, frames: Sequence[np.ndarray]) -> np.ndarray:
    """People per frame as a deployed camera counts them: each frame counted, then learnt unlabelled.

    Counting never learns; the background's update is the explicit
    ``partial_fit`` after each frame, so a frame never sees itself in the background.
    """
    counts = np.empty(len(frames))
    with threadpool_limits(limits=1, user_api="openmp"):
        for i, frame in enumerate(frames):
            counts[i] = counter.density(frame).sum()
            counter.partial_fit([frame])
    return smooth_counts(counts, counter.smoothing)


def _timed_predict(predict, frames: FrameFiles) -> tuple[np.ndarray, float]:
    """Predictions and seconds taken, decoding included, on one OpenCV thread (per-core speed)."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        start = time.perf_counter()
        out = predict(frames)
        return out, time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)


def evaluate(frames_dir: str | os.PathLike, counts_path: str | os.PathLike, n_train: int,
             heads_path: str | os.PathLike | None = None, perspective_path: str | os.PathLike | None = None,
             counter: CrowdCounter | None = None) -> dict:
    """Fit on the first ``n_train`` frames of the counts table, predict the rest; errors of both models.

    Returns ``mae``, ``mse``, ``fps`` (prediction, decoding included, one
    OpenCV thread) for ``CrowdCounter`` and ``baseline_mae``, ``baseline_mse``,
    ``baseline_fps`` for ``ForegroundEdgeRidge``, fitted on the same frames,
    and each one's mean error (``bias``) over all test frames and over their
    second half. The counter counts the test frames as a deployed camera
    does (``count_live``: its background follows the unlabelled frames).
    """
    table = read_counts(counts_path, frames_dir)
    if not 2 <= n_train < len(table):
        raise CountingDataError(f"{counts_path}: --train {n_train} must be at least 2 and below the "
                                f"{len(table)} labelled frames, so that some are left to test")
    perspective = roi = None
    if perspective_path is not None:
        perspective, roi = load_perspective(perspective_path)
    heads = None
    if heads_path is not None:
        heads = read_heads(heads_path, table["frame_file"][:n_train])
        for i, (points, n) in enumerate(zip(heads, table["count"][:n_train])):
            if len(points) != n:
                raise CountingDataError(f"{heads_path}: frame {table['frame_file'][i]} has {len(points)} "
                                        f"head rows but {counts_path} line {i + 2} counts {n}")
    frames = FrameFiles(frames_dir, table["frame_file"])
    first = frames[0]
    if perspective is not None and perspective.shape != first.shape[:2]:
        raise CountingDataError(f"{perspective_path}: the map is {perspective.shape[1]}x{perspective.shape[0]} px "
                                f"but {frames.names[0]} is {first.shape[1]}x{first.shape[0]} px")
    train, test = frames[:n_train], frames[n_train:]
    y_train = table["count"].to_numpy(float)[:n_train]
    y_test = table["count"].to_numpy(float)[n_train:]

    counter = CrowdCounter(perspective=perspective, roi=roi) if counter is None else counter
    start = time.perf_counter()
    counter.fit(train, y_train, heads=heads)
    fit_seconds = time.perf_counter() - start
    baseline = ForegroundEdgeRidge(perspective=perspective, roi=roi).fit(train, y_train)

    pred, seconds = _timed_predict(lambda frames: count_live(counter, frames), test)
    base, base_seconds = _timed_predict(baseline.predict, test)
    err, base_err = pred - y_test, base - y_test
    return {
        "mae": round(float(np.abs(err).mean()), 4), "mse": round(float((err**2).mean()), 4),
        "fps": round(len(test) / seconds, 1),
        "baseline_mae": round(float(np.abs(base_err).mean()), 4),
        "baseline_mse": round(float((base_err**2).mean()), 4),
        "baseline_fps": round(len(test) / base_seconds, 1),
        "bias": round(float(err.mean()), 4),
        # Drift: does the error grow with the distance from the training frames?
        "bias_second_half": round(float(err[len(err) // 2:].mean()), 4),
        "baseline_bias": round(float(base_err.mean()), 4),
        "baseline_bias_second_half": round(float(base_err[len(err) // 2:].mean()), 4),
        "n_train": int(n_train), "n_test": int(len(test)),
        "first_test_frame": test.names[0], "last_test_frame": test.names[-1],
        "heads": heads is not None, "perspective": perspective is not None,
        "person_height_px": round(counter.person_height_, 1), "fit_seconds": round(fit_seconds, 1),
        "model": "CrowdCounter: per-cell density, gradient boosting on perspective-weighted features",
        "baseline": "ridge on perspective-weighted foreground area and foreground edge pixels",
    }
