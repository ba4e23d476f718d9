"""Detection: from a BGR frame to candidate boxes of people and objects.

A fixed camera sees mostly the same street, so the cheap and robust first
stage is a background model (OpenCV's MOG2, run at a reduced working
resolution, its shadows dropped): what differs from the learned background is
foreground, and its connected blobs become boxes. A blob is a ``person`` or a
small ``object`` (a bag) by its height compared with the height a person would
have with their feet on that image row (the scene's ``pixels_per_metre``, or a
``PersonSize`` model learned from the blobs themselves). A blob much wider than
a person there (a group walking side by side) is cut into person-wide boxes
along the valleys of its column profile.

Two optional detectors plug in beside it: OpenCV's HOG people detector
(classical, slow, so run only on the blobs' regions every few frames) and a
user's own ONNX model loaded through ``cv2.dnn`` (``OnnxFinder``). The ONNX
plug-in is also the only support for weapons: no model is shipped; an
installation that has one and the legal basis to use it loads it there.

Every detector returns an ``sv.Detections`` (``xyxy`` in full-frame pixels,
``confidence`` in 0..1, ``class_id`` 0 for a person and 1 for an object; an
ONNX detector may carry more classes in ``data['class_name']``).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

PERSON, OBJECT = 0, 1
CLASS_NAMES = ("person", "object")

#: A standing adult, metres: converts ``pixels_per_metre`` to an expected height.
PERSON_HEIGHT_M = 1.7


def components(mask: np.ndarray):
    """``cv2.connectedComponentsWithStats(mask, connectivity=8)``, with OpenCV's BBDT (Grana)
    algorithm named: the same labels, stats and centroids, over twice as quick on one thread as
    the default it picks (Spaghetti) on our masks. Blob finding runs it several times a frame."""
    return cv2.connectedComponentsWithStatsWithAlgorithm(mask, 8, cv2.CV_32S, cv2.CCL_GRANA)


class Frame(np.ndarray):
    """A frame as the event rules get it: the image itself (a view, unchanged) carrying, in
    ``working``, the same frame already shrunk to ``working_scale`` of its size by the
    background model (``INTER_AREA``, before its gain), so that a rule judging colours at that
    size (fire) does not shrink it a second time. A slice of it carries nothing."""

    working: np.ndarray | None = None
    working_scale: float | None = None


def with_working(image: np.ndarray, working: np.ndarray | None, scale: float | None) -> Frame:
    """``image`` as a ``Frame`` carrying its shrunk copy ``working`` (made at ``scale``)."""
    out = image.view(Frame)
    out.working, out.working_scale = working, scale
    return out


def shrunk(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` scaled by ``scale`` (``INTER_AREA``): the copy a ``Frame`` carries when it was
    made at that scale, else a new one (the same pixels either way)."""
    if scale == 1:
        return image
    working = getattr(image, "working", None)
    if working is not None and image.working_scale == scale and working.shape[:2] == (
            round(image.shape[0] * scale), round(image.shape[1] * scale)):
        return working
    return cv2.resize(np.asarray(image), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def empty_detections() -> sv.Detections:
    return sv.Detections(xyxy=np.empty((0, 4), np.float32), confidence=np.empty(0, np.float32),
                         class_id=np.empty(0, int))


# =========================================================================== background


class BackgroundModel:
    """MOG2 at a reduced working resolution; ``apply(image)`` -> foreground mask (0/255, full size).

    ``scale`` shrinks the frame before modelling (0.5 on 480x360 keeps a
    pedestrian 25 px tall and makes the model four times cheaper).
    Each working frame is first scaled to a steady mean brightness
    (``normalise``): a camera's auto-exposure or a passing cloud shifts the
    whole image by a few grey levels over seconds, which MOG2 would report
    as foreground all over a smooth facade.
    The gain is the ratio of a slow reference to the frame summed over the
    cells of a coarse grid that were background in the last mask and agree
    with the median ratio (``background_gain``; off: the ratio of the frame's
    means, as before): a person near the camera moves the frame's mean, and
    scaling by it flooded the mask (UP-Fall).
    ``background_ratio`` sets how long a new still object stays foreground:
    about ``-ln(background_ratio) * history_s`` seconds, so 0.5 and 50 s keep a
    bag or a fallen person visible for some 35 s (an abandoned
    object must outlast its limit) while lighting changes still fade in. MOG2
    counts its history in frames: ``history_s`` times the camera's ``fps``
    (``use_fps``), so a 30 fps camera does not forget three times sooner. A
    young model learns faster (OpenCV uses ``1 / frames seen`` until
    ``history`` frames), so in the first minute the hold is shorter. Shadows (MOG2 marks them grey) are
    not foreground.
    """

    def __init__(self, scale: float = 0.5, history_s: float = 50.0, var_threshold: float = 16.0,
                 background_ratio: float = 0.5, open_px: int = 3, close_px: int = 5,
                 normalise: bool = True, background_gain: bool = True,
                 gain_tolerance: float = 0.1, gain_agreement: float = 0.02, fps: float = 10.0):
        self.scale = scale
        self.normalise = normalise
        self.background_gain = background_gain
        self.gain_tolerance = gain_tolerance
        self.gain_agreement = gain_agreement
        self.history_s = history_s
        self.fps = fps
        self.var_threshold = var_threshold
        self.background_ratio = background_ratio
        self.open_px = open_px
        self.close_px = close_px
        self.model_ = None
        self.mask_ = None
        self.reference_ = None
        self.level_ = None
        self.working_ = None  # the last frame at the working resolution, before the gain

    @property
    def history(self) -> int:
        """The history in frames, at the camera's frame rate."""
        return max(1, round(self.history_s * self.fps))

    def use_fps(self, fps: float) -> None:
        """The camera's frame rate: MOG2's history and the reference's pace are in frames."""
        self.fps = float(fps)
        if self.model_ is not None:
            self.model_.setHistory(self.history)

    def _make(self):
        model = cv2.createBackgroundSubtractorMOG2(self.history, self.var_threshold, True)
        model.setBackgroundRatio(self.background_ratio)
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.open_px,) * 2)
        # Taller than wide: joins a head or legs to the body, not neighbours side by side.
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(1, self.close_px - 2), self.close_px))
        return model

    def working(self, image: np.ndarray) -> np.ndarray:
        """The frame at the working resolution."""
        if self.scale == 1:
            return image
        h, w = image.shape[:2]
        return cv2.resize(image, (round(w * self.scale), round(h * self.scale)), interpolation=cv2.INTER_AREA)

    def apply_small(self, image: np.ndarray) -> np.ndarray:
        """Foreground mask at the working resolution (0/255), cleaned by opening then closing."""
        if self.model_ is None:
            self.model_ = self._make()
        small = self.working_ = self.working(image)
        if self.normalise and self.background_gain:
            small = self._steady_gain(small)
        elif self.normalise:
            m = cv2.mean(small)
            level = (m[0] + m[1] + m[2]) / 3
            ref = level if self.level_ is None else self.level_
            self.level_ = ref + (level - ref) / self.history
            if level > 1:
                small = cv2.convertScaleAbs(small, alpha=self.level_ / level)
        raw = self.model_.apply(small)
        _, mask = cv2.threshold(raw, 200, 255, cv2.THRESH_BINARY)  # shadows are 127
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        self.mask_ = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close)
        return self.mask_

    def _steady_gain(self, small: np.ndarray) -> np.ndarray:
        """The frame scaled so its background keeps the brightness of a slow reference.

        The gain is reference / frame summed over the cells of a coarse grid that were
        background in the last mask and whose own ratio is within ``gain_tolerance`` of the
        median: a person near the camera (a third of its view) moves the whole frame's mean,
        and scaling by that turned all the background into foreground (UP-Fall). When the last
        mask left under a fifth of the cells as background, every cell is a candidate.
        """
        size = (max(1, small.shape[1] // 4), max(1, small.shape[0] // 4))
        grid = cv2.resize(small, size, interpolation=cv2.INTER_AREA).astype(np.float32)
        if grid.ndim == 3:  # the mean of the channels: numpy's mean(axis=2), eight times quicker
            grid = (grid[..., 0] + grid[..., 1] + grid[..., 2]) / np.float32(3) if grid.shape[2] == 3 \
                else grid.mean(axis=2)
        # The reference follows slowly (as slowly as the model learns), so day turning to
        # night is learned, while a change over seconds is compensated.
        ref = grid if self.reference_ is None else self.reference_
        self.reference_ = ref + (grid - ref) / self.history
        cells = np.ones(grid.shape, bool)
        if self.mask_ is not None:
            background = cv2.resize(self.mask_, size, interpolation=cv2.INTER_AREA) == 0
            if background.sum() >= 0.2 * background.size:
                cells = background
        # The ratio of the sums over the cells whose ratio is near the median: a body that has
        # just come in (not yet in the last mask) is left out, while bright cells keep the
        # weight they have in a mean (an exposure change is not quite a product: PETS).
        ratio = self.reference_ / np.maximum(grid, 1.0)
        middle = np.median(ratio[cells])
        cells &= np.abs(ratio - middle) <= self.gain_tolerance * middle
        level = float(grid[cells].sum())
        if level <= cells.sum():  # a black frame
            return small
        gain = float(self.reference_[cells].sum()) / level
        # Where the whole frame agrees (within ``gain_agreement``), its ratio of means as before:
        # only a change that is not global (a near body) takes the background's own gain.
        whole = float(self.reference_.sum()) / max(float(grid.sum()), 1.0)
        if abs(whole - gain) <= self.gain_agreement:
            gain = whole
        return cv2.convertScaleAbs(small, alpha=gain)

    def apply(self, image: np.ndarray) -> np.ndarray:
        small = self.apply_small(image)
        h, w = image.shape[:2]
        return small if small.shape[:2] == (h, w) else cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


# =========================================================================== person size


class PersonSize:
    """Expected height in pixels of a standing person whose feet are on row ``y``.

    With a scene's ``pixels_per_metre`` the answer is the same on every row
    (the scene's own calibration). Without it, ``fit`` learns a straight line
    ``height = intercept_ + slope_ * y`` from the boxes of moving people (a
    robust fit: the upper-middle heights, since blobs are often cut short), so a
    camera can be installed without measuring anything.
    """

    def __init__(self, pixels_per_metre: float | None = None, default_height: float = 60.0):
        self.pixels_per_metre = pixels_per_metre
        self.default_height = default_height

    def fit(self, feet_y: np.ndarray, heights: np.ndarray) -> "PersonSize":
        y, hgt = np.asarray(feet_y, float), np.asarray(heights, float)
        if self.pixels_per_metre:
            self.intercept_, self.slope_ = PERSON_HEIGHT_M * self.pixels_per_metre, 0.0
            return self
        if len(y) < 20:
            self.intercept_, self.slope_ = (float(np.percentile(hgt, 75)) if len(hgt) else self.default_height), 0.0
            return self
        # Per band of rows, the 75th percentile height; then a line through the bands.
        edges = np.quantile(y, np.linspace(0, 1, 6))
        band = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, 4)
        xs, ys = [], []
        for b in range(5):
            if (band == b).sum() >= 4:
                xs.append(np.median(y[band == b]))
                ys.append(np.percentile(hgt[band == b], 75))
        if len(xs) >= 2:
            self.slope_, self.intercept_ = (float(v) for v in np.polyfit(xs, ys, 1))
            self.slope_ = max(self.slope_, 0.0)  # farther (higher in the image) is never taller
        else:
            self.intercept_, self.slope_ = float(np.percentile(hgt, 75)), 0.0
        return self

    def height(self, feet_y) -> np.ndarray:
        if not hasattr(self, "intercept_"):
            if self.pixels_per_metre:
                self.fit([], [])
            else:
                return np.full(np.shape(feet_y), self.default_height, float)
        return np.maximum(self.intercept_ + self.slope_ * np.asarray(feet_y, float), 4.0)


# =========================================================================== blobs


class BlobFinder:
    """Foreground blobs -> person and object boxes, sized against ``PersonSize``.

    A blob at least ``person_min`` of a person's expected height is a person;
    a smaller one at least ``object_min_px`` tall is an object; smaller still
    is noise, and one taller than ``person_max`` people is a lighting change.
    No person is shorter than ``min_person_px`` (full-frame pixels). A person blob wider than ``split_width`` person widths is cut
    into person-wide boxes along the valleys of its column profile.
    ``confidence`` is how much of the box the foreground fills, so ragged
    blobs go to the tracker's low-confidence second pass.
    Without ``pixels_per_metre`` the size model is refitted every ``refit``
    frames from the person-like blobs seen so far.
    """

    def __init__(self, pixels_per_metre: float | None = None, person_min: float = 0.45, person_max: float = 4.0,
                 stacked: float = 1.5, min_person_px: float = 16.0,
                 object_min_px: float = 4.0, min_area_px: float = 24.0, split_width: float = 1.6,
                 refit: int = 100, aspect: float = 0.4):
        self.pixels_per_metre = pixels_per_metre
        self.person_min = person_min
        self.person_max = person_max
        self.stacked = stacked
        self.min_person_px = min_person_px
        self.object_min_px = object_min_px
        self.min_area_px = min_area_px
        self.split_width = split_width
        self.refit = refit
        self.aspect = aspect
        self.size_ = PersonSize(pixels_per_metre)
        self._seen: list[tuple[float, float]] = []
        self._n = 0

    def detect(self, small_mask: np.ndarray, scale: float) -> sv.Detections:
        """Boxes in full-frame pixels from a working-resolution mask (``scale`` = working / full)."""
        n, labels, stats, _ = components(small_mask)
        if n <= 1:
            self._learn(np.empty((0, 4)))
            return empty_detections()
        stats = stats[1:]
        x, y, w, h, area = (stats[:, k].astype(float) for k in range(5))
        keep = area >= self.min_area_px * scale * scale
        boxes, conf, cls = [], [], []
        fill = area / np.maximum(w * h, 1)
        inv = 1.0 / scale
        for i in np.nonzero(keep)[0]:
            x0, y0, x1, y1 = x[i] * inv, y[i] * inv, (x[i] + w[i]) * inv, (y[i] + h[i]) * inv
            expected = self._expected(y1)
            bh = y1 - y0
            if bh > self.person_max * expected:
                continue  # far taller than anyone there: a lighting change, not an object
            if bh > self.stacked * expected:  # people one behind the other: a crowd
                for box, f in self._grid(labels, i + 1, stats[i], scale):
                    boxes.append(box)
                    conf.append(min(1.0, 0.35 + f))
                    cls.append(PERSON)
            elif bh >= self.person_min * expected:
                wide = (x1 - x0) > self.split_width * self.aspect * max(bh, expected)
                parts = self._split(labels, i + 1, stats[i], scale, max(bh, expected)) if wide else [(x0, x1)]
                for a, b in parts:
                    boxes.append((a, y0, b, y1))
                    conf.append(min(1.0, 0.35 + fill[i]))
                    cls.append(PERSON)
            elif bh >= self.object_min_px:
                boxes.append((x0, y0, x1, y1))
                conf.append(min(1.0, 0.35 + fill[i]))
                cls.append(OBJECT)
        if not boxes:
            self._learn(np.empty((0, 4)))
            return empty_detections()
        det = sv.Detections(xyxy=np.array(boxes, np.float32), confidence=np.array(conf, np.float32),
                            class_id=np.array(cls, int))
        # Learn the size by row from person-shaped, well-filled blobs only (not crowd pieces).
        wh = det.xyxy[:, 2:] - det.xyxy[:, :2]
        shaped = (det.class_id == PERSON) & (wh[:, 0] >= 0.2 * wh[:, 1]) & (wh[:, 0] <= 0.8 * wh[:, 1]) \
            & (det.confidence >= 0.35 + 0.4)
        self._learn(det.xyxy[shaped])
        return det

    def _expected(self, feet_y: float) -> float:
        """A person's height with feet on this row, never below what a person can be seen at
        (``PersonSize.height``'s line in plain floats once fitted: it runs for every blob)."""
        size = self.size_
        if hasattr(size, "intercept_"):
            height = max(size.intercept_ + size.slope_ * float(feet_y), 4.0)
        else:
            height = float(size.height(feet_y))
        return max(height, self.min_person_px / self.person_min)

    def _split(self, labels, label, stat, scale, expected) -> list[tuple[float, float]]:
        """Cut a wide blob at the emptiest columns, about one person width apart."""
        x, y, w, h = (int(v) for v in stat[:4])
        cols = (labels[y:y + h, x:x + w] == label).sum(0).astype(float)
        k = min(8, max(1, int(round(w / scale / (self.aspect * expected)))))
        if k == 1:
            return [(x / scale, (x + w) / scale)]
        cuts = []
        for j in range(1, k):  # the lowest column near each even cut
            centre = j * w / k
            lo, hi = int(max(1, centre - w / (2 * k))), int(min(w - 1, centre + w / (2 * k)))
            cuts.append(lo + int(np.argmin(cols[lo:hi])) if hi > lo else int(centre))
        edges = [0] + sorted(set(cuts)) + [w]
        return [((x + a) / scale, (x + b) / scale) for a, b in zip(edges, edges[1:]) if b > a]

    def _grid(self, labels, label, stat, scale) -> list[tuple[tuple, float]]:
        """Cut a crowd blob into bands one person tall (from the feet up), then person-wide
        pieces; pieces the foreground barely fills are gaps in the crowd or lighting noise."""
        x, y, w, h = (int(v) for v in stat[:4])
        mine = labels[y:y + h, x:x + w] == label
        out = []
        bottom = h
        while bottom > 0:
            eh = self._expected((y + bottom) / scale) * scale
            top = max(0, int(round(bottom - eh)))
            band = mine[top:bottom]
            cols = np.nonzero(band.any(0))[0]
            if len(cols) and bottom - top >= self.person_min * eh:
                k = min(8, max(1, int(round((cols[-1] + 1 - cols[0]) / (self.aspect * eh)))))
                edges = np.linspace(cols[0], cols[-1] + 1, k + 1).round().astype(int)
                for a, b in zip(edges, edges[1:]):
                    piece = band[:, a:b]
                    rows = np.nonzero(piece.any(1))[0]
                    if b <= a or not len(rows) or rows[-1] + 1 - rows[0] < self.person_min * eh:
                        continue
                    fill = float(piece[rows[0]:rows[-1] + 1].mean())
                    if fill >= 0.3:
                        out.append((((x + a) / scale, (y + top + rows[0]) / scale, (x + b) / scale,
                                     (y + top + rows[-1] + 1) / scale), fill))
            bottom = top
        return out

    def _learn(self, person_boxes: np.ndarray) -> None:
        self._n += 1
        if self.pixels_per_metre:
            return
        for x0, y0, x1, y1 in person_boxes:
            self._seen.append((y1, y1 - y0))
        self._seen = self._seen[-5000:]
        first = not hasattr(self.size_, "intercept_") and len(self._seen) >= 50
        if (first or self._n % self.refit == 0) and self._seen:
            ys, hs = np.array(self._seen).T
            self.size_ = PersonSize(None).fit(ys, hs)


# =========================================================================== HOG


class HogPeopleFinder:
    """OpenCV's default HOG + linear SVM people detector, run on regions only.

    Its window is 64x128 px, so a 50 px pedestrian is found only after
    upscaling: too slow for every frame of a full image. ``detect(image, rois)``
    looks inside the given boxes (grown by ``margin`` and scaled so that a
    person fills the window) and returns person boxes in frame pixels.
    Measured on PETS 2009 and the synthetic clips it split no group the blobs
    missed (same coverage, a few more ids, 0.3x to 0.8x the speed), so
    ``PeopleFinder`` leaves it off unless asked (``hog=True``).
    """

    def __init__(self, margin: float = 0.25, hit_threshold: float = 0.0, target_height: int = 128):
        self.margin = margin
        self.hit_threshold = hit_threshold
        self.target_height = target_height
        self.hog_ = cv2.HOGDescriptor()
        self.hog_.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, image: np.ndarray, rois: np.ndarray) -> sv.Detections:
        H, W = image.shape[:2]
        boxes, scores = [], []
        for x0, y0, x1, y1 in np.asarray(rois, float):
            bh = y1 - y0
            m = self.margin * bh
            a, b = int(max(0, x0 - m)), int(max(0, y0 - m))
            c, d = int(min(W, x1 + m)), int(min(H, y1 + m))
            f = self.target_height / max(bh, 1.0) * 1.1
            crop = cv2.resize(image[b:d, a:c], None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR)
            if crop.shape[0] < 128 or crop.shape[1] < 64:
                continue
            found, weights = self.hog_.detectMultiScale(crop, hitThreshold=self.hit_threshold,
                                                        winStride=(8, 8), scale=1.1)
            for (u, v, w, h), s in zip(found, np.ravel(weights)):
                boxes.append((a + u / f, b + v / f, a + (u + w) / f, b + (v + h) / f))
                scores.append(float(1 / (1 + np.exp(-s))))
        if not boxes:
            return empty_detections()
        return sv.Detections(xyxy=np.array(boxes, np.float32), confidence=np.array(scores, np.float32),
                             class_id=np.zeros(len(boxes), int))


# =========================================================================== ONNX


class OnnxFinder:
    """A user's own detection model (ONNX), run through ``cv2.dnn``: the plug-in point.

    The model takes one ``1 x 3 x H x W`` float image (RGB, 0..1, letterboxed
    to ``input_size``) and returns YOLO-style rows, ``N x (4 + 1 + C)``:
    ``cx, cy, w, h`` in input pixels, an objectness score, then ``C`` class
    scores (a ``1 x N x (5 + C)`` output, or the transposed ``1 x (5 + C) x N``,
    is accepted). ``classes`` names the ``C`` classes; a row's confidence is
    objectness x best class score. ``kind`` says what the model is for
    (``"people"``, ``"weapons"``, ...): it is recorded, never guessed. This is
    the only weapon support in safecity: no model is shipped.
    Boxes come back in frame pixels after non-maximum suppression; classes named
    ``person`` map to ``class_id`` 0, all others to 1, and the name is kept in
    ``data['class_name']``.
    """

    def __init__(self, path: str | os.PathLike, input_size: tuple[int, int] = (640, 640),
                 classes: tuple[str, ...] = ("person",), confidence: float = 0.4,
                 kind: str = "people", nms_iou: float = 0.45):
        self.path = Path(path)
        self.input_size = tuple(input_size)
        self.classes = tuple(classes)
        self.confidence = confidence
        self.kind = kind
        self.nms_iou = nms_iou
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path}: no such file")
        try:
            self.net_ = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as exc:
            raise ValueError(f"ONNX model {self.path}: OpenCV cannot load it ({exc})") from exc

    def detect(self, image: np.ndarray) -> sv.Detections:
        H, W = image.shape[:2]
        iw, ih = self.input_size
        r = min(iw / W, ih / H)
        canvas = np.full((ih, iw, 3), 114, np.uint8)  # letterbox: keep the aspect, pad grey
        nw, nh = round(W * r), round(H * r)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh))
        blob = cv2.dnn.blobFromImage(canvas, 1 / 255.0, (iw, ih), swapRB=True, crop=False)
        self.net_.setInput(blob)
        out = np.asarray(self.net_.forward(), np.float32)
        rows = out.reshape(-1, out.shape[-1]) if out.ndim != 3 else out[0]
        width = 5 + len(self.classes)
        if rows.shape[-1] != width and rows.shape[0] == width:
            rows = rows.T
        if rows.shape[-1] != width:
            raise ValueError(f"ONNX model {self.path}: output rows have {rows.shape[-1]} values, "
                             f"expected 5 + {len(self.classes)} classes = {width}")
        scores = rows[:, 5:] * rows[:, 4:5]
        best = scores.argmax(1)
        conf = scores[np.arange(len(rows)), best]
        keep = conf >= self.confidence
        if not keep.any():
            return empty_detections()
        cx, cy, w, h = (rows[keep, k] for k in range(4))
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) / r
        xyxy = np.clip(xyxy, 0, [W, H, W, H]).astype(np.float32)
        names = np.array([self.classes[b] for b in best[keep]])
        det = sv.Detections(xyxy=xyxy, confidence=conf[keep].astype(np.float32),
                            class_id=np.where(names == "person", PERSON, OBJECT),
                            data={"class_name": names})
        return det.with_nms(threshold=self.nms_iou, class_agnostic=False)


# =========================================================================== together


class PeopleFinder:
    """Background model + blobs, with optional HOG confirmation and ONNX models.

    ``detect(image)`` -> (detections, foreground). HOG, when on, runs every
    ``hog_every`` frames on the person blobs and replaces a blob by the HOG
    people inside it when there are two or more (splitting a group).
    ONNX detections are added as they are (each model decides its classes).
    """

    def __init__(self, scene: dict | None = None, background: BackgroundModel | None = None,
                 blobs: BlobFinder | None = None, hog: bool = False, hog_every: int = 5,
                 onnx: list[OnnxFinder] | None = None):
        self.scene = scene or {}
        self.background = background or BackgroundModel(fps=float(self.scene.get("fps") or 10.0))
        self.blobs = blobs or BlobFinder(self.scene.get("pixels_per_metre"))
        self.hog = hog
        self.hog_every = hog_every
        self.onnx = list(onnx or [])
        self._hog = HogPeopleFinder() if hog else None
        self._n = 0

    def detect(self, image: np.ndarray) -> tuple[sv.Detections, np.ndarray]:
        small = self.background.apply_small(image)
        self.small_, self.scale_ = small, small.shape[1] / image.shape[1]
        det = self.blobs.detect(small, self.scale_)
        if self._hog is not None and self._n % self.hog_every == 0 and len(det):
            det = self._split_with_hog(image, det)
        for model in self.onnx:
            extra = model.detect(image)
            if len(extra):
                det = sv.Detections.merge([_plain(det), _plain(extra)])
        self._n += 1
        h, w = image.shape[:2]
        fg = small if small.shape[:2] == (h, w) else cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        return det, fg

    def use_fps(self, fps: float) -> None:
        """The camera's frame rate (the background model's memory is a duration)."""
        self.background.use_fps(fps)

    def shared(self, image: np.ndarray) -> Frame:
        """The frame just detected on, carrying its working-resolution copy for the rules."""
        bg = self.background
        if bg.working_ is None or bg.scale == 1:
            return with_working(image, None, None)
        return with_working(image, bg.working_, bg.scale)

    @property
    def working_foreground(self) -> tuple[np.ndarray, float]:
        """The last frame's foreground at the working resolution (0/255), and that resolution
        as a share of the frame's width: counting people on it costs a quarter of full size."""
        return self.small_, self.scale_

    @property
    def size_model(self) -> PersonSize:
        """How tall a person is expected on each image row (learned from the blobs seen)."""
        return self.blobs.size_

    def person_height(self, feet_y) -> np.ndarray:
        """Expected height (pixels) of a person whose feet are on image row(s) ``feet_y``."""
        return self.blobs.size_.height(feet_y)

    def _split_with_hog(self, image, det: sv.Detections) -> sv.Detections:
        people = det.class_id == PERSON
        keep = np.ones(len(det), bool)
        extra = []
        for i in np.nonzero(people)[0]:
            found = self._hog.detect(image, det.xyxy[i:i + 1])
            if len(found) >= 2:
                found = found.with_nms(0.3)
                if len(found) >= 2:
                    keep[i] = False
                    extra.append(found)
        if not extra:
            return det
        return sv.Detections.merge([det[keep]] + extra)


def _plain(det: sv.Detections) -> sv.Detections:
    """Only the fields every detector has, so detections from different models merge."""
    return sv.Detections(xyxy=det.xyxy, confidence=det.confidence, class_id=det.class_id)
