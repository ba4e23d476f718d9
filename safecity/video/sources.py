"""Where a camera's frames come from: files, folders of images, network streams, devices.

The first stage of the per-camera loop and the only one that touches the
outside world. A city's cameras fail in ordinary ways (a corrupt JPEG in an
export, a recording cut short by a full disk, an RTSP server that drops the
connection) and none of these should stop the analytics: bad frames are
counted and skipped, a dropped stream is reopened with exponential backoff,
and ``health()`` tells an operator what happened.

Replays are reproducible: the frames of a file or folder are stamped
``start + index / fps``, so the same input gives the same timestamps (and the
same events) every time; live streams and devices are stamped with the UTC
wall clock when the frame arrives.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import cv2
import numpy as np
import pandas as pd

from safecity.config.addresses import redact, source_kind
from safecity.data.frames import IMAGE_SUFFIXES, FrameSource

#: Frame rate assumed for a folder of images, or a video that does not state one.
DEFAULT_FPS = 10.0

#: Replays start here unless told otherwise: plainly not a real clock, and the same every run.
DEFAULT_START = pd.Timestamp("1970-01-01", tz="UTC")


STATUSES = ("ok", "reconnecting", "ended", "failed")


class Frame(NamedTuple):
    """One frame: its number in the source, its UTC time and the BGR image."""

    index: int
    ts: pd.Timestamp
    image: np.ndarray


@dataclass(frozen=True)
class Health:
    """A snapshot of a source's state, cheap enough to poll from a dashboard.

    ``frames_received`` counts frames delivered to the pipeline (frames left
    out on purpose by ``stride`` or ``max_fps`` are not counted);
    ``frames_dropped`` counts frames that could not be decoded;
    ``reconnects`` counts attempts to reopen a live stream after it failed.
    """

    camera_id: str
    frames_received: int
    frames_dropped: int
    last_frame_ts: pd.Timestamp | None
    reconnects: int
    status: str
    last_error: str | None


class VideoSource:
    """The frames of one camera, read lazily with OpenCV; iterate to get ``Frame`` values.

    ``source`` is a video file, a folder of numbered images (natural order:
    ``9.jpg`` before ``10.jpg``), a stream URL (``rtsp://``, ``http(s)://``...)
    or a device number (``0`` or ``"0"``).

    ``fps``: the rate a folder's frames were taken at, or an override for a
    file's stated rate (timestamps are ``start + index / fps``). ``stride``
    keeps every n-th frame; ``max_fps`` keeps at most that many frames per
    second of source time (wall time for live sources); skipped frames are
    not decoded. A live source that fails is reopened after ``retry_delay_s``,
    doubling up to ``max_retry_delay_s``; it gives up (status ``"failed"``)
    after ``max_retries`` reopenings in a row without a frame or
    ``give_up_after_s`` seconds without a frame (``None``: keep trying, as a
    camera on a pole should). ``timeout_s`` bounds each open and read of a
    network stream.
    """

    @classmethod
    def from_config(cls, camera, **kwargs) -> "VideoSource":
        """A configured camera's source: a folder is read at the camera's ``fps``, anything faster
        is thinned to it (``camera`` is a ``safecity.config.cameras.CameraConfig``)."""
        kind = source_kind(camera.source)
        rate = {"fps": camera.fps} if kind == "folder" else {"max_fps": camera.fps}
        return cls(camera.source, camera.id, start=camera.start, **{**rate, **kwargs})

    def __init__(self, source: str | int | os.PathLike, camera_id: str | None = None, *,
                 fps: float | None = None, start: pd.Timestamp | str | None = None,
                 stride: int = 1, max_fps: float | None = None,
                 retry_delay_s: float = 0.5, max_retry_delay_s: float = 30.0,
                 max_retries: int | None = None, give_up_after_s: float | None = None,
                 timeout_s: float = 10.0):
        self.kind = source_kind(source)
        self.source = source
        self.camera_id = camera_id or _default_id(source, self.kind)
        if fps is not None and not fps > 0:
            raise ValueError(f"camera '{self.camera_id}': fps must be positive, got {fps!r}")
        if int(stride) < 1:
            raise ValueError(f"camera '{self.camera_id}': stride must be at least 1, got {stride!r}")
        if max_fps is not None and not max_fps > 0:
            raise ValueError(f"camera '{self.camera_id}': max_fps must be positive, got {max_fps!r}")
        self.fps = None if fps is None else float(fps)
        self.start = DEFAULT_START if start is None else _utc(start)
        self.stride = int(stride)
        self.max_fps = max_fps
        self.retry_delay_s = float(retry_delay_s)
        self.max_retry_delay_s = float(max_retry_delay_s)
        self.max_retries = max_retries
        self.give_up_after_s = give_up_after_s
        self.timeout_s = float(timeout_s)
        self._stop = threading.Event()
        self._stated: float | None = None  # a file's own frame rate, read when first needed
        self._reset()

    @property
    def rate(self) -> float | None:
        """Frames per second of what this source delivers, as its replay stamps them: a folder's
        ``fps``, a file's own (or ``fps``), each thinned by ``stride`` and ``max_fps``. A live
        source is stamped with the wall clock: its ``max_fps`` if set, else unknown (None).
        What a camera's pipeline takes as its frame rate when the camera does not state one."""
        if self.kind == "folder":
            rate = self.fps or DEFAULT_FPS
        elif self.kind == "file":
            rate = self.fps or self._stated_fps()
        else:
            return self.max_fps
        rate /= self.stride
        return min(rate, self.max_fps) if self.max_fps else rate

    def _stated_fps(self) -> float:
        """The frame rate a video file's header states (``DEFAULT_FPS`` if none or absurd)."""
        if self._stated is None:
            capture = cv2.VideoCapture(str(self.source))
            try:
                stated = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
            finally:
                capture.release()
            self._stated = stated if 0 < stated < 1000 else DEFAULT_FPS
        return self._stated

    @property
    def live(self) -> bool:
        """True for streams and devices: wall-clock timestamps, reconnection on failure."""
        return self.kind in ("stream", "device")

    def health(self) -> Health:
        """The current counters and status (safe to call from another thread)."""
        return Health(self.camera_id, self._received, self._dropped, self._last_ts,
                      self._reconnects, self._status, self._error)

    def close(self) -> None:
        """Stop iterating at the next frame or retry wait (callable from another thread)."""
        self._stop.set()

    def __iter__(self) -> Iterator[Frame]:
        self._reset()
        self._stop.clear()
        if self.kind == "folder":
            return self._read_folder()
        if self.kind == "file":
            return self._read_file()
        return self._read_live()

    def __repr__(self) -> str:
        return f"VideoSource({self.camera_id!r}, kind={self.kind!r}, status={self._status!r})"

    # ----------------------------------------------------------------- readers

    def _read_folder(self) -> Iterator[Frame]:
        folder = Path(self.source)
        files = FrameSource(folder).files()
        if not files:
            raise ValueError(f"{folder}: no image files ({' '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        fps = self.fps or DEFAULT_FPS
        shape = None
        for index, file in enumerate(files):
            if self._stop.is_set():
                break
            if not self._keep(index, index / fps):
                continue
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                self._drop(f"{file}: cannot decode the image")
                continue
            if shape is not None and image.shape != shape:
                self._drop(f"{file}: size {image.shape[1]}x{image.shape[0]} differs from the "
                           f"first frame's {shape[1]}x{shape[0]}")
                continue
            shape = image.shape
            yield self._deliver(index, self.start + pd.Timedelta(seconds=index / fps), image)
        self._status = "ended"

    def _read_file(self) -> Iterator[Frame]:
        path = Path(self.source)
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"{path}: OpenCV cannot open this file as a video")
        try:
            stated = capture.get(cv2.CAP_PROP_FPS)
            self._stated = stated if 0 < stated < 1000 else DEFAULT_FPS
            fps = self.fps or self._stated
            announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            index = 0
            while not self._stop.is_set() and capture.grab():
                if self._keep(index, index / fps):
                    ok, image = capture.retrieve()
                    if ok and image is not None:
                        yield self._deliver(index, self.start + pd.Timedelta(seconds=index / fps), image)
                    else:
                        self._drop(f"{path}: frame {index} cannot be decoded")
                index += 1
        finally:
            capture.release()
        if not self._stop.is_set() and index + 1 < announced:
            # A cut recording still opens (its header is intact) but ends early.
            self._error = (f"{path}: ended after {index} of the {announced} frames its header "
                           "announces (truncated or damaged file)")
        self._status = "ended"

    def _read_live(self) -> Iterator[Frame]:
        name = redact(str(self.source))
        started = last_frame = time.monotonic()
        delay, failures, index = self.retry_delay_s, 0, 0
        while not self._stop.is_set():
            capture = self._open_live()
            try:
                if capture.isOpened():
                    while not self._stop.is_set() and capture.grab():
                        now = time.monotonic()
                        last_frame, failures, delay = now, 0, self.retry_delay_s
                        self._status = "ok"
                        if self._keep(index, now - started):
                            ok, image = capture.retrieve()
                            if ok and image is not None:
                                yield self._deliver(index, pd.Timestamp.now(tz="UTC"), image)
                            else:
                                self._drop(f"{name}: frame {index} cannot be decoded")
                        index += 1
                    error = f"{name}: the stream stopped (read failed or the server closed it)"
                else:
                    error = f"{name}: cannot open the stream"
            finally:
                capture.release()
            if self._stop.is_set():
                break
            failures += 1
            out_of_retries = self.max_retries is not None and failures > self.max_retries
            out_of_time = (self.give_up_after_s is not None
                           and time.monotonic() - last_frame >= self.give_up_after_s)
            if out_of_retries or out_of_time:
                self._status, self._error = "failed", f"{error}; gave up after {failures - 1} reconnects"
                return
            self._status, self._error = "reconnecting", error
            self._stop.wait(delay)
            delay = min(delay * 2, self.max_retry_delay_s)
            self._reconnects += 1
        self._status = "ended"

    def _open_live(self) -> cv2.VideoCapture:
        if self.kind == "device":
            text = str(self.source).strip()
            return cv2.VideoCapture(int(text) if text.isdigit() else text)
        ms = int(self.timeout_s * 1000)
        return cv2.VideoCapture(str(self.source), cv2.CAP_FFMPEG,
                                [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])

    # ----------------------------------------------------------------- bookkeeping

    def _reset(self) -> None:
        self._received = self._dropped = self._reconnects = 0
        self._last_ts: pd.Timestamp | None = None
        self._status, self._error = "ok", None
        self._due = 0.0

    def _keep(self, index: int, t: float) -> bool:
        """Subsampling: every ``stride``-th frame, at most ``max_fps`` per second of ``t``."""
        if index % self.stride:
            return False
        if self.max_fps is None:
            return True
        if t + 1e-9 < self._due:
            return False
        # Advance by whole periods so that 25 fps thinned to 10 fps averages 10, not 8.3;
        # after a gap (a live stream that stalled) start afresh rather than burst.
        period = 1.0 / self.max_fps
        self._due = self._due + period if t < self._due + period else t + period
        return True

    def _deliver(self, index: int, ts: pd.Timestamp, image: np.ndarray) -> Frame:
        self._received += 1
        self._last_ts = ts
        return Frame(index, ts, image)

    def _drop(self, error: str) -> None:
        self._dropped += 1
        self._error = error


def open_source(source: str | int | os.PathLike, camera_id: str | None = None, **kwargs) -> VideoSource:
    """A ``VideoSource`` for ``source`` (see its parameters)."""
    return VideoSource(source, camera_id, **kwargs)


def _default_id(source, kind: str) -> str:
    if kind == "device":
        text = str(os.fspath(source) if isinstance(source, os.PathLike) else source).strip()
        return f"device-{int(text)}" if text.isdigit() else f"device-{Path(text).name}"
    if kind == "stream":
        parts = urlsplit(redact(source))  # never a credential, even in ;matrix=params of the path
        return f"{parts.hostname or 'stream'}{parts.path.split(';')[0]}"
    return Path(source).stem if kind == "file" else Path(source).name


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
