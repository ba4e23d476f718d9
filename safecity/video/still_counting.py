"""Crowd counting on still photos from any viewpoint, learned from annotated head points.

``CrowdCounter`` (``counting.py``) learns one fixed camera: its empty
background, its perspective. A photo of a street crowd has neither, so
``StillCounter`` learns from appearance alone, across viewpoints: the image is
cut into square cells (at a fixed working width), each cell is described by
multi-scale local texture (gradient-orientation histograms, dark-blob
responses at several scales since heads are dark round blobs, edge density,
local binary patterns, colour) pooled over its neighbourhood, on the image
and on it at half size, and a gradient-boosted regressor learns the heads
each cell holds.
The training target spreads each head point with a *geometry-adaptive*
kernel: a Gaussian whose width is a fraction of the distance to the nearest
annotated heads, so that far, small, packed heads get narrow kernels and near
ones wide kernels. A photo's count is its density summed; ``count_zones``
sums it over polygons, so the counter can stand in for a camera's own (the
pipeline's ``counter=``) when the camera has no calibration.

``read_shanghaitech`` reads the ShanghaiTech layout (``images/IMG_N.jpg``,
``ground-truth/GT_IMG_N.mat``); ``cross_validate`` and ``evaluate`` give the
errors with a predict-the-training-mean baseline beside them. No face or
identity is involved: the features are pixel statistics per cell.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import shapely
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold, KFold
from sklearn.utils.validation import check_is_fitted

from safecity.video.counting import CountingDataError, zone_polygon

#: Gradient orientation bins (unsigned, 0..180 degrees, as in HOG).
ORIENTATIONS = 8

#: Scales (pixels at the working width) of the dark-blob (Laplacian of Gaussian) responses.
BLOB_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)

#: Rotation-invariant uniform LBP codes of 8 neighbours: 0..8 ones in a row, 9 = not uniform.
LBP_BINS = 10

#: A head's Gaussian is this fraction of the mean distance to its 3 nearest heads (as in MCNN).
KERNEL_BETA = 0.3


# =========================================================================== reading


@dataclass
class StillImages(Sequence):
    """Photos read from disk when indexed (BGR ``uint8``), with their head points."""

    paths: list[Path]
    points: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return StillImages(self.paths[i], self.points[i])
        return read_image(self.paths[i])

    def subset(self, index) -> StillImages:
        """The photos at the positions in ``index``."""
        return StillImages([self.paths[i] for i in index], [self.points[i] for i in index])

    @property
    def counts(self) -> np.ndarray:
        return np.array([len(p) for p in self.points], dtype=float)


def read_image(path: str | os.PathLike) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CountingDataError(f"{path}: cannot be decoded as an image")
    return image


def read_head_points(path: str | os.PathLike) -> np.ndarray:
    """The ``(n, 2)`` head points ``x, y`` of a ShanghaiTech ``GT_IMG_N.mat`` file."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    try:
        mat = loadmat(str(path))
    except (MatReadError, OSError, ValueError, TypeError, NotImplementedError) as err:
        raise CountingDataError(f"{path}: not a readable MATLAB .mat file ({err})") from None
    try:
        points = mat["image_info"][0, 0][0, 0]["location"]
    except (KeyError, IndexError, ValueError, TypeError):
        raise CountingDataError(f"{path}: no head points (expected image_info[0,0][0,0]['location'])") from None
    points = np.asarray(points, dtype=float).reshape(-1, 2) if np.size(points) else np.zeros((0, 2))
    if not np.all(np.isfinite(points)):
        raise CountingDataError(f"{path}: head points must be finite numbers")
    return points


def read_shanghaitech(folder: str | os.PathLike) -> StillImages:
    """The photos of a ShanghaiTech split folder (``images/``, ``ground-truth/``), in IMG number order.

    Every ``images/IMG_N.jpg`` needs its ``ground-truth/GT_IMG_N.mat``; errors name the file.
    """
    folder = Path(folder)
    images_dir, truth_dir = folder / "images", folder / "ground-truth"
    for d in (images_dir, truth_dir):
        if not d.is_dir():
            raise CountingDataError(f"{d}: no such folder (expected the ShanghaiTech layout "
                                    "images/IMG_N.jpg and ground-truth/GT_IMG_N.mat)")
    paths = [p for p in images_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    if not paths:
        raise CountingDataError(f"{images_dir}: no .jpg or .png images")

    def number(p: Path):
        m = re.search(r"(\d+)$", p.stem)
        return (int(m.group(1)) if m else -1, p.name)

    paths.sort(key=number)
    points = []
    for p in paths:
        truth = truth_dir / f"GT_{p.stem}.mat"
        if not truth.is_file():
            raise CountingDataError(f"{truth}: missing ground truth for {p}")
        points.append(read_head_points(truth))
    return StillImages(paths, points)


# =========================================================================== features


def _cell_mean(image: np.ndarray, cell: int) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image.astype(np.float32), (w // cell, h // cell), interpolation=cv2.INTER_AREA)


def _lbp_codes(g: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform LBP of 8 neighbours at radius 1 (0..8; 9 when not uniform)."""
    g = g.astype(np.int16)
    p = np.pad(g, 1, mode="edge")
    h, w = g.shape
    shifts = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
    bits = np.stack([(p[dy:dy + h, dx:dx + w] >= g) for dy, dx in shifts]).astype(np.uint8)
    ones = bits.sum(axis=0)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    return np.where(transitions <= 2, ones, 9).astype(np.uint8)


def working_image(image: np.ndarray, width: int, cell: int) -> np.ndarray:
    """``image`` resized to ``width`` (aspect kept, height a whole number of cells)."""
    h, w = image.shape[:2]
    height = max(cell, round(h * width / w / cell) * cell)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def cell_features(image: np.ndarray, cell: int) -> np.ndarray:
    """One row of features per cell (row-major) of a working-size BGR image.

    Per cell: gradient energy per orientation, dark- and bright-blob responses
    at ``BLOB_SIGMAS``, edge density, LBP histogram, colour; the same pooled
    over the 3x3 and 7x7 neighbourhoods of cells (a head's cell holds little
    of the crowd around it).
    """
    g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gf = g.astype(np.float32) / 255.0
    gx = cv2.Sobel(gf, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gf, cv2.CV_32F, 0, 1, ksize=3)
    mag, ang = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    bins = ((ang % 180.0) * (ORIENTATIONS / 180.0)).astype(np.int32) % ORIENTATIONS
    maps = [mag]
    maps += [mag * (bins == b) for b in range(ORIENTATIONS)]
    for s in BLOB_SIGMAS:
        log = cv2.Laplacian(cv2.GaussianBlur(gf, (0, 0), s), cv2.CV_32F) * s * s
        maps += [np.maximum(log, 0), np.maximum(-log, 0)]  # dark blobs, bright blobs
    maps.append((cv2.Canny(g, 50, 150) > 0).astype(np.float32))
    maps.append((cv2.Canny(g, 100, 250) > 0).astype(np.float32))
    mean = cv2.blur(gf, (5, 5))
    maps.append(np.sqrt(np.maximum(cv2.blur(gf * gf, (5, 5)) - mean * mean, 0)))
    lbp = _lbp_codes(g)
    maps += [(lbp == k).astype(np.float32) for k in range(LBP_BINS)]
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32) / 255.0
    maps += [gf, hsv[..., 1], (g < 50).astype(np.float32)]
    base = [_cell_mean(m, cell) for m in maps]
    # Cell-level std of the grey levels: texture at the cell's own scale.
    base.append(np.sqrt(np.maximum(_cell_mean(gf * gf, cell) - _cell_mean(gf, cell) ** 2, 0)))
    pooled = []
    for k in (3, 7):
        pooled += [cv2.blur(m, (k, k), borderType=cv2.BORDER_REFLECT) for m in base]
    # No whole-photo or position features: constant over a photo, they let the trees
    # recognise training photos (worse held-out error when they were in).
    return np.stack([m.ravel() for m in base + pooled], axis=1)


def head_density(points: np.ndarray, shape: tuple[int, int], scale: float, cell: int,
                 beta: float = KERNEL_BETA) -> np.ndarray:
    """Heads per cell: each head a Gaussian of ``beta`` times its 3-nearest-head distance, summing to one.

    ``points`` are in the original image's pixels, ``scale`` maps them to the
    working image of ``shape``; the result is ``shape // cell``.
    """
    from scipy.spatial import cKDTree

    grid = (shape[0] // cell, shape[1] // cell)
    out = np.zeros(grid, dtype=np.float64)
    if len(points) == 0:
        return out.astype(np.float32)
    pts = np.asarray(points, dtype=float) * scale
    if len(pts) > 1:
        k = min(4, len(pts))
        dist, _ = cKDTree(pts).query(pts, k=k)
        spacing = dist[:, 1:].mean(axis=1)
    else:
        spacing = np.array([shape[0] / 8.0])
    sigma = np.maximum(beta * spacing, 1.0)
    cy = (np.arange(grid[0]) + 0.5) * cell
    cx = (np.arange(grid[1]) + 0.5) * cell
    # Each head's mass per cell: the Gaussian at the cell centres, normalised to sum to one.
    for start in range(0, len(pts), 256):
        p, s = pts[start:start + 256], sigma[start:start + 256, None]
        gy = np.exp(-0.5 * ((cy[None, :] - p[:, 1:2]) / s) ** 2)
        gx = np.exp(-0.5 * ((cx[None, :] - p[:, 0:1]) / s) ** 2)
        # A kernel narrower than a cell may fall between centres: give it to its own cell.
        gy[np.arange(len(p)), np.clip((p[:, 1] // cell).astype(int), 0, grid[0] - 1)] += 1e-6
        gx[np.arange(len(p)), np.clip((p[:, 0] // cell).astype(int), 0, grid[1] - 1)] += 1e-6
        gy /= gy.sum(axis=1, keepdims=True)
        gx /= gx.sum(axis=1, keepdims=True)
        out += gy.T @ gx
    return out.astype(np.float32)


# =========================================================================== estimator


class StillCounter(RegressorMixin, BaseEstimator):
    """People in a still photo (and per zone of it), from a learned density of heads per cell.

    Hyperparameters
    ---------------
    width : working width in pixels (photos are resized to it, aspect kept).
    cell : side of the square cells at the working width, pixels.
    scales : the cells' features are computed on the working image shrunk by each of these
        factors (cells shrunk alike, so every scale gives the same grid): small far heads
        show at 1, large near ones at 2.
    beta : geometry-adaptive kernel width, a fraction of the nearest-head spacing.
    loss : of the regressor, ``"poisson"`` (counts are never negative) or ``"squared_error"``.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization,
    random_state : of the gradient-boosted regressor.
    """

    def __init__(self, width: int = 1024, cell: int = 32, beta: float = KERNEL_BETA,
                 scales: tuple[int, ...] = (1, 2),
                 loss: str = "poisson", max_iter: int = 150, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 31, min_samples_leaf: int = 3000,
                 l2_regularization: float = 0.0, early_stopping: bool = False, cell_fraction: float = 1.0,
                 random_state: int | None = 0):
        self.width = width
        self.cell = cell
        self.scales = scales
        self.beta = beta
        self.loss = loss
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.early_stopping = early_stopping
        self.cell_fraction = cell_fraction
        self.random_state = random_state

    def _features(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        image = np.asarray(image)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a BGR or grayscale image, got shape {image.shape}")
        work = working_image(image, self.width, self.cell)
        grid = (work.shape[0] // self.cell, work.shape[1] // self.cell)
        features = []
        for s in self.scales:
            if self.cell % s or self.width % s:
                raise ValueError(f"scale {s} must divide the cell ({self.cell}) and the width ({self.width})")
            small = work if s == 1 else cv2.resize(work, (grid[1] * self.cell // s, grid[0] * self.cell // s),
                                                   interpolation=cv2.INTER_AREA)
            features.append(cell_features(small, self.cell // s))
        return np.concatenate(features, axis=1), work.shape[:2]

    def training_rows(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The features and target heads of each cell of one annotated image."""
        f, shape = self._features(image)
        scale = shape[1] / np.asarray(image).shape[1]
        return f, head_density(np.asarray(points, float).reshape(-1, 2), shape, scale,
                               self.cell, self.beta).ravel()

    def fit(self, images: Sequence[np.ndarray], points: Sequence[np.ndarray]):
        """Learn from ``images`` (BGR arrays) and one ``(n, 2)`` array of head points ``x, y`` each."""
        if len(images) != len(points):
            raise ValueError(f"{len(images)} images but head points for {len(points)}")
        rows = [self.training_rows(image, pts) for image, pts in zip(images, points)]
        return self.fit_rows([f for f, _ in rows], [t for _, t in rows])

    def fit_rows(self, X: Sequence[np.ndarray], y: Sequence[np.ndarray]):
        """Learn from per-image ``training_rows`` (lets cross-validation compute features once)."""
        from threadpoolctl import threadpool_limits

        if len(X) < 2:
            raise ValueError("at least two annotated images are needed to fit a counter")
        rng = np.random.default_rng(self.random_state)
        keep = [rng.random(len(t)) < self.cell_fraction for t in y]
        X = [x[k] for x, k in zip(X, keep)]
        y = [t[k] for t, k in zip(y, keep)]
        self.model_ = HistGradientBoostingRegressor(
            loss=self.loss, max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization, early_stopping=self.early_stopping,
            random_state=self.random_state)
        # One thread: on a shared machine OpenMP's spinning threads cost more than they give.
        with threadpool_limits(limits=1, user_api="openmp"):
            self.model_.fit(np.concatenate(X), np.concatenate(y))
        self.n_features_in_ = X[0].shape[1]
        return self

    def density(self, image: np.ndarray) -> np.ndarray:
        """Heads per cell of ``image`` (the working image's grid of cells)."""
        check_is_fitted(self, "model_")
        f, shape = self._features(image)
        return self.density_rows(f).reshape(shape[0] // self.cell, shape[1] // self.cell)

    def density_rows(self, features: np.ndarray) -> np.ndarray:
        """Heads per cell from the cells' features (one row each)."""
        check_is_fitted(self, "model_")
        return np.maximum(self.model_.predict(features), 0)

    def predict(self, images) -> np.ndarray:
        """People per image: the sum of its density."""
        return np.array([self.density(image).sum() for image in images], dtype=float)

    def count_zones(self, image: np.ndarray, zones: dict[str, Sequence]) -> dict[str, float]:
        """People in each zone polygon (``[x, y]`` points in the image's pixels).

        Each cell's people are shared by the exact area of the cell inside the
        zone, so zones that tile the image add up to its count.
        """
        d = self.density(image)
        h, w = np.asarray(image).shape[:2]
        sy, sx = h / d.shape[0], w / d.shape[1]  # original pixels per cell
        rows, cols = np.mgrid[0:d.shape[0], 0:d.shape[1]]
        cells = shapely.box((cols * sx).ravel(), (rows * sy).ravel(),
                            ((cols + 1) * sx).ravel(), ((rows + 1) * sy).ravel())
        out = {}
        for name, polygon in zones.items():
            zone = zone_polygon(name, polygon)
            share = shapely.area(shapely.intersection(cells, zone)) / (sx * sy)
            out[name] = float((d.ravel() * share).sum())
        return out


# =========================================================================== evaluation


#: Candidates tried inside each training fold by ``cross_validate`` (regressor settings only,
#: so the cells' features are computed once per photo).
#: Empty: the defaults were fixed on a declared design half of ShanghaiTech B (docs/counting.md).
DEFAULT_GRID: tuple[dict, ...] = ()


def _errors(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """MAE and MSE as crowd counting reports them (its "MSE" is the root of the mean squared error)."""
    err = np.asarray(pred, float) - np.asarray(truth, float)
    return float(np.abs(err).mean()), float(np.sqrt((err**2).mean()))


def _timed_predict(counter: StillCounter, images: StillImages) -> tuple[np.ndarray, float]:
    """Predictions and seconds taken, decoding included, on one OpenCV thread."""
    from threadpoolctl import threadpool_limits

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1, user_api="openmp"):
            start = time.perf_counter()
            out = counter.predict(images)
            return out, time.perf_counter() - start
    finally:
        cv2.setNumThreads(threads)


class _Rows:
    """Each photo's training rows, computed once per (width, cell, beta) and reused across fits."""

    def __init__(self, images: StillImages):
        self.images = images
        self.cache: dict[tuple, list] = {}

    def get(self, counter: StillCounter, index) -> tuple[list[np.ndarray], list[np.ndarray]]:
        key = (counter.width, counter.cell, tuple(counter.scales), counter.beta)
        rows = self.cache.setdefault(key, [None] * len(self.images))
        for i in index:
            if rows[i] is None:
                rows[i] = counter.training_rows(self.images[i], self.images.points[i])
        return [rows[i][0] for i in index], [rows[i][1] for i in index]


def _select(rows: _Rows, base: StillCounter, grid: Sequence[dict], train: np.ndarray,
            validation: float, seed: int) -> tuple[dict, list[float]]:
    """The grid candidate with the lowest MAE on a validation part of ``train`` (never the test fold)."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(train)
    n_val = max(1, round(validation * len(train)))
    val, fit = shuffled[:n_val], shuffled[n_val:]
    truth = rows.images.counts[val]
    scores = []
    for params in grid:
        candidate = clone(base).set_params(**params)
        candidate.fit_rows(*rows.get(candidate, fit))
        X_val, _ = rows.get(candidate, val)
        pred = np.array([candidate.density_rows(x).sum() for x in X_val])
        scores.append(_errors(pred, truth)[0])
    return dict(grid[int(np.argmin(scores))]), scores


def scene_groups(images: StillImages, threshold: float = 0.5) -> np.ndarray:
    """A group label per photo: photos whose 16x12 grey thumbnails correlate get one label.

    Several photos of ShanghaiTech B show the same street from the same spot;
    folds that keep such photos together measure the counter on streets it
    has not seen. Average-linkage clustering, cut at correlation distance ``threshold``.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    thumbs = np.stack([cv2.resize(cv2.cvtColor(images[i], cv2.COLOR_BGR2GRAY), (16, 12),
                                  interpolation=cv2.INTER_AREA).ravel() for i in range(len(images))])
    return fcluster(linkage(thumbs.astype(float), "average", metric="correlation"), threshold, "distance")


def cross_validate(images: StillImages, folds: int = 5, grid: Sequence[dict] | None = DEFAULT_GRID,
                   counter: StillCounter | None = None, validation: float = 0.25, seed: int = 0,
                   progress=None, groups: np.ndarray | None = None) -> dict:
    """K-fold cross-validated errors of ``StillCounter`` and of predicting the training mean.

    In each fold, the settings are chosen among ``grid`` on a ``validation``
    share of that fold's training photos (fitted on the rest), then refitted
    on all its training photos and scored once on the held-out fold: the
    held-out photos never choose anything. ``images_per_s`` is the prediction
    speed on the held-out photos, decoding included, on one thread. With
    ``groups`` (e.g. ``scene_groups``), photos of one group share a fold.
    """
    if not 2 <= folds <= len(images) // 2:
        raise ValueError(f"--folds {folds}: need 2 to {len(images) // 2} folds for {len(images)} photos")
    base = counter if counter is not None else StillCounter()
    rows = _Rows(images)
    truth = images.counts
    pred, base_pred = np.zeros(len(images)), np.zeros(len(images))
    per_fold, predict_s, fit_s = [], 0.0, []
    splitter = (KFold(folds, shuffle=True, random_state=seed) if groups is None
                else GroupKFold(folds, shuffle=True, random_state=seed))
    for k, (train, test) in enumerate(splitter.split(truth, groups=groups)):
        start = time.perf_counter()
        chosen, scores = ({}, [])
        if grid and len(grid) > 1:
            chosen, scores = _select(rows, base, grid, train, validation, seed + k)
        elif grid:
            chosen = dict(grid[0])
        model = clone(base).set_params(**chosen).fit_rows(*rows.get(base, train))
        fit_s.append(time.perf_counter() - start)
        pred[test], seconds = _timed_predict(model, images.subset(test))
        predict_s += seconds
        base_pred[test] = truth[train].mean()
        mae, mse = _errors(pred[test], truth[test])
        b_mae, b_mse = _errors(base_pred[test], truth[test])
        per_fold.append({"fold": k + 1, "n_train": len(train), "n_test": len(test), "mae": round(mae, 2),
                         "mse": round(mse, 2), "baseline_mae": round(b_mae, 2), "chosen": chosen,
                         "validation_mae": [round(s, 2) for s in scores], "fit_s": round(fit_s[-1], 1)})
        if progress is not None:
            progress(per_fold[-1])
    mae, mse = _errors(pred, truth)
    b_mae, b_mse = _errors(base_pred, truth)
    return {"mae": round(mae, 2), "mse": round(mse, 2), "n_images": len(images),
            "images_per_s": round(len(images) / predict_s, 2),
            "baseline_mae": round(b_mae, 2), "baseline_mse": round(b_mse, 2),
            "bias": round(float((pred - truth).mean()), 2), "folds": per_fold,
            "fit_s_per_fold": round(float(np.mean(fit_s)), 1),
            "protocol": f"{folds}-fold CV ({'grouped by scene, ' if groups is not None else ''}"
                        f"shuffled, seed {seed}); " + (
                f"settings chosen per fold on a {validation:.0%} validation part of its training photos"
                if grid and len(grid) > 1 else "settings fixed beforehand"),
            "baseline": "predict the mean count of the training photos"}


def evaluate(train: StillImages, test: StillImages, counter: StillCounter | None = None) -> dict:
    """Fit on ``train``, score on ``test``; the predict-the-training-mean baseline beside it."""
    counter = clone(counter) if counter is not None else StillCounter()
    start = time.perf_counter()
    counter.fit(train, train.points)
    fit_s = time.perf_counter() - start
    pred, seconds = _timed_predict(counter, test)
    truth = test.counts
    mae, mse = _errors(pred, truth)
    b_mae, b_mse = _errors(np.full(len(test), train.counts.mean()), truth)
    return {"mae": round(mae, 2), "mse": round(mse, 2), "n_images": len(test),
            "images_per_s": round(len(test) / seconds, 2),
            "baseline_mae": round(b_mae, 2), "baseline_mse": round(b_mse, 2),
            "bias": round(float((pred - truth).mean()), 2), "n_train": len(train),
            "fit_s": round(fit_s, 1), "baseline": "predict the mean count of the training photos"}
