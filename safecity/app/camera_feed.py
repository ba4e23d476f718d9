"""Cameras watched from elsewhere: the latest blurred tile and health that each camera worker posts.

In ``safecity serve --live`` the pipelines run in camera workers (``safecity video run
--server ...``), other processes, maybe other machines. Each worker posts, at most
once a second per camera, its latest *display* tile (people blurred by its own
pipeline: no raw frame ever leaves the worker) and its health to
``POST /api/v1/cameras/{camera_id}``::

    {"health": {"status": "ok", "frames": 1200, "fps": 9.8, ...}, "tile_jpeg_b64": "..."}

``CameraFeed`` keeps the latest of each in memory (a tile is worth nothing once a
newer one exists) with the time it arrived, and reads like a ``CameraWall``
(``camera_ids``, ``tile``, ``health``), so the page's wall shows remote cameras
without running their pipelines. ``feed_handler`` is the Tornado handler the
ingest API mounts; the API owns the tokens, through ``check_token``.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd

from safecity.config.addresses import redact

#: Health statuses, from good to bad (the camera wall's): ``late``: no news for a while;
#: ``ended``: a finite source that stopped; ``offline``: the source cannot be read, or the
#: worker has gone silent.
STATUSES = ("ok", "late", "ended", "offline")

#: A camera id as the API's route accepts it (a camera's sensors are ``"{camera}:{zone}"``).
CAMERA_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

#: Largest tile accepted, in bytes of JPEG (a 360-px tile is some 20 kB).
MAX_TILE_BYTES = 2 * 1024 * 1024

#: Health fields a worker may send: name -> (type check, description for errors).
HEALTH_NUMBERS = ("frames", "dropped", "loops", "events", "fps", "restarts")
HEALTH_TEXTS = ("status", "last_error", "worker")  # worker: the Dask worker running the camera


class FeedError(ValueError):
    """A camera post refused: ``status`` (400 or 413) and ``field`` at fault."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        self.field, self.status = field, status
        super().__init__(f"field '{field}': {message}" if field else message)


@dataclass
class RemoteCamera:
    """What the page knows of one remote camera: its latest health and tile, and when they came."""

    camera_id: str
    health: dict = field(default_factory=dict)
    jpeg: bytes | None = None
    tile_frames: int = 0            # the worker's frame count when the tile was made
    last_seen: float | None = None  # wall clock (time.time) of the last post
    source: str | None = None       # the token's name that posted it


class CameraFeed:
    """The latest tile and health posted by each remote camera (thread-safe).

    ``late_after_s``: a camera not heard from for this long is ``late``;
    ``offline_after_s``: ``offline`` (its worker has stopped or lost the server).
    ``max_cameras``: posts for more distinct cameras are refused (a bound on memory).
    """

    def __init__(self, late_after_s: float = 5.0, offline_after_s: float = 60.0,
                 max_cameras: int = 256):
        self.late_after_s = late_after_s
        self.offline_after_s = offline_after_s
        self.max_cameras = max_cameras
        self._cameras: dict[str, RemoteCamera] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writing

    def update(self, camera_id: str, health: dict, jpeg: bytes | None = None,
               source: str | None = None, now: float | None = None) -> RemoteCamera:
        """Record a camera's post (checked by ``check_post`` first); the tile is kept only if given."""
        health = check_health(health)
        if not CAMERA_ID.match(camera_id or ""):
            raise FeedError(f"camera id {camera_id!r:.80} is not letters, digits, '_', '.', '-' "
                            "(at most 128, starting with a letter or digit)", "camera_id")
        if jpeg is not None:
            check_jpeg(jpeg)
        with self._lock:
            cam = self._cameras.get(camera_id)
            if cam is None:
                if len(self._cameras) >= self.max_cameras:
                    raise FeedError(f"this server already follows {self.max_cameras} cameras",
                                    "camera_id")
                cam = self._cameras[camera_id] = RemoteCamera(camera_id)
            cam.health = health
            if jpeg is not None:
                cam.jpeg, cam.tile_frames = jpeg, int(health.get("frames", cam.tile_frames))
            cam.last_seen = time.time() if now is None else now
            cam.source = source
            return cam

    # ------------------------------------------------------------------ reading (any thread)

    @property
    def camera_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._cameras)

    def tile(self, camera_id: str) -> tuple[int, bytes | None]:
        """(the worker's frame count at the tile, the blurred JPEG or None)."""
        with self._lock:
            cam = self._cameras[camera_id]
            return cam.tile_frames, cam.jpeg

    def worker(self, camera_id: str) -> str | None:
        """The cluster worker running the camera, as its last post said (``None``: not on a cluster)."""
        with self._lock:
            return self._cameras[camera_id].health.get("worker")

    def last_seen(self, camera_id: str) -> float | None:
        """Wall-clock time (``time.time()``) of the camera's last post."""
        with self._lock:
            return self._cameras[camera_id].last_seen

    def health(self, now: float | None = None) -> pd.DataFrame:
        """One row per camera, the columns of ``CameraWall.health()``; ``last_frame_age_s`` is the
        time since the worker last posted. A silent worker turns ``late``, then ``offline``."""
        now = time.time() if now is None else now
        with self._lock:
            cams = [(c.camera_id, dict(c.health), c.last_seen) for c in self._cameras.values()]
        rows = []
        for cid, h, seen in sorted(cams):
            age = None if seen is None else max(0.0, now - seen)
            status, error = h.get("status", "ok"), h.get("last_error") or ""
            if status in ("ok", "late") and age is not None and age > self.offline_after_s:
                status, error = "offline", f"no news from the camera's worker for {age:.0f} s"
            elif status == "ok" and age is not None and age > self.late_after_s:
                status = "late"
            rows.append({"camera_id": cid, "status": status, "frames": int(h.get("frames", 0)),
                         "dropped": int(h.get("dropped", 0)), "last_frame_age_s": age,
                         "fps": 0.0 if status == "offline" else float(h.get("fps", 0.0)),
                         "loops": int(h.get("loops", 0)), "events": int(h.get("events", 0)),
                         "error": for_viewers(error)})
        return pd.DataFrame(rows, columns=["camera_id", "status", "frames", "dropped",
                                           "last_frame_age_s", "fps", "loops", "events", "error"])


# =========================================================================== checks


def check_health(health) -> dict:
    """A posted health object, checked field by field (``FeedError`` naming the field)."""
    if not isinstance(health, dict):
        raise FeedError(f"expected a JSON object, got {type(health).__name__}", "health")
    unknown = sorted(set(health) - set(HEALTH_NUMBERS) - set(HEALTH_TEXTS))
    if unknown:
        raise FeedError(f"unknown field; expected {', '.join(HEALTH_TEXTS + HEALTH_NUMBERS)}",
                        f"health.{unknown[0]}")
    status = health.get("status")
    if status not in STATUSES:
        raise FeedError(f"{status!r:.40} is not one of {', '.join(STATUSES)}", "health.status")
    out = {"status": status}
    error = health.get("last_error")
    if error is not None:
        if not isinstance(error, str):
            raise FeedError(f"expected text, got {type(error).__name__}", "health.last_error")
        out["last_error"] = error[:500]
    worker = health.get("worker")
    if worker is not None:
        if not isinstance(worker, str):
            raise FeedError(f"expected text, got {type(worker).__name__}", "health.worker")
        out["worker"] = worker[:200]
    for name in HEALTH_NUMBERS:
        value = health.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0:
            raise FeedError(f"expected a number 0 or more, got {value!r:.40}", f"health.{name}")
        out[name] = float(value) if name == "fps" else int(value)
    return out


def check_jpeg(data: bytes) -> None:
    """Refuse a tile over ``MAX_TILE_BYTES`` (413) or that is not a JPEG image (400)."""
    if len(data) > MAX_TILE_BYTES:
        raise FeedError(f"{len(data)} bytes, more than the {MAX_TILE_BYTES} allowed",
                        "tile_jpeg_b64", status=413)
    if not data.startswith(b"\xff\xd8\xff") or cv2.imdecode(
            np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        raise FeedError("not a JPEG image", "tile_jpeg_b64")


def parse_post(body: bytes) -> tuple[dict, bytes | None]:
    """(health, JPEG bytes or None) of a post's JSON body, or ``FeedError``."""
    if len(body) > MAX_TILE_BYTES * 4 // 3 + 64 * 1024:  # base64 grows by a third
        raise FeedError(f"the body is {len(body)} bytes; a tile may be {MAX_TILE_BYTES} bytes",
                        status=413)
    try:
        post = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise FeedError(f"the body is not JSON: {err}") from None
    if not isinstance(post, dict):
        raise FeedError(f"the body must be a JSON object, got {type(post).__name__}")
    unknown = sorted(set(post) - {"health", "tile_jpeg_b64"})
    if unknown:
        raise FeedError("unknown field; expected health, tile_jpeg_b64", unknown[0])
    if "health" not in post:
        raise FeedError("missing", "health")
    encoded = post.get("tile_jpeg_b64")
    if encoded is None:
        return post["health"], None
    if not isinstance(encoded, str):
        raise FeedError(f"expected base64 text, got {type(encoded).__name__}", "tile_jpeg_b64")
    try:
        jpeg = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise FeedError("not base64", "tile_jpeg_b64") from None
    return post["health"], jpeg


#: An absolute path in a message (not a URL's path: no host or word character just before it).
_ABS_PATH = re.compile(r"""(?<![\w:/.-])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'"]+[/\\])+(?=[^\s/\\'"])""")


def for_viewers(message: str) -> str:
    """A camera's error as every viewer may read it: no credentials, no server directories.

    The health table goes to every session; ``/srv/city/cams/gate.avi: ...``
    becomes ``gate.avi: ...`` and a stream URL loses its password.
    """
    return _ABS_PATH.sub("", redact(message))


# =========================================================================== HTTP


def feed_handler(feed: CameraFeed, check_token: Callable) -> type:
    """A Tornado handler class for ``POST /api/v1/cameras/{camera_id}`` writing into ``feed``.

    ``check_token(request, table)`` returns the posting source's name or raises
    (``tornado.web.HTTPError`` 401/403, or ``PermissionError``: 403); the table is
    ``"cameras"``. Answers 202 ``{"camera_id", "tile": bool}``; 400/413 with
    ``{"error", "field"}``.
    """
    import tornado.web

    class CameraFeedHandler(tornado.web.RequestHandler):
        def check_xsrf_cookie(self) -> None:  # a bearer token, not a cookie, authenticates
            pass

        def post(self, camera_id: str) -> None:
            try:
                source = check_token(self.request, "cameras")
            except PermissionError as err:
                return self._refuse(403, str(err) or "this token may not post camera tiles")
            try:
                if not CAMERA_ID.match(camera_id):
                    raise FeedError(f"camera id {camera_id!r:.80} is not letters, digits, '_', "
                                    "'.', '-'", "camera_id")
                health, jpeg = parse_post(self.request.body)
                feed.update(camera_id, health, jpeg, source=source)
            except FeedError as err:
                return self._refuse(err.status, str(err), err.field)
            self.set_status(202)
            self.finish({"camera_id": camera_id, "tile": jpeg is not None})

        def _refuse(self, status: int, message: str, field_name: str | None = None) -> None:
            self.set_status(status)
            self.finish({"error": message, "field": field_name})

    return CameraFeedHandler


_FEED: CameraFeed | None = None
_FEED_LOCK = threading.Lock()


def get_feed(**kwargs) -> CameraFeed:
    """The process's one feed (the API's handler writes it, every session's wall reads it)."""
    global _FEED
    with _FEED_LOCK:
        if _FEED is None:
            _FEED = CameraFeed(**kwargs)
        return _FEED


__all__ = [
    "CAMERA_ID",
    "MAX_TILE_BYTES",
    "STATUSES",
    "CameraFeed",
    "FeedError",
    "RemoteCamera",
    "check_health",
    "check_jpeg",
    "feed_handler",
    "for_viewers",
    "get_feed",
    "parse_post",
]
