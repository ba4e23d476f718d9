"""The one frame reader: the frames of a numbered-frame folder or of a video file, in order.

Used by the camera sources (to list a folder's images) and by the anomaly
scorer and its evaluation (to read a clip's frames as grayscale arrays).
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv"}


class FrameSource:
    """The frames of one clip, read lazily as 2-D uint8 grayscale arrays.

    ``source`` is a folder of image files (read in natural name order, so
    ``9.jpg`` comes before ``10.jpg``) or a video file. Files that do not
    decode, or whose size differs from the clip's first frame, are skipped:
    after an iteration ``names`` lists the frames yielded (file names, or
    0-based frame numbers of a video) and ``skipped`` the files left out, so
    that scores can be matched to labels by name.
    """

    def __init__(self, source: str | os.PathLike):
        self.source = Path(source)
        if not self.source.exists():
            raise FileNotFoundError(f"{self.source}: no such folder or video file")
        self.names: list[str] = []
        self.skipped: list[str] = []

    def files(self) -> list[Path]:
        """The image files of a folder source, in natural order (empty for a video)."""
        if not self.source.is_dir():
            return []
        files = [f for f in self.source.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        return sorted(files, key=lambda f: natural_key(f.name))

    def __iter__(self) -> Iterator[np.ndarray]:
        self.names, self.skipped = [], []
        if self.source.is_dir():
            yield from self._read_folder()
        else:
            yield from self._read_video()

    def _read_folder(self) -> Iterator[np.ndarray]:
        shape = None
        for f in self.files():
            frame = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if frame is None or (shape is not None and frame.shape != shape):
                self.skipped.append(f.name)
                continue
            shape = frame.shape
            self.names.append(f.name)
            yield frame

    def _read_video(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.source))
        if not capture.isOpened():
            raise ValueError(f"{self.source}: not a folder of images nor a video OpenCV can open")
        try:
            index = 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                self.names.append(str(index))
                index += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        finally:
            capture.release()


def read_frames(source: str | os.PathLike) -> FrameSource:
    """A lazy iterable over the grayscale frames of a folder of images or a video file."""
    return FrameSource(source)


def natural_key(name: str) -> list:
    """Sort key that puts ``9.jpg`` before ``10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
