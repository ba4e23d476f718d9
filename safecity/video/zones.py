"""Per zone: how many people (counted from the foreground, corrected for perspective and
occlusion) and, per time bin, the ``observations`` features (count, occupancy, mean speed,
flow-direction histogram)."""
from __future__ import annotations

import math
from collections import defaultdict

import cv2
import numpy as np
import pandas as pd

#: Sectors of the flow-direction histogram: 0 = towards +x (image right), counter-clockwise
#: as seen on screen (2 = up the image, 4 = left, 6 = down).
FLOW_SECTORS = 8

#: Below this ground speed (m/s) a person is standing: no direction for the flow histogram.
MOVING_M_S = 0.3

#: Above this (m/s, a sprint) a "person" speed is a tracking glitch (a box hopping to a
#: neighbour, a blob splitting), left out of the mean speed and the flow.
MAX_PERSON_M_S = 8.0


class ZoneCounter:
    """People in each zone from the foreground, corrected for perspective and occlusion.

    Tracks undercount a crowd: people one behind the other merge into one
    blob. Here every foreground pixel counts as ``1 / a(y)`` of a person,
    ``a(y)`` being the area a person covers on row ``y`` (``fill`` of a box
    ``aspect`` times as wide as the person height the detector expects
    there), and the share ``c`` of the zone so covered is turned into a count
    with the occlusion law of randomly placed people, ``n = -N ln(1 - c)``
    (``N``: how many people would tile the zone). People bunched in one
    part of the zone hide more of each other than that law assumes, so a
    dense crowd is still undercounted; the pipeline reports the larger of
    this count and the tracked people. A fitted ``counting.CrowdCounter`` is
    the better tool where labelled frames exist (``CameraPipeline(counter=)``).
    """

    def __init__(self, zones: dict[str, np.ndarray], fill: float = 0.6, aspect: float = 0.4,
                 max_cover: float = 0.95, min_height_px: float = 16.0):
        self.zones = zones
        self.fill = fill
        self.aspect = aspect
        self.max_cover = max_cover
        self.min_height_px = min_height_px
        self._key = None

    def count(self, small_fg: np.ndarray, scale: float, size_model, people_xyxy=None) -> dict[str, float]:
        """People per zone from a working-resolution foreground; only the foreground inside
        ``people_xyxy`` (full-frame boxes of detected people) counts, so that a lighting change
        or a bag is not counted as people."""
        key = (small_fg.shape, getattr(size_model, "intercept_", None), getattr(size_model, "slope_", None))
        if key != self._key:
            self._weights(small_fg.shape, scale, size_model)
            self._key = key
        fg = small_fg > 0
        if people_xyxy is not None:
            keep = np.zeros_like(fg)
            for x0, y0, x1, y1 in np.asarray(people_xyxy, float) * scale:
                keep[max(0, int(y0)):int(math.ceil(y1)), max(0, int(x0)):int(math.ceil(x1))] = True
            fg &= keep
        out = {}
        for name, (w, capacity) in self._w.items():
            cover = min(float(w[fg].sum()) / capacity, self.max_cover) if capacity > 0 else 0.0
            out[name] = -capacity * math.log1p(-cover)
        return out

    def _weights(self, shape, scale, size_model) -> None:
        rows = (np.arange(shape[0]) + 0.5) / scale
        person_h = np.maximum(size_model.height(rows), self.min_height_px) * scale
        per_row = 1.0 / (self.fill * self.aspect * person_h**2)
        self._w = {}
        for name, poly in self.zones.items():
            m = np.zeros(shape, np.uint8)
            cv2.fillPoly(m, [np.round(np.asarray(poly, float) * scale).astype(np.int32)], 1)
            w = m * per_row[:, None]
            self._w[name] = (w, float(w.sum()))


class BinFeatures:
    """Per zone and time bin: people count (mean over the bin's frames), occupancy, mean speed,
    flow-direction histogram, and the stays that ended (``dwell_count``, ``dwell_mean_s``,
    ``dwell_max_s``, see ``safecity.video.dwell``); per counting line, ``line_in`` and
    ``line_out`` (``safecity.video.lines``). ``add`` returns the rows of the bin it closed
    (None while open)."""

    def __init__(self, camera_id: str, zones: dict[str, np.ndarray], size: tuple[int, int],
                 bin_s: float = 60.0, scale: float = 0.25, lines=()):
        self.camera_id = camera_id
        self.zones = zones
        self.lines = list(lines)
        self.bin_s = bin_s
        self.scale = scale
        w, h = size
        self._shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        self._masks = {}
        for name, poly in zones.items():
            m = np.zeros(self._shape, np.uint8)
            cv2.fillPoly(m, [np.round(np.asarray(poly, float) * scale).astype(np.int32)], 1)
            self._masks[name] = m.astype(bool)
        self._bin = None
        self._reset()

    def _reset(self) -> None:
        self._frames = 0
        self._count = defaultdict(float)
        self._occupancy = defaultdict(float)
        self._speeds = defaultdict(list)
        self._flow = defaultdict(lambda: np.zeros(FLOW_SECTORS))
        self._stays = defaultdict(list)
        self._crossed = {name: [0, 0] for name in self.lines}

    def add(self, ts: pd.Timestamp, xyxy: np.ndarray, speed: np.ndarray, direction: np.ndarray,
            inside: dict[str, np.ndarray], counts: dict[str, float], stays=(),
            crossings: dict[str, tuple[int, int]] | None = None) -> pd.DataFrame | None:
        """Account one frame: the people's boxes, ground speeds and image directions, each
        zone's boolean mask over them, the people counted in each zone, the stays that ended
        (``(zone, seconds)`` pairs) and each line's ``(in, out)`` crossings."""
        step = int(round(self.bin_s * 1e9))
        start = ts.value // step * step  # nanoseconds since the epoch, cheaper than Timestamp.floor
        out = self.flush() if self._bin is not None and start != self._bin else None
        self._bin = start
        self._frames += 1
        cover = np.zeros(self._shape, bool)
        s = self.scale
        for x0, y0, x1, y1 in np.asarray(xyxy, float) * s:
            cover[max(0, int(y0)):int(math.ceil(y1)), max(0, int(x0)):int(math.ceil(x1))] = True
        angle = np.arctan2(-direction[:, 1], direction[:, 0])
        sector = np.round(angle / (2 * np.pi / FLOW_SECTORS)).astype(int) % FLOW_SECTORS
        for name, mask in self._masks.items():
            sel = inside[name]
            self._count[name] += float(counts.get(name, sel.sum()))
            self._occupancy[name] += float((cover & mask).sum()) / max(int(mask.sum()), 1)
            ok = sel & np.isfinite(speed) & (speed <= MAX_PERSON_M_S)
            self._speeds[name].extend(speed[ok].tolist())
            moving = ok & (speed >= MOVING_M_S)
            np.add.at(self._flow[name], sector[moving], 1.0)
        self.end_stays(stays)
        for name, (n_in, n_out) in (crossings or {}).items():
            self._crossed[name][0] += n_in
            self._crossed[name][1] += n_out
        return out

    def end_stays(self, stays) -> None:
        """Count stays (``(zone, seconds)`` pairs) in the bin in progress."""
        for zone, seconds in stays:
            self._stays[zone].append(float(seconds))

    def flush(self) -> pd.DataFrame:
        """The rows of the bin in progress (empty if none), and start afresh."""
        if self._bin is None or not self._frames:
            return empty_observations()
        rows = []
        for name in self._masks:
            sid = f"{self.camera_id}:{name}"
            rows.append((sid, "people_count", self._count[name] / self._frames))
            rows.append((sid, "occupancy", min(1.0, self._occupancy[name] / self._frames)))
            if self._speeds[name]:
                rows.append((sid, "mean_speed", float(np.mean(self._speeds[name]))))
            flow = self._flow[name]
            share = flow / flow.sum() if flow.sum() else flow
            rows.extend((sid, f"flow_dir_{k}", float(share[k])) for k in range(FLOW_SECTORS))
            stays = self._stays[name]
            rows.append((sid, "dwell_count", float(len(stays))))
            if stays:
                rows.append((sid, "dwell_mean_s", float(np.mean(stays))))
                rows.append((sid, "dwell_max_s", float(np.max(stays))))
        for name, (n_in, n_out) in self._crossed.items():
            rows.append((f"{self.camera_id}:{name}", "line_in", float(n_in)))
            rows.append((f"{self.camera_id}:{name}", "line_out", float(n_out)))
        out = pd.DataFrame(rows, columns=["sensor_id", "metric", "value"])
        out.insert(0, "ts", pd.Timestamp(self._bin, tz="UTC"))
        self._bin = None
        self._reset()
        return out


def empty_observations() -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.Series(dtype="datetime64[ns, UTC]"), "sensor_id": pd.Series(dtype=object),
                         "metric": pd.Series(dtype=object), "value": pd.Series(dtype=float)})



