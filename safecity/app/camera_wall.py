"""The camera wall: a few cameras played live, once per server process, for every session to watch.

``CameraWall`` runs each camera's frames through its ``CameraPipeline`` (one
background thread per camera, so a stream stuck reconnecting delays only
itself), at the camera's frame rate or slower (``max_fps``), and
keeps per camera only what an operator may see: the latest *display* frame
(``pipeline.display``: people blurred, zones, boxes and events drawn) as JPEG,
the recent events, and the camera's health. No raw frame is ever stored or
handed out, so no session can show an unblurred person.

``get_wall`` starts one wall per process (like ``safecity.app.engine.get_engine``);
``CameraWallView`` and ``HealthView`` are one session's read-only views of it,
refreshed by the session's periodic callback. A camera whose source fails is
shown offline and the others carry on. The views read anything shaped like a wall
(``Wall``): in ``safecity serve --live`` that is the ``camera_feed.CameraFeed`` the
camera workers post their blurred tiles and health to, since their pipelines run
in other processes.
"""
from __future__ import annotations

import base64
import html
import os
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd
import panel as pn
import param

from safecity.app.camera_feed import STATUSES, for_viewers
from safecity.video.pipeline import CameraPipeline
from safecity.config.addresses import source_kind
from safecity.video.sources import VideoSource

#: Scripted clips the demo wall plays when no installation file is given.
DEMO_SCENARIOS = ("loitering", "wrong_way", "forbidden_zone", "abandoned_object")

#: Demo clips are rendered this small when the data folder has none: four cameras stay cheap.
DEMO_SIZE = (240, 180)

# Health statuses (``camera_feed.STATUSES``), from good to bad. ``late``: no frame for
# ``late_after_s``; ``ended``: a finite source that stopped (cut short, or played once);
# ``offline``: the source cannot be read.


class Wall(Protocol):
    """What the session views read: a ``CameraWall`` (pipelines run here) or a
    ``camera_feed.CameraFeed`` (tiles posted by camera workers elsewhere)."""

    @property
    def camera_ids(self) -> list[str]: ...

    def tile(self, camera_id: str) -> tuple[int, bytes | None]: ...

    def health(self) -> pd.DataFrame: ...


@dataclass(frozen=True)
class WallCamera:
    """One camera of the wall: its id, where its frames come from, its scene and frame rate, and
    (an installation's camera) its validated configuration, which its event rules are built from."""

    camera_id: str
    source: str | os.PathLike
    scene: dict
    fps: float = 10.0
    config: object | None = None  # a config.cameras.CameraConfig


@dataclass
class _Feed:
    """A camera's live state; written by the wall's thread only, read by sessions."""

    camera: WallCamera
    jpeg: bytes | None = None
    frame_index: int = -1          # index in the source of the frame shown
    frames_shown: int = 0          # display frames produced since the wall started (all loops)
    frames_dropped: int = 0        # frames the source could not decode (all loops)
    loops: int = 0
    last_frame_at: float | None = None  # wall clock (time.time) of the last frame
    status: str = "ok"
    error: str | None = None
    events: deque = field(default_factory=lambda: deque(maxlen=50))
    times: deque = field(default_factory=lambda: deque(maxlen=20))
    source: VideoSource | None = None
    frames: object = None
    pipeline: CameraPipeline | None = None
    dropped_before: int = 0        # dropped frames of earlier loops


class CameraWall:
    """Plays cameras in a loop through their pipelines; keeps blurred frames, events and health.

    ``cameras``: ``WallCamera`` values. ``max_fps``: at most this many frames
    per second per camera (every frame is processed, so a faster camera is
    played in slow motion rather than thinned: its tracks and events stay what
    they would be live). ``late_after_s``: a camera with no frame for this long
    is ``late``. ``loop``: replay a file that ended cleanly (a demo);
    a file cut short is ``ended`` with the reason. ``jpeg_quality``: of the tiles;
    ``tile_width``: wider display frames are shrunk to it (pixels), since every
    session receives every tile each second.
    ``audit``: where a camera's privacy decision is recorded (``Store(...).state``).
    """

    def __init__(self, cameras: list[WallCamera], max_fps: float | None = 5.0, late_after_s: float = 5.0,
                 loop: bool = True, jpeg_quality: int = 70, tile_width: int | None = 360, audit=None):
        if not cameras:
            raise ValueError("a camera wall needs at least one camera")
        ids = [c.camera_id for c in cameras]
        if len(set(ids)) != len(ids):
            raise ValueError(f"camera ids must be unique, got {ids}")
        self.cameras = list(cameras)
        self.max_fps = max_fps
        self.late_after_s = late_after_s
        self.loop = loop
        self.jpeg_quality = jpeg_quality
        self.tile_width = tile_width
        self.audit = audit
        self._feeds = {c.camera_id: _Feed(c) for c in self.cameras}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started: float | None = None  # monotonic time of the first step

    # ------------------------------------------------------------------ running

    def step(self) -> int:
        """Advance every playing camera by one frame at once (for notebooks and tests); how
        many frames were shown."""
        if self._started is None:
            self._started = time.monotonic()
        return sum(self._advance(f) for f in self._feeds.values() if f.status not in ("ended", "offline"))

    def start(self) -> "CameraWall":
        """Play every camera from its own background thread, so that a stream stuck reconnecting
        delays only itself (idempotent)."""
        if not self._threads:
            self._stop.clear()
            self._started = time.monotonic()
            for feed in self._feeds.values():
                t = threading.Thread(target=self._play, args=(feed,), daemon=True,
                                     name=f"safecity-camera-{feed.camera.camera_id}")
                t.start()
                self._threads.append(t)
        return self

    def stop(self) -> None:
        """Stop every camera's thread (a camera blocked reading a stream stops at its next frame)."""
        self._stop.set()
        for feed in self._feeds.values():
            if feed.source is not None:
                feed.source.close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def _play(self, feed: _Feed) -> None:
        period = self._period(feed.camera)
        due = time.monotonic()
        while not self._stop.is_set() and feed.status not in ("ended", "offline"):
            self._advance(feed)
            due = max(due + period, time.monotonic() - 1.0)  # after a stall, do not burst
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _period(self, camera: WallCamera) -> float:
        fps = camera.fps if self.max_fps is None else min(camera.fps, self.max_fps)
        return 1.0 / fps

    def _open(self, feed: _Feed) -> None:
        cam = feed.camera
        # A file keeps its own frame rate; only a folder of images needs the camera's.
        fps = cam.fps if source_kind(cam.source) == "folder" else None
        feed.source = VideoSource(cam.source, cam.camera_id, fps=fps)
        feed.frames = iter(feed.source)
        # A fresh pipeline shows whole frames blurred until it has warmed up (every open and loop).
        feed.pipeline = CameraPipeline(cam.config if cam.config is not None else cam.scene,
                                       camera_id=cam.camera_id, fps=cam.fps, audit=self.audit)
        feed.pipeline.watch(feed.source)

    def _advance(self, feed: _Feed) -> int:
        """One frame of one camera; any failure makes that camera offline, never the wall."""
        try:
            if feed.frames is None:
                self._open(feed)
            frame = next(feed.frames, None)
            if frame is None:
                return self._ended(feed)
            result = feed.pipeline.process(frame)
            # the only frame that leaves: blurred, and shrunk since every session receives it
            jpeg = feed.pipeline.tile(frame.image, result, self.tile_width, self.jpeg_quality)
            if result.events:
                rows = feed.pipeline.event_rows(result.events)
                feed.events.extend(rows[["ts", "kind", "sensor_id", "score", "details"]].to_dict("records"))
            feed.jpeg = jpeg
            feed.frame_index = frame.index
            feed.frames_shown += 1
            feed.frames_dropped = feed.dropped_before + feed.source.health().frames_dropped
            feed.last_frame_at = time.time()
            feed.times.append(time.monotonic())
            feed.status, feed.error = "ok", feed.source.health().last_error
            return 1
        except Exception as exc:  # a broken camera must not stop the others
            feed.status, feed.error = "offline", f"camera '{feed.camera.camera_id}': {exc}"
            feed.frames = None
            return 0

    def _ended(self, feed: _Feed) -> int:
        health = feed.source.health()
        feed.frames_dropped = feed.dropped_before + health.frames_dropped
        if health.status == "failed":
            feed.status, feed.error = "offline", health.last_error
        elif self.loop and health.last_error is None and health.frames_received > 0:
            feed.dropped_before = feed.frames_dropped
            feed.loops += 1
            feed.frames = None  # reopened, with a fresh pipeline, on its next turn
        else:
            feed.status = "ended"
            feed.error = health.last_error or f"camera '{feed.camera.camera_id}': the source gave no frame"
            if health.frames_received == 0 and feed.frames_shown == 0:
                feed.status = "offline"
        return 0

    # ------------------------------------------------------------------ reading (any thread)

    @property
    def camera_ids(self) -> list[str]:
        return list(self._feeds)

    def tile(self, camera_id: str) -> tuple[int, bytes | None]:
        """(frames shown so far, JPEG of the latest display frame or None): blurred and annotated."""
        feed = self._feeds[camera_id]
        return feed.frames_shown, feed.jpeg

    def health(self) -> pd.DataFrame:
        """One row per camera: status, frames shown and dropped, last frame age, fps achieved."""
        now_wall, now = time.time(), time.monotonic()
        rows = []
        for cid, f in self._feeds.items():
            age = None if f.last_frame_at is None else now_wall - f.last_frame_at
            times = list(f.times)
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            if times and now - times[-1] > 2 * self.late_after_s:
                fps = 0.0  # nothing recent: the old rate would mislead
            status = f.status
            if status == "ok" and f.source is not None and f.source.health().status == "reconnecting":
                status, f_error = "late", f.source.health().last_error
            else:
                f_error = f.error
            waited = age if age is not None else (
                now - self._started if self._started is not None else 0.0)
            if status == "ok" and waited > self.late_after_s:
                status = "late"
            rows.append({"camera_id": cid, "status": status, "frames": f.frames_shown,
                         "dropped": f.frames_dropped, "last_frame_age_s": age, "fps": fps,
                         "loops": f.loops, "events": len(f.events), "error": for_viewers(f_error or "")})
        return pd.DataFrame(rows)

    def recent_events(self, last: int = 20) -> pd.DataFrame:
        """The latest events of every camera, newest first."""
        rows = [e for f in self._feeds.values() for e in list(f.events)]
        out = pd.DataFrame(rows, columns=["ts", "kind", "sensor_id", "score", "details"])
        return out.sort_values("ts", ascending=False).head(last).reset_index(drop=True)


# =========================================================================== cameras


def demo_cameras(data_dir: str | os.PathLike | None = None, scenarios=DEMO_SCENARIOS,
                 render=None) -> list[WallCamera]:
    """The demo's scripted clips (``<data_dir>/clips``, from ``safecity simulate``).

    When the data folder has none, ``render(folder, scenarios=, size=)`` (the demo
    passes ``safecity.sim.clips.write_clips``: live code never imports the simulator)
    renders them at ``DEMO_SIZE`` into a temporary folder.
    """
    import json

    clips = Path(data_dir) / "clips" if data_dir is not None else None
    if clips is None or not all((clips / f"{s}.avi").exists() for s in scenarios):
        if render is None:
            raise FileNotFoundError(f"no demo clips in {clips} (run `safecity simulate`), and no "
                                    "renderer given to make them")
        clips = Path(tempfile.mkdtemp(prefix="safecity-wall-"))
        render(clips, scenarios=scenarios, size=DEMO_SIZE)
    out = []
    for s in scenarios:
        scene = json.loads((clips / f"{s}_scene.json").read_text())
        out.append(WallCamera(f"cam-{s}", clips / f"{s}.avi", scene, float(scene.get("fps", 10))))
    return out


def installation_cameras(path: str | os.PathLike) -> list[WallCamera]:
    """The cameras of an installation file (``safecity.config.cameras``), validated at load."""
    from safecity.config.cameras import load_cameras

    return [WallCamera(c.id, c.source, c.scene(), float(c.fps), config=c) for c in load_cameras(path)]


_WALLS: dict[str, CameraWall] = {}
_WALLS_LOCK = threading.Lock()


def get_wall(cameras_file: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None,
             run: bool = True, render=None, **kwargs) -> CameraWall:
    """The process's one wall, created and started on the first call.

    Its cameras: those of ``cameras_file`` (default ``$SAFECITY_CAMERAS``), else the demo
    clips of ``data_dir`` (default ``$SAFECITY_DATA_DIR``; ``render`` makes them when absent, see
    ``demo_cameras``). ``kwargs`` go to ``CameraWall``.
    """
    cameras_file = cameras_file or os.environ.get("SAFECITY_CAMERAS") or None
    data_dir = data_dir or os.environ.get("SAFECITY_DATA_DIR") or None
    # keyed by resolved paths: the warm-up's wall is the page's (safecity.app.warmup)
    key = f"cameras:{Path(cameras_file).resolve()}" if cameras_file else \
        f"demo:{Path(data_dir).resolve() if data_dir else None}"
    with _WALLS_LOCK:
        wall = _WALLS.get(key)
        if wall is None:
            cams = installation_cameras(cameras_file) if cameras_file else demo_cameras(data_dir, render=render)
            wall = CameraWall(cams, **kwargs)
            if run:
                wall.start()
            _WALLS[key] = wall
    return wall


# =========================================================================== session views


def tile_html(camera_id: str, frames: int, jpeg: bytes | None, status: str) -> str:
    """One tile: the blurred display frame as a data URI, or a plain box saying why there is none."""
    cid = html.escape(camera_id)
    if jpeg is None:
        body = f'<div class="no-video" style="width:100%;aspect-ratio:4/3;background:#333;color:#eee;' \
               f'display:flex;align-items:center;justify-content:center">{html.escape(status)}</div>'
    else:
        uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        body = f'<img class="camera-frame" src="{uri}" alt="{cid}" style="width:100%">'
    return (f'<figure class="camera-tile status-{html.escape(status)}" data-camera="{cid}" '
            f'data-frames="{frames}" style="margin:0">{body}'
            f'<figcaption>{cid} · {html.escape(status)} · frame {frames}</figcaption></figure>')


class CameraWallView(param.Parameterized):
    """One session's tiles of the shared wall; ``refresh`` (periodic, ~1 Hz) copies new frames."""

    tile_width = param.Integer(default=360, bounds=(120, 1280), doc="Width of a tile on the page (px).")

    def __init__(self, wall: Wall, **params):
        super().__init__(**params)
        self.wall = wall
        self.tiles: dict[str, pn.pane.HTML] = {}
        self._box = self._container()
        self._shown: dict[str, tuple] = {}
        self.refresh()

    def _container(self) -> pn.layout.ListLike:
        return pn.FlexBox(sizing_mode="stretch_width", css_classes=["camera-wall"])

    def _tile_pane(self) -> pn.pane.HTML:
        return pn.pane.HTML("", css_classes=["camera-tile-pane"], width=self.tile_width,
                            sizing_mode="fixed")

    def refresh(self) -> None:
        status = self.wall.health().set_index("camera_id")["status"]
        for cid in self.wall.camera_ids:
            if cid not in self.tiles:  # a feed's cameras appear as their workers first post
                self.tiles[cid] = self._tile_pane()
                self._box.append(self.tiles[cid])
            frames, jpeg = self.wall.tile(cid)
            key = (frames, status.get(cid, "offline"))
            if self._shown.get(cid) != key:
                self._shown[cid] = key
                self.tiles[cid].object = tile_html(cid, frames, jpeg, key[1])

    def layout(self) -> pn.viewable.Viewable:
        return self._box


class HealthView(param.Parameterized):
    """One session's health panel: per camera status, drops, last frame age and fps; rows of
    cameras offline or late carry the CSS classes ``camera-offline`` / ``camera-late``. With
    the live ``ReplayEngine``, also how far the newest data lags its simulated clock."""

    late_data_after = param.Parameter(default=pd.Timedelta(minutes=15),
                                      doc="Newest observation older than this on the simulated clock: late.")

    def __init__(self, wall: Wall, engine=None, **params):
        super().__init__(**params)
        self.wall = wall
        self.engine = engine
        self.pane = pn.pane.HTML("", css_classes=["camera-health"], sizing_mode="stretch_width")
        self.refresh()

    def refresh(self) -> None:
        self.pane.object = health_html(self.wall.health()) + self._data_lag_html()

    def _data_lag_html(self) -> str:
        if self.engine is None:
            return ""
        parts, late = [], False
        for table, label in (("observations", "observation"), ("events", "event")):
            lag = data_lag(self.engine, table)
            if lag is None:
                parts.append(f"no {label} yet")
                continue
            parts.append(f"newest {label} {_duration(lag.total_seconds())}")
            # counts arrive every few minutes; events may rightly be hours apart
            late |= table == "observations" and lag > self.late_data_after
        css, style = ("data-lag data-late", "background:#fff3cd") if late else ("data-lag", "")
        clock = "the simulated clock" if "speed" in self.engine.param else "the server's clock"
        return f'<p class="{css}" style="{style}">{html.escape(", ".join(parts))} behind {clock}</p>'

    def layout(self) -> pn.viewable.Viewable:
        return self.pane


def camera_panel(data_dir: str | os.PathLike | None = None, engine=None, period_ms: int = 1000,
                 cameras_file: str | os.PathLike | None = None, render=None,
                 wall: Wall | None = None) -> pn.Column:
    """This session's tiles and health panel of ``wall`` (default: the process's wall,
    ``get_wall``; live: ``camera_feed.get_feed()``, the cameras workers post), refreshed
    every ``period_ms`` by a periodic callback of the session: what a page adds in one line."""
    if wall is None:
        wall = get_wall(cameras_file, data_dir=data_dir, render=render)
    tiles, health = CameraWallView(wall), HealthView(wall, engine=engine)

    def refresh() -> None:  # reads the wall; never runs a pipeline
        tiles.refresh()
        health.refresh()

    pn.state.add_periodic_callback(refresh, period=period_ms)
    return pn.Column(pn.pane.Markdown("### Cameras"), tiles.layout(),
                     pn.pane.Markdown("### Camera health"), health.layout())


def data_lag(engine, table: str = "observations") -> pd.Timedelta | None:
    """How far the newest row of ``table`` (``observations`` or ``events``) the engine has
    received lags the engine's clock; None before the first."""
    newest = engine.newest.get(table)
    if newest is None:
        return None
    return max(pd.Timestamp(engine.now, tz="UTC") - newest, pd.Timedelta(0))


def health_html(table: pd.DataFrame) -> str:
    """The health table as HTML, every cell escaped; offline, ended and late rows marked."""
    head = "".join(f"<th>{h}</th>" for h in ("camera", "status", "frames", "dropped", "last frame",
                                              "fps", "problem"))
    rows = []
    for r in table.itertuples(index=False):
        css = f"camera-row status-{r.status}"
        if r.status in ("offline", "ended"):
            css += " camera-offline"
        elif r.status == "late":
            css += " camera-late"
        colour = {"ok": "", "late": "background:#fff3cd", "ended": "background:#f8d7da",
                  "offline": "background:#f8d7da"}[r.status]
        age = "never" if r.last_frame_age_s is None or pd.isna(r.last_frame_age_s) \
            else _duration(r.last_frame_age_s) + " ago"
        cells = (r.camera_id, r.status, r.frames, r.dropped, age, f"{r.fps:.1f}", r.error)
        rows.append(f'<tr class="{css}" data-camera="{html.escape(r.camera_id)}" style="{colour}">'
                    + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f'<table class="camera-health-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["CameraWall", "WallCamera", "Wall", "for_viewers", "CameraWallView", "HealthView", "camera_panel", "get_wall", "demo_cameras",
           "installation_cameras", "tile_html", "health_html", "data_lag", "STATUSES", "DEMO_SCENARIOS"]
