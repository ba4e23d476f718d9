"""Run an installation's cameras side by side, each bounded, into one store.

``safecity video run`` used to read its cameras one after the other, and a live
source that never answered (a 401, garbage bytes, a server that accepts and
stalls, an unplugged device) kept reconnecting forever, so the cameras after
it never started. Here every camera runs in its own thread, a live source
gives up after ``give_up_after_s`` seconds without a frame, and each camera
ends as ``ok`` or ``failed`` with its reason (credentials redacted), while the
others carry on.
"""
from __future__ import annotations

import threading

from safecity.config.addresses import redact
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


def run_camera(camera, store=None, *, bin_s: float = 60.0, max_frames: int | None = None,
               give_up_after_s: float = DEFAULT_GIVE_UP_S) -> dict:
    """One camera (a ``config.CameraConfig``) to its end, its retries or ``max_frames``.

    The pipeline's summary plus ``status``: ``"ok"``, or ``"failed"`` with
    ``error`` (the source never gave a frame it could use, or gave up).
    """
    from safecity.video.pipeline import CameraPipeline

    summary = {"camera_id": camera.id}
    try:
        # each open and read of a stream is bounded too, so a stalled server cannot outlast the give-up
        source = VideoSource.from_config(camera, give_up_after_s=give_up_after_s,
                                     timeout_s=max(0.5, min(10.0, give_up_after_s)))
        pipe = CameraPipeline(camera, bin_s=bin_s, audit=getattr(store, "state", None))
        try:
            summary = pipe.run(source, store=store, max_frames=max_frames)
        finally:
            source.close()
    except Exception as exc:  # one broken camera must not stop the others, nor leak a password
        return {**summary, "status": "failed", "error": redact(f"camera '{camera.id}': {exc}")}
    health = summary.get("health") or {}
    if health.get("status") == "failed" or (summary.get("frames") == 0 and health.get("last_error")):
        error = health.get("last_error") or "the source gave no frame"
        return {**summary, "status": "failed", "error": redact(f"camera '{camera.id}': {error}")}
    return {**summary, "status": "ok"}


def run_cameras(cameras, store=None, **kwargs) -> list[dict]:
    """Every camera in its own thread (see ``run_camera``); the summaries in the cameras' order."""
    lock = threading.Lock()
    shared = None if store is None else Serialised(store, lock)
    if shared is not None and hasattr(store, "state"):
        shared.state = Serialised(store.state, lock)
    results: list[dict | None] = [None] * len(cameras)

    def work(k: int, camera) -> None:
        results[k] = run_camera(camera, shared, **kwargs)

    threads = [threading.Thread(target=work, args=(k, c), name=f"safecity-run-{c.id}", daemon=True)
               for k, c in enumerate(cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
