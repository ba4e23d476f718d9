"""Run an installation's cameras side by side, each bounded, into a store or a live server.

``safecity video run`` used to read its cameras one after the other, and a live
source that never answered (a 401, garbage bytes, a server that accepts and
stalls, an unplugged device) kept reconnecting forever, so the cameras after
it never started. Here every camera runs in its own thread, a live source
gives up after ``give_up_after_s`` seconds without a frame, and each camera
ends as ``ok`` or ``failed`` with its reason (credentials redacted), while the
others carry on.

Where the rows go is the caller's choice: a ``Store``, or any ingest ``Sink``
wrapped in a ``SinkStore`` (a running server's API through ``HttpSink``), which
the pipeline writes to exactly as to a store. With ``--server`` a camera also
posts, at most once a second, its latest blurred tile and its health
(``TilePublisher``), so the page of ``safecity serve --live`` shows a wall of
cameras whose pipelines run here. ``loop`` replays a clip forever with times that
keep increasing (a demo, an end-to-end test); ``realtime`` plays it at its own
frame rate, stamped from now, as a camera would.
"""
from __future__ import annotations

import base64
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from safecity.config.addresses import redact
from safecity.ingest.client import HttpSink, IngestError, Sink
from safecity.video.sources import VideoSource

#: Seconds a live camera may go without a frame before ``video run`` reports it failed.
DEFAULT_GIVE_UP_S = 30.0


class Serialised:
    """Every method call of ``target`` under one lock: the cameras' threads share one store."""

    def __init__(self, target, lock: threading.Lock):
        self._target, self._lock = target, lock

    def __getattr__(self, name):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            with self._lock:
                return attr(*args, **kwargs)
        return call


# =========================================================================== rows to a sink


class RefusedBatch(RuntimeError):
    """The server refused a batch (400: a bug in the worker or a schema mismatch): the camera stops."""


def rows_for_post(df: pd.DataFrame) -> list[dict]:
    """A data-model frame as JSON-able rows: ISO 8601 times with their zone, missing values as
    null, numpy scalars as Python numbers; ``details`` stays the JSON text it is."""
    rows = []
    for i, record in enumerate(df.to_dict("records")):
        row = {}
        for name, value in record.items():
            if isinstance(value, pd.Timestamp):
                if value.tzinfo is None:
                    raise ValueError(f"row {i}, field '{name}': {value} has no zone")
                value = value.isoformat()
            elif isinstance(value, np.generic):
                value = value.item()
            if value is None or value is pd.NaT or value is pd.NA or (
                    isinstance(value, float) and math.isnan(value)):
                value = None
            row[name] = value
        rows.append(row)
    return rows


@dataclass
class SinkStore:
    """A store to the pipeline (``append(table, df)``), an ingest sink underneath (``post``).

    The pipeline appends its observations and events bin by bin as it would to
    a ``Store``; each batch becomes ``sink.post(table, rows)`` in chunks of
    ``batch_rows``. A server that refuses a batch (``IngestError``: 400, 401,
    413...) raises ``RefusedBatch``, which stops the camera; a server that cannot be
    reached (``ConnectionError``, after the sink's own retries) is tried again every
    ``retry_pause_s`` until ``patience_s`` runs out (``None``: forever). The camera
    waits; no row is dropped. ``posted``: per table, rows accepted and duplicates.
    """

    sink: Sink
    batch_rows: int = 1000
    retry_pause_s: float = 1.0
    patience_s: float | None = None
    posted: dict = field(default_factory=dict)
    waits: int = 0  # times the server could not be reached (tests and health read it)

    @property
    def concurrent(self) -> bool:
        """Several cameras may post at once (an HTTP sink holds no state between posts)."""
        return isinstance(self.sink, HttpSink)

    def append(self, table: str, df: pd.DataFrame) -> int:
        rows = rows_for_post(df)
        accepted = 0
        for k in range(0, len(rows), self.batch_rows):
            answer = self._post(table, rows[k:k + self.batch_rows])
            accepted += int(answer.get("accepted", 0))
            counts = self.posted.setdefault(table, {"accepted": 0, "duplicates": 0})
            counts["accepted"] += int(answer.get("accepted", 0))
            counts["duplicates"] += int(answer.get("duplicates", 0))
        return accepted

    def _post(self, table: str, rows: list[dict]) -> dict:
        waited_since = None
        while True:
            try:
                return self.sink.post(table, rows)
            except IngestError as err:
                raise RefusedBatch(f"the server refused {len(rows)} {table} row(s): {err}") from None
            except ConnectionError as err:
                self.waits += 1
                waited_since = waited_since or time.monotonic()
                if self.patience_s is not None and time.monotonic() - waited_since > self.patience_s:
                    raise ConnectionError(f"{err}; gave up after {self.patience_s:.0f} s") from None
                time.sleep(self.retry_pause_s)


# =========================================================================== tiles and health


@dataclass
class CameraPoster:
    """Posts a camera's health and blurred tile to ``{url}/api/v1/cameras/{camera_id}``.

    One try per post, no retry: a tile is stale a second later, and the next one is coming.
    """

    url: str
    token: str
    timeout_s: float = 5.0

    def post(self, camera_id: str, health: dict, jpeg: bytes | None = None) -> dict:
        body = {"health": health}
        if jpeg is not None:
            body["tile_jpeg_b64"] = base64.b64encode(jpeg).decode("ascii")
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/api/v1/cameras/{camera_id}", data=json.dumps(body).encode(),
            method="POST", headers={"Authorization": f"Bearer {self.token}",
                                    "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise IngestError(err.code, err.read().decode(errors="replace")) from None
        except (urllib.error.URLError, TimeoutError) as err:
            raise ConnectionError(f"{self.url}: {getattr(err, 'reason', err)}") from None


class TilePublisher:
    """A camera's blurred tile and health, to a ``CameraPoster`` at most every ``period_s``.

    Called by the pipeline after each frame (``run(on_frame=...)``). The tile is
    made here by ``pipeline.tile`` (the privacy blur, as on the wall) from the frame
    just processed: this path has no way to send the raw frame. A failed post is
    noted (``error``, ``failures``) and the camera carries on: rows matter, tiles do not.
    """

    def __init__(self, camera_id: str, poster: CameraPoster, period_s: float = 1.0,
                 width: int | None = 360, quality: int = 70):
        self.camera_id, self.poster, self.period_s = camera_id, poster, period_s
        self.width, self.quality = width, quality
        self.pipeline = None  # the loop's pipeline (set by run_camera)
        self.source: VideoSource | None = None
        self.frames = self.events = self.loops = self.dropped_before = 0
        self.posts = self.failures = 0
        self.error: str | None = None
        self._times: deque = deque(maxlen=20)
        self._last = -math.inf

    def __call__(self, image: np.ndarray, result) -> None:
        now = time.monotonic()
        self.frames += 1
        self.events += len(result.events)
        self._times.append(now)
        if now - self._last < self.period_s:
            return
        self._last = now
        try:
            jpeg = self.pipeline.tile(image, result, self.width, self.quality)
            self._post(self.health("ok"), jpeg)
        except (IngestError, ConnectionError, ValueError) as err:
            self.failures += 1
            self.error = redact(f"camera '{self.camera_id}': tile not posted: {err}")

    def finish(self, status: str, error: str | None = None) -> None:
        """The camera's last word: ``ended`` or ``offline`` (failed), with its reason."""
        try:
            self._post(self.health(status, error), None)
        except (IngestError, ConnectionError) as err:
            self.failures += 1
            self.error = redact(f"camera '{self.camera_id}': health not posted: {err}")

    def health(self, status: str, error: str | None = None) -> dict:
        times = list(self._times)
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] \
            else 0.0
        source = self.source.health() if self.source is not None else None
        dropped = self.dropped_before + (source.frames_dropped if source else 0)
        error = error or (source.last_error if source else None)
        return {"status": status, "frames": self.frames, "fps": round(fps, 2), "dropped": dropped,
                "loops": self.loops, "events": self.events,
                "last_error": None if error is None else redact(error)[:500]}

    def _post(self, health: dict, jpeg: bytes | None) -> None:
        self.poster.post(self.camera_id, health, jpeg)
        self.posts += 1
        self.error = None


# =========================================================================== one camera


class _Frames:
    """A source's frames, stopped by ``stop`` and, with ``realtime``, paced at their own times.

    ``resume_at``: frames stamped earlier are read and dropped (a camera restarted on
    another worker resumes at its first unwritten bin); ``limit`` bounds the frames
    read, dropped ones included, so a resumed camera ends where it would have.
    """

    def __init__(self, source: VideoSource, stop: threading.Event | None, realtime: bool,
                 resume_at: pd.Timestamp | None = None, limit: int | None = None):
        self.source, self.stop, self.realtime = source, stop, realtime
        self.resume_at, self.limit = resume_at, limit
        self.skipped = self.given = 0

    def health(self):
        return self.source.health()

    def __iter__(self):
        first, t0 = None, time.monotonic()
        for frame in self.source:
            if self.limit is not None and self.skipped + self.given >= self.limit:
                return
            if self.stop is not None and self.stop.is_set():
                return
            if self.realtime and not self.source.live:
                first = frame.ts if first is None else first
                wait = (frame.ts - first).total_seconds() - (time.monotonic() - t0)
                if wait > 0 and (self.stop.wait(wait) if self.stop is not None else time.sleep(wait)):
                    return
            if self.resume_at is not None and frame.ts < self.resume_at:
                self.skipped += 1
                continue
            self.given += 1
            yield frame


def run_camera(camera, store=None, *, bin_s: float = 60.0, max_frames: int | None = None,
               give_up_after_s: float = DEFAULT_GIVE_UP_S, loop: bool = False,
               realtime: bool = False, tiles: TilePublisher | None = None,
               stop: threading.Event | None = None, resume_at: pd.Timestamp | None = None) -> dict:
    """One camera (a ``config.CameraConfig``) to its end, its retries, ``max_frames`` or ``stop``.

    ``store``: a ``Store`` or a ``SinkStore``. ``loop``: a file or folder source is
    replayed from its start when it ends, each loop by a fresh pipeline whose
    frame times continue the last loop's (so event ids stay unique and a bin is
    never written twice: the bin in progress carries over). ``realtime``: a file is
    played at its frame rate, its times starting now. ``tiles``: posts the blurred
    tile and health. The pipeline's summary plus ``status``: ``"ok"``, or
    ``"failed"`` with ``error`` (the source never gave a frame it could use, gave up,
    or the server refused a batch), and ``loops``. ``resume_at``: frames stamped before it
    are dropped unanalysed and counted in ``skipped`` (and in ``max_frames``): a camera
    restarted after its worker died (``safecity.cluster.cameras``).
    """
    from safecity.video.pipeline import CameraPipeline

    summary = {"camera_id": camera.id, "frames": 0, "track_ids": 0, "observations": 0,
               "events": 0, "loops": 0}
    if resume_at is not None:
        summary["skipped"] = 0
    start = pd.Timestamp.now(tz="UTC") if realtime else None
    previous = pipe = source = None
    t0 = time.perf_counter()
    try:
        while True:
            # each open and read of a stream is bounded too, so a stalled server cannot outlast the give-up
            source = VideoSource.from_config(camera, give_up_after_s=give_up_after_s,
                                             timeout_s=max(0.5, min(10.0, give_up_after_s)))
            if start is not None:
                source.start = start
            pipe = CameraPipeline(camera, bin_s=bin_s, audit=getattr(store, "state", None))
            pipe.watch(source)  # a reconnect restarts the warm-up (whole frames blurred)
            if previous is not None:
                pipe.continue_bins(previous)
            if tiles is not None:
                tiles.pipeline, tiles.source = pipe, source
            remaining = None if max_frames is None else \
                max_frames - summary["frames"] - summary.get("skipped", 0)
            frames = _Frames(source, stop, realtime, resume_at, remaining)
            try:
                part = pipe.run(frames, store=store, max_frames=remaining,
                                on_frame=tiles, keep_bin_open=loop)
            finally:
                source.close()
            if resume_at is not None:
                summary["skipped"] += frames.skipped
            for key in ("frames", "track_ids", "observations", "events"):
                summary[key] += part[key]
            summary["health"] = part.get("health")
            health = source.health()
            again = (loop and source.kind in ("file", "folder") and health.status == "ended"
                     and health.last_error is None and health.frames_received > 0
                     and (max_frames is None
                          or summary["frames"] + summary.get("skipped", 0) < max_frames)
                     and not (stop is not None and stop.is_set()))
            if not again:
                break
            summary["loops"] += 1
            if tiles is not None:
                tiles.loops, tiles.dropped_before = summary["loops"], tiles.dropped_before + \
                    health.frames_dropped
            # the next loop's times follow this one's last frame, one analysed frame later
            start = health.last_frame_ts + pd.Timedelta(seconds=1.0 / float(camera.fps))
            previous = pipe
        if loop:
            summary["observations"] += pipe.flush(store)
    except Exception as exc:  # one broken camera must not stop the others, nor leak a password
        summary = _with_posted({**summary, "status": "failed",
                                "error": redact(f"camera '{camera.id}': {exc}")}, store)
        _finish(tiles, "offline", summary["error"])
        return summary
    elapsed = time.perf_counter() - t0
    summary["fps"] = summary["frames"] / elapsed if elapsed > 0 else float("nan")
    health = summary.get("health") or {}
    if health.get("status") == "failed" or (summary["frames"] == 0 and health.get("last_error")):
        error = health.get("last_error") or "the source gave no frame"
        summary = {**summary, "status": "failed", "error": redact(f"camera '{camera.id}': {error}")}
        summary["events"] += _report_offline(camera, store, source, summary["error"], give_up_after_s)
        _finish(tiles, "offline", summary["error"])
        return _with_posted(summary, store)
    _finish(tiles, "ended", None)
    return _with_posted({**summary, "status": "ok"}, store)


def offline_event(camera, error: str, give_up_after_s: float, frames_received: int,
                  ts: pd.Timestamp | None = None) -> pd.DataFrame:
    """A ``camera_offline`` events row: the camera gave no frame for ``give_up_after_s`` (its
    source failed), noticed at ``ts`` (default: now)."""
    from safecity.video.events import to_event_rows

    ts = pd.Timestamp.now(tz="UTC") if ts is None else ts
    found = [{"kind": "camera_offline", "frame": frames_received, "time_s": 0.0, "score": 1.0,
              "zone": None, "track_ids": [], "duration_s": float(give_up_after_s),
              "error": redact(error)[:500], "frames_received": int(frames_received)}]
    position = camera.position
    return to_event_rows(found, camera.id, ts, lon=None if position is None else position.lon,
                         lat=None if position is None else position.lat)


def _report_offline(camera, store, source, error: str, give_up_after_s: float) -> int:
    """Raise ``camera_offline`` where the rows go (the incident queue through a server); events written."""
    if store is None:
        return 0
    received = source.health().frames_received if source is not None else 0
    try:
        store.append("events", offline_event(camera, error, give_up_after_s, received))
    except (RefusedBatch, IngestError, ConnectionError, OSError):  # the camera's end is reported anyway
        return 0
    return 1


def _finish(tiles: TilePublisher | None, status: str, error: str | None) -> None:
    if tiles is not None:
        tiles.finish(status, error)


def _with_posted(summary: dict, store) -> dict:
    """The summary with what the server acknowledged (a ``SinkStore``), per table."""
    posted = getattr(store, "posted", None)
    return {**summary, "posted": {t: dict(c) for t, c in posted.items()}} if posted is not None \
        else summary


def run_cameras(cameras, store=None, *, tiles=None, stop: threading.Event | None = None,
                **kwargs) -> list[dict]:
    """Every camera in its own thread (see ``run_camera``); the summaries in the cameras' order.

    ``tiles``: a ``CameraPoster`` (each camera gets its ``TilePublisher``). A store
    is shared under one lock unless it says it takes concurrent writes (``SinkStore``
    over HTTP, whose posts each camera makes on its own). Each camera with its own
    ``SinkStore`` counts what it posted. ``stop``: set it to end every camera at its
    next frame (Ctrl-C does).
    """
    stop = stop or threading.Event()
    lock = threading.Lock()
    results: list[dict | None] = [None] * len(cameras)

    def store_for(camera):
        if isinstance(store, SinkStore):  # one per camera: its own counts, no lock over HTTP
            own = SinkStore(store.sink, store.batch_rows, store.retry_pause_s, store.patience_s)
            return own if own.concurrent else Serialised(own, lock)
        if store is None:
            return None
        shared = Serialised(store, lock)
        if hasattr(store, "state"):
            shared.state = Serialised(store.state, lock)
        return shared

    stores = [store_for(camera) for camera in cameras]  # here, not in the threads: one state opened once

    def work(k: int, camera) -> None:
        publisher = None if tiles is None else TilePublisher(camera.id, tiles)
        try:
            results[k] = run_camera(camera, stores[k], tiles=publisher, stop=stop, **kwargs)
        except Exception as exc:  # one camera's failure is its summary, never the others' end
            results[k] = {"camera_id": camera.id, "status": "failed",
                          "error": f"camera {camera.id!r}: {type(exc).__name__}: {exc}"}

    threads = [threading.Thread(target=work, args=(k, c), name=f"safecity-run-{c.id}", daemon=True)
               for k, c in enumerate(cameras)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    except KeyboardInterrupt:  # every camera ends at its next frame and writes its open bin
        stop.set()
        for t in threads:
            t.join()
    return results
