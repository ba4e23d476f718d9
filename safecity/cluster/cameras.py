"""A city's cameras on a Dask cluster: each pipeline a long-running task on a worker.

``run_on_cluster(client, cameras, rows)`` is ``app.camera_runner.run_cameras`` for
more cameras than one machine holds. Each camera's pipeline (``run_camera``) runs
as one task that loops until its source ends; the task calls ``secede()`` first,
so it leaves the worker's thread pool and a one-thread worker runs as many cameras
as it was given (an Actor would serialise its calls through one thread, and
``fire_and_forget`` would lose the summary and the worker's death along with it).

Placement. Every camera costs ``width x height x fps`` (its ``size``, else probed on a
worker from its file or first image; a live stream not configured with a size counts
as 1280x720). The costliest camera goes first to the worker with the least cost per
thread (``assign``: greedy, longest first), and the task is pinned there
(``workers=[address]``, ``allow_other_workers=False``): Dask does not move it.

Privacy. The frames, the tiles before the blur and the repeated-presence signatures
stay in the worker process that decoded the frames: the task writes its rows itself
(to the ``Store`` on a shared filesystem, or through the server's ingest API, with
blurred tiles and health) and its result is its summary, plain JSON.

A worker dies. The coordinator (this process) sees its address leave the scheduler,
or the task err (``KilledWorker``) or vanish, and submits the camera again on the
least loaded worker left. Resuming is exactly-once at the level of stored bins:

* a bin is written as one batch (its events first, then its observations, which mark
  it closed) under deterministic keys (``ts`` = bin start, ``sensor_id``, ``metric``);
* after each batch is stored, the task records in a Dask ``Variable`` what it has
  written (``Progress``: end of the last closed bin, time of the last event);
* the restarted task reads it: a file or folder is read from the start, the frames
  before the first unwritten bin are dropped unanalysed (``run_camera(resume_at=)``),
  and rows at or before what is recorded are not sent again;
* a death between a batch stored and its progress recorded leaves one batch unrecorded:
  the restarted task sends it again; the store (or server) either finds the same rows
  (stored once: idempotent keys) or the same keys with other values (a resumed
  pipeline has a fresh background model) and refuses the batch whole, and the task
  takes the refusal of a batch within that one-bin window as "already stored".

A live stream cannot go back: the bin open at the death is lost (never written in
part), and the restarted camera drops its frames until the next bin boundary, so
its first bin is whole too. A resumed file camera's bins after the resume point are
whole; their values differ slightly from an uninterrupted run's (the people finder
learns the background again). Dask's own retries (``allowed_failures``) cannot run a
camera twice: a pinned task whose worker left waits for that address, which never
returns (a restarted worker has a new port); the coordinator cancels it.

A worker cut off. A worker the scheduler lost sight of (a network cut, not a death)
may still run its cameras while the coordinator starts them again elsewhere. Each
attempt holds a lease: the coordinator names the camera's current attempt in a Dask
``Variable`` before submitting it, and the task confirms it before every batch it
writes (``Lease``). Another attempt named, or no answer from the scheduler for
``RunOptions.fence_s``, and it stops before writing, and says why in the audit
(``camera_stopped``, with its worker) when it can reach the store.
"""
from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import pandas as pd

from safecity.app.camera_runner import (
    DEFAULT_GIVE_UP_S,
    CameraPoster,
    RefusedBatch,
    SinkStore,
    TilePublisher,
    run_camera,
)
from safecity.config.addresses import redact, source_kind

#: Pixels assumed for a live camera whose configuration gives no ``size`` (not probed:
#: opening a stream can take seconds, and the coordinator must not wait on it).
DEFAULT_SIZE = (1280, 720)

#: Seconds between the coordinator's looks at its cameras' tasks and the cluster's workers.
POLL_S = 0.2


# =========================================================================== where rows go


@dataclass(frozen=True)
class RowsTo:
    """Where a camera task writes: a ``Store`` on a filesystem every worker sees
    (``data_dir``, absolute), or a live server's ingest API (``server_url``, ``token``)."""

    data_dir: str | None = None
    server_url: str | None = None
    token: str | None = field(default=None, repr=False)  # a repr lands in logs

    def open(self):
        """The store the pipeline appends to, and the tile poster (``None`` for a store)."""
        if self.server_url is not None:
            from safecity.ingest.client import HttpSink

            return (SinkStore(HttpSink(self.server_url, self.token)),
                    CameraPoster(self.server_url, self.token))
        from safecity.data.store import Store

        return Store(self.data_dir), None


@dataclass(frozen=True)
class RunOptions:
    """``run_camera``'s options, the same for every camera of a run."""

    bin_s: float = 60.0
    max_frames: int | None = None
    give_up_after_s: float = DEFAULT_GIVE_UP_S
    loop: bool = False
    realtime: bool = False
    #: A camera that cannot confirm with the scheduler for this long that it is still the camera's
    #: current attempt stops before writing (a worker cut off from the cluster, whose cameras run again
    #: elsewhere, must not write beside them).
    fence_s: float = 15.0


# =========================================================================== progress and resume


@dataclass
class Progress:
    """What a camera has written, as the scheduler keeps it (ISO times; ``None``: nothing yet)."""

    closed_until: str | None = None   # end of the last bin whose observations are stored
    events_until: str | None = None   # time of the last event stored
    worker: str | None = None
    first_write_at: float | None = None  # wall clock (epoch s) of this attempt's first batch

    @classmethod
    def of(cls, value) -> Progress:
        return cls(**value) if isinstance(value, dict) else cls()


@dataclass(frozen=True)
class Resume:
    """Where a restarted camera starts again: frames before ``frames_from`` are dropped,
    observations before ``closed_until`` and events at or before ``events_until`` are not
    sent again; a refused batch before ``window_end`` was stored by the dead worker."""

    frames_from: pd.Timestamp | None = None
    closed_until: pd.Timestamp | None = None
    events_until: pd.Timestamp | None = None
    window_end: pd.Timestamp | None = None


def resume_point(progress: Progress, bin_s: float, live: bool,
                 now: pd.Timestamp | None = None) -> Resume:
    """A restarted camera's ``Resume`` from what it recorded before its worker died.

    A replay (file, folder) resumes at its first unwritten bin. A live camera (or a
    ``realtime`` replay, stamped from now) resumes at the next bin boundary after
    ``now``: its frames until then would make a partial bin.
    """
    closed = None if progress.closed_until is None else pd.Timestamp(progress.closed_until)
    events = None if progress.events_until is None else pd.Timestamp(progress.events_until)
    step = pd.Timedelta(seconds=bin_s)
    frames_from = closed
    if live:
        now = pd.Timestamp.now(tz="UTC") if now is None else now
        boundary = pd.Timestamp(math.ceil(now.value / step.value) * step.value, tz="UTC")
        frames_from = boundary if closed is None else max(closed, boundary)
    # one batch at most was stored without its progress recorded: the bin after ``closed``
    window_end = None if closed is None else closed + step
    if window_end is None and events is not None:
        window_end = events + step
    return Resume(frames_from, closed, events, window_end)


class LeaseLost(RuntimeError):
    """This attempt no longer owns its camera: another attempt runs it, or the scheduler is out of reach."""


class Lease:
    """A camera attempt's right to write: the coordinator names the current attempt in a Dask ``Variable``.

    ``confirm`` asks the scheduler before each batch. Another attempt named (the
    coordinator restarted the camera elsewhere, having lost sight of this worker)
    or no answer for ``fence_s`` (this worker is cut off) raises ``LeaseLost``:
    the attempt stops before writing, so a cut-off worker never writes beside the
    camera's new attempt.
    """

    def __init__(self, variable, attempt: int, fence_s: float, ask_s: float = 2.0):
        self.variable, self.attempt, self.fence_s, self.ask_s = variable, attempt, fence_s, ask_s

    def confirm(self) -> None:
        start = time.monotonic()
        while True:
            try:  # callback_timeout: a scheduler that stopped answering must not hang the camera
                owner = self.variable.get(timeout=self.ask_s, callback_timeout=self.ask_s + 1)
            except (OSError, TimeoutError) as err:
                if time.monotonic() - start >= self.fence_s:
                    raise LeaseLost(f"cut off from the scheduler for {self.fence_s:g} s ({type(err).__name__}); "
                                    "the camera runs again elsewhere") from None
                time.sleep(min(0.5, self.fence_s / 10))
                continue
            if owner != self.attempt:
                raise LeaseLost(f"superseded: attempt {owner} of this camera runs elsewhere")
            return


class Ledger:
    """The store a camera task appends to: rows already written are not sent again, a batch
    the dead worker stored is taken as stored, and each stored batch is recorded
    (``publish(Progress)``) before the next one is made. With a ``lease``, each batch is
    written only once the attempt has confirmed it still owns the camera.

    Everything else (``state`` for the audit, ``posted``) is the wrapped store's.
    """

    def __init__(self, store, bin_s: float, resume: Resume | None = None,
                 publish: Callable[[Progress], None] | None = None, worker: str | None = None,
                 progress: Progress | None = None, lease: Lease | None = None):
        self.store, self.bin_s, self.resume, self.lease = store, bin_s, resume or Resume(), lease
        self.lost: LeaseLost | None = None
        self.restarted = resume is not None
        self.publish, self.progress = publish, progress or Progress()
        self.progress.worker, self.progress.first_write_at = worker, None
        self.already_stored = 0  # batches the dead worker had stored (refused by the store)
        self._stored: set[str] = set()  # tables this attempt has stored a batch of

    def __getattr__(self, name):
        return getattr(self.store, name)

    def append(self, table: str, df: pd.DataFrame) -> int:
        if table == "observations" and self.resume.closed_until is not None:
            df = df[df["ts"] >= self.resume.closed_until]
        elif table == "events" and self.resume.events_until is not None:
            df = df[df["ts"] > self.resume.events_until]
        if not len(df):
            return 0
        if self.lease is not None:
            try:
                self.lease.confirm()
            except LeaseLost as lost:
                self.lost = lost
                raise
        try:
            added = self.store.append(table, df)
        except (RefusedBatch, _conflict()) as err:
            if not self._in_window(table, df, err):
                raise
            self.already_stored += 1
            added = 0
        self._stored.add(table)
        if table == "observations":
            self.progress.closed_until = (df["ts"].max() + pd.Timedelta(seconds=self.bin_s)).isoformat()
        elif table == "events":
            self.progress.events_until = df["ts"].max().isoformat()
        if self.progress.first_write_at is None:
            self.progress.first_write_at = time.time()
        if self.publish is not None:
            self.publish(self.progress)
        return added

    def _in_window(self, table: str, df: pd.DataFrame, err: Exception) -> bool:
        """A refusal for a key already stored, of the one batch per table the dead worker may
        have stored without recording it: this attempt's first, within a bin of the record."""
        if not self.restarted or table in self._stored:
            return False
        end = self.resume.window_end
        if end is not None and not df["ts"].max() <= end:
            return False
        if isinstance(err, RefusedBatch):  # through a server: only its 409 says "stored already"
            return "HTTP 409" in str(err)
        return True


def _conflict():
    from safecity.data.store import ConflictError

    return ConflictError


# =========================================================================== the task on a worker


class WorkerTiles(TilePublisher):
    """A camera's tiles and health, the health naming the worker that runs the camera."""

    def __init__(self, camera_id: str, poster: CameraPoster, worker: str, restarts: int = 0):
        super().__init__(camera_id, poster)
        self.worker, self.restarts = worker, restarts

    def health(self, status: str, error: str | None = None) -> dict:
        return {**super().health(status, error), "worker": self.worker, "restarts": self.restarts}


def _variable_name(run_id: str, camera_id: str) -> str:
    return f"safecity-cameras-{run_id}-{camera_id}"


def _owner_name(run_id: str, camera_id: str) -> str:
    return f"safecity-owner-{run_id}-{camera_id}"


def _stop_name(run_id: str) -> str:
    return f"safecity-cameras-{run_id}-stop"


def camera_task(camera, rows: RowsTo, options: RunOptions, run_id: str, restarts: int = 0) -> dict:
    """One camera's pipeline on the worker running this task, to its end; its summary.

    Leaves the worker's thread pool (``secede``) for as long as the camera runs. Resumes
    from the ``Progress`` the scheduler holds for (``run_id``, camera) when there is one.
    """
    from distributed import Event, Variable, get_worker, secede

    secede()
    worker = get_worker().address
    progress_var = Variable(_variable_name(run_id, camera.id))
    before = Progress.of(progress_var.get(timeout=30))
    live = options.realtime or source_kind(camera.source) in ("stream", "device")
    resume = resume_point(before, options.bin_s, live) if restarts else None
    store, poster = rows.open()
    lease = Lease(Variable(_owner_name(run_id, camera.id)), restarts, options.fence_s)
    ledger = Ledger(store, options.bin_s, resume, lambda p: progress_var.set(asdict(p)),
                    worker, before, lease)
    state = getattr(store, "state", None)
    if state is not None:  # the store's health record: which worker runs the camera, from where
        state.audit("safecity-cluster", "camera_started", camera.id,
                    {"worker": worker, "restarts": restarts,
                     "resume_at": None if resume is None or resume.frames_from is None
                     else resume.frames_from.isoformat()})
    tiles = None if poster is None else WorkerTiles(camera.id, poster, worker, restarts)
    stop = threading.Event()
    threading.Thread(target=_watch_stop, args=(Event(_stop_name(run_id)), stop), daemon=True,
                     name=f"safecity-stop-{camera.id}").start()
    try:
        summary = run_camera(camera, ledger, tiles=tiles, stop=stop, bin_s=options.bin_s,
                             max_frames=options.max_frames, give_up_after_s=options.give_up_after_s,
                             loop=options.loop, realtime=options.realtime,
                             resume_at=None if resume is None else resume.frames_from)
    finally:
        stop.set()
    if ledger.lost is not None and state is not None:  # the operators see why it stopped, and where
        state.audit("safecity-cluster", "camera_stopped", camera.id,
                    {"worker": worker, "restarts": restarts, "reason": str(ledger.lost)})
    summary.update(worker=worker, already_stored=ledger.already_stored,
                   first_write_at=ledger.progress.first_write_at,
                   resumed_at=None if resume is None or resume.frames_from is None
                   else resume.frames_from.isoformat())
    return json.loads(json.dumps(summary, default=str))  # plain JSON: nothing else leaves


def _watch_stop(event, stop: threading.Event) -> None:
    """Set ``stop`` when the coordinator sets the run's Dask ``event`` (Ctrl-C)."""
    while not stop.is_set():
        try:
            if event.wait(timeout=1.0):
                stop.set()
        except (OSError, RuntimeError):  # the scheduler went away: the camera carries on to its end
            return


def probe_size(camera) -> tuple[int, int]:
    """A camera's width and height: its ``size``, else its file's header or first image."""
    if camera.size is not None:
        return tuple(camera.size)
    kind = source_kind(camera.source)
    if kind == "file":
        import cv2

        capture = cv2.VideoCapture(str(camera.source))
        try:
            w, h = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            capture.release()
        if w > 0 and h > 0:
            return w, h
    elif kind == "folder":
        import cv2

        from safecity.data.frames import FrameSource

        files = FrameSource(camera.source).files()
        image = cv2.imread(str(files[0])) if files else None
        if image is not None:
            return image.shape[1], image.shape[0]
    return DEFAULT_SIZE


# =========================================================================== placement


def assign(costs: dict[str, float], workers: dict[str, int],
           load: dict[str, float] | None = None) -> dict[str, str]:
    """Camera id -> worker address: costliest camera first, each to the worker with the
    least cost per thread (``workers``: address -> threads; ``load``: cost already there)."""
    if not workers:
        raise RuntimeError("the cluster has no worker")
    load = {w: float((load or {}).get(w, 0.0)) for w in workers}
    placed = {}
    for camera_id in sorted(costs, key=lambda c: (-costs[c], c)):
        best = min(workers, key=lambda w: (load[w] / max(workers[w], 1), w))
        placed[camera_id] = best
        load[best] += costs[camera_id]
    return placed


def _workers(dask_scheduler=None) -> dict[str, int]:
    """Run on the scheduler: the workers there now, address -> threads."""
    return {addr: ws.nthreads for addr, ws in dask_scheduler.workers.items()}


# =========================================================================== the coordinator


@dataclass
class _Running:
    camera: object
    cost: float
    worker: str
    future: object
    restarts: int = 0
    workers: list = field(default_factory=list)
    restarted_at: list = field(default_factory=list)  # wall clock (epoch s) of each resubmission


def run_on_cluster(client, cameras, rows: RowsTo, options: RunOptions = RunOptions(), *,
                   poll_s: float = POLL_S, max_restarts: int = 10,
                   on_placed: Callable[[str, str], None] | None = None) -> list[dict]:
    """Every camera as a task on ``client``'s cluster, restarted elsewhere when its worker dies;
    the summaries in the cameras' order (``run_camera``'s, plus ``worker``, ``workers``,
    ``restarts``). ``on_placed(camera_id, worker)`` is told of every placement."""
    from distributed import Event, Variable

    run_id = uuid.uuid4().hex[:12]
    for camera in cameras:
        Variable(_variable_name(run_id, camera.id), client=client).set(asdict(Progress()))
    sizes = client.gather(client.map(probe_size, cameras, pure=False))
    costs = {c.id: float(w * h * c.fps) for c, (w, h) in zip(cameras, sizes)}
    plan = assign(costs, client.run_on_scheduler(_workers))
    running: dict[str, _Running] = {}

    def submit(camera, worker: str, restarts: int):
        # Named before it starts: an earlier attempt still running (its worker cut off) stops writing.
        Variable(_owner_name(run_id, camera.id), client=client).set(restarts)
        future = client.submit(camera_task, camera, rows, options, run_id, restarts,
                               key=f"camera-{camera.id}-{run_id}-{restarts}", workers=[worker],
                               allow_other_workers=False, pure=False)
        if on_placed is not None:
            on_placed(camera.id, worker)
        return future

    for camera in cameras:
        running[camera.id] = _Running(camera, costs[camera.id], plan[camera.id],
                                      submit(camera, plan[camera.id], 0), workers=[plan[camera.id]])
    results: dict[str, dict] = {}
    try:
        while len(results) < len(cameras):
            _wait_any([r.future for cid, r in running.items() if cid not in results], poll_s)
            alive = client.run_on_scheduler(_workers)
            for cid, run in running.items():
                if cid in results:
                    continue
                lost = _lost(run, alive)
                if lost is None:
                    if run.future.status == "finished":
                        results[cid] = run.future.result()
                    elif run.future.status == "error":
                        results[cid] = _failed(run, run.future.exception())
                    continue
                if run.restarts >= max_restarts:
                    results[cid] = _failed(run, RuntimeError(f"lost {run.restarts + 1} times: {lost}"))
                    continue
                run.future.cancel()
                load = {w: 0.0 for w in alive}
                for other, r in running.items():
                    if other not in results and other != cid and r.worker in load:
                        load[r.worker] += r.cost
                run.worker = assign({cid: run.cost}, alive, load)[cid]
                run.restarts += 1
                run.workers.append(run.worker)
                run.restarted_at.append(time.time())
                run.future = submit(run.camera, run.worker, run.restarts)
    except KeyboardInterrupt:  # every camera ends at its next frame and writes its open bin
        Event(_stop_name(run_id), client=client).set()
        for cid, run in running.items():
            if cid not in results:
                try:
                    results[cid] = run.future.result()
                except Exception as exc:  # noqa: BLE001 - its failure is its summary
                    results[cid] = _failed(run, exc)
    finally:
        for camera in cameras:
            Variable(_variable_name(run_id, camera.id), client=client).delete()
            Variable(_owner_name(run_id, camera.id), client=client).delete()
    out = []
    for camera in cameras:
        run = running[camera.id]
        out.append({**results[camera.id], "worker": results[camera.id].get("worker", run.worker),
                    "workers": run.workers, "restarts": run.restarts,
                    "restarted_at": run.restarted_at})
    return out


def _wait_any(futures: list, timeout: float) -> None:
    from distributed import wait

    try:
        wait(futures, timeout=timeout, return_when="FIRST_COMPLETED")
    except TimeoutError:
        pass


def _lost(run: _Running, alive: dict[str, int]) -> str | None:
    """Why a camera's task must run again (its worker left, it was killed with its worker,
    or the scheduler forgot it), or ``None``."""
    from distributed import KilledWorker

    status = run.future.status
    if run.worker not in alive and status not in ("finished", "error"):
        return f"worker {run.worker} left"
    if status == "error" and isinstance(run.future.exception(), KilledWorker):
        return f"killed with worker {run.worker}"
    if status in ("lost", "cancelled"):
        return f"task {status} on {run.worker}"
    return None


def _failed(run: _Running, exc: BaseException) -> dict:
    return {"camera_id": run.camera.id, "status": "failed", "worker": run.worker,
            "error": redact(f"camera '{run.camera.id}': {type(exc).__name__}: {exc}")}


__all__ = ["Ledger", "Progress", "Resume", "RowsTo", "RunOptions", "assign", "camera_task",
           "probe_size", "resume_point", "run_on_cluster"]
