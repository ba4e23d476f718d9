"""The per-camera pipeline: one loop of small stages from frames to observations and events.

For every frame::

    detections, foreground = finder.detect(image)          # find people and objects
    tracked = tracker.update(detections, index)            # track (sv.Detections + tracker_id)
    tracked.data += class, ground speed, zone membership   # measure
    events = [r.update(..., tracked, ...) for r in rules]  # flag (one event rule per kind)
    features.add(...)                                      # aggregate per bin

``CameraPipeline.process(frame)`` runs one frame and returns a ``FrameResult``
(inspectable in a notebook); ``run(source, store)`` loops over a source and
appends ``observations`` (per zone and time bin: ``people_count``,
``occupancy``, ``mean_speed``, ``flow_dir_0..7``, and the dwell summary
``dwell_count``, ``dwell_mean_s``, ``dwell_max_s``; sensor ``"{camera}:{zone}"``;
per counting line ``line_in``, ``line_out``; sensor ``"{camera}:{line}"``)
and ``events`` to a ``Store`` in batches, one batch per closed bin. Besides the
event rules, ``health`` (``safecity.video.health``) raises ``camera_frozen`` and
``camera_tampered`` events on the same path.
``display(frame, result)`` is the only way a frame leaves: people blurred
(``privacy``), boxes, ids, zones and events drawn.

The people finder (``detect``), the event rules (``events``, one module per kind), ground speed (``motion``),
zone counts and per-bin features (``zones``), drawing (``annotate``) and the blur
(``privacy``) are separate modules, one per idea; this one only chains them.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np
import pandas as pd
import supervision as sv

from safecity.video import events, privacy, sources
from safecity.video.sources import VideoSource
from safecity.video.annotate import Annotator
from safecity.video.detect import PERSON, PeopleFinder
from safecity.video.health import CameraHealthCheck
from safecity.video.lines import LineCounter
from safecity.video.motion import Motion
from safecity.video.track import BoxTracker, Tracker, class_names, to_table, xywh
from safecity.video.zones import BinFeatures, ZoneCounter, empty_observations

#: Seconds of frames (at the pipeline's ``fps``) a (re)started pipeline shows wholly blurred:
#: before its background model has seen the street, nobody in the frame can be located, so
#: nobody could be blurred (on PETS 2009 the first frame left 2 of 3 people sharp).
WARMUP_S = 2.0

#: The fewest frames a warm-up of more than 0 s lasts: a background model learns the street from
#: frames, not seconds, so a slow camera (2 frames/s) stays wholly blurred for 20 frames, what
#: the 2 s gave when every camera was taken to run at 10 frames/s.
MIN_WARMUP_FRAMES = 20

#: A gap between two frames' times longer than this (or a step back in time: a clip looped)
#: is a restart of the source: the warm-up starts again.
RESTART_GAP_S = 1.0


def _scene_and_id(camera, camera_id: str | None) -> tuple[dict, str]:
    """Accept a scene dict or a ``config.CameraConfig`` (anything with ``scene()``)."""
    if hasattr(camera, "scene") and callable(camera.scene):
        scene = dict(camera.scene())
        cid = camera_id or getattr(camera, "camera_id", None) or getattr(camera, "id", None)
    elif isinstance(camera, dict):
        scene = dict(camera)
        cid = camera_id
    else:
        raise TypeError(f"CameraPipeline needs a scene dict or a CameraConfig, got {type(camera).__name__}")
    cid = cid or scene.get("camera_id") or scene.get("camera") or scene.get("scenario") or "camera"
    scene.setdefault("camera_id", str(cid))
    return scene, str(cid)


#: Prefix of the ``data`` keys of the tracked detections that say who is in a zone
#: (``data["in_zone:plaza"]``: a boolean per detection).
IN_ZONE = "in_zone:"


@dataclass
class FrameResult:
    """What one frame gave: the tracked detections (``sv.Detections`` with ``tracker_id`` and, in
    ``data``, ``class_name``, ``speed_mps``, ``dir_x``, ``dir_y`` and ``in_zone:<zone>``), events
    found, the foreground mask, people per zone and dwell seconds per (track, zone).
    ``warming_up``: the people finder cannot yet locate everyone, so ``display`` blurs the
    whole frame (true unless the pipeline says otherwise: a result made by hand is hidden).
    ``tracks`` is the same as rows of the tracks table, made when asked for."""

    index: int
    time_s: float
    ts: pd.Timestamp | None
    detections: sv.Detections
    events: list[dict]
    foreground: np.ndarray
    zone_counts: dict[str, float] = field(default_factory=dict)
    dwell: dict[tuple[int, str], float] = field(default_factory=dict)
    warming_up: bool = True

    @cached_property
    def tracks(self) -> pd.DataFrame:
        """The tracks table's rows of this frame (contract columns + ``speed_mps``, ``dir_x``,
        ``dir_y``): an output to accumulate, not what the stages pass on."""
        tracks = to_table(self.detections, self.index, self.time_s)
        for column in ("speed_mps", "dir_x", "dir_y"):
            tracks[column] = self.detections.data[column] if column in self.detections.data else np.nan
        return tracks


def zones_of(zones: dict[str, sv.PolygonZone], xyxy: np.ndarray) -> dict[str, np.ndarray]:
    """Zone name -> which boxes have their feet (bottom centre) in it: ``PolygonZone.trigger``'s
    answer (the same rounded anchor on the same mask) with the anchors computed once for all
    zones; supervision's per-zone call cost more than the rest of the zone work together."""
    if not len(xyxy):
        return {name: np.zeros(0, bool) for name in zones}
    x = np.rint((xyxy[:, 0] + xyxy[:, 2]) / 2).astype(int)
    y = np.rint(xyxy[:, 3]).astype(int)
    out = {}
    for name, zone in zones.items():
        h, w = zone.mask.shape
        ok = (x >= 0) & (y >= 0) & (x < w) & (y < h)
        out[name] = ok & zone.mask[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)].astype(bool)
    return out


def zone_masks(detections: sv.Detections) -> dict[str, np.ndarray]:
    """Zone name -> which of the tracked detections stand in it (from their ``data``)."""
    return {key[len(IN_ZONE):]: mask for key, mask in detections.data.items() if key.startswith(IN_ZONE)}


# =========================================================================== pipeline


class CameraPipeline:
    """One camera, frame by frame: detect, track, measure, flag, aggregate.

    ``camera``: a scene dict (``synthetic_video.scene_for`` shape) or a
    ``config.CameraConfig``. ``rules``: event rules (objects with
    ``update(frame_index, time_s, image, detections, foreground)``); ``None``
    builds those the camera enables (``events.rules_for(camera)`` from a
    ``CameraConfig``, ``events.make_rules(scene)`` from a scene dict), ``[]``
    runs none. ``finder``: the people finder (default ``detect.PeopleFinder``);
    ``tracker``: any ``track.Tracker`` (default ``track.BoxTracker``). ``bin_s``: the feature bin in seconds. ``fps``: the
    camera's frame rate (default: the camera's ``fps``, else 10), for frames that carry no
    timestamps and for the stages that count frames (the warm-up, the background model's
    memory, how long a lost track coasts). A source opened by ``frames`` or ``run`` sets it
    to the rate its frames are stamped at (``VideoSource.rate``: a file's own, 18 or 29.97
    fps, not an assumed 10), before the first frame. ``count_every_s``: how often a fitted
    ``counter`` counts (seconds); one with ``partial_fit`` then learns the frame it counted. ``start``: the time of
    frame 0 for such frames. ``audit``: where turning the blur off or
    enabling repeated presence is recorded (``Store(...).state``), in the name of
    ``actor`` (default: the operating-system user running the pipeline). ``warmup_s``:
    seconds of frames shown wholly blurred after a start or a restart (a gap of
    more than ``RESTART_GAP_S`` or a step back in the frames' times, or ``restart()``).
    ``health``: the camera's frozen and tampered checks (default: a ``CameraHealthCheck``
    set from the camera's ``health`` section, unless it disables them; ``False``: none).
    """

    def __init__(self, camera, rules: list | None = None, *, camera_id: str | None = None,
                 bin_s: float = 60.0, fps: float | None = None, start=None,
                 finder: PeopleFinder | None = None, tracker: Tracker | None = None,
                 audit=None, batch_bins: int = 1, counter=None, count_every_s: float = 0.5,
                 warmup_s: float = WARMUP_S, actor: str | None = None, health=None):
        self.scene, self.camera_id = _scene_and_id(camera, camera_id)
        self.camera = camera
        self.bin_s = bin_s
        self.fps = float(fps or self.scene.get("fps") or sources.DEFAULT_FPS)
        start = pd.Timestamp(start if start is not None else self.scene.get("start") or "1970-01-01")
        self.start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        self.audit = audit
        self.actor = actor
        self.batch_bins = batch_bins
        self.counter = counter
        self.count_every_s = count_every_s
        self._counted_s: float | None = None  # when the fitted counter last counted
        if not warmup_s >= 0:
            raise ValueError(f"camera '{self.camera_id}': warmup_s must be 0 or more, got {warmup_s!r}")
        self.warmup_s = warmup_s
        self.warmup_frames = self._warmup_frames()
        self._warm_seen = 0  # frames processed since the last (re)start
        self._last_ts: pd.Timestamp | None = None
        self._watched, self._reconnects = None, 0  # the source whose reconnects restart the warm-up
        self.finder = finder or PeopleFinder({**self.scene, "fps": self.fps}, onnx=_plugins(self.scene))
        self.tracker = tracker or BoxTracker(fps=self.fps)
        self.rules = self._default_rules() if rules is None else list(rules)
        self.motion = Motion(self.scene, person_height=self.finder.person_height)
        zones = self.scene.get("zones") or {}
        self.zones = {name: sv.PolygonZone(np.round(np.asarray(poly, float)).astype(np.int64))
                      for name, poly in zones.items()}
        self._zone_polys = {name: np.asarray(poly, float) for name, poly in zones.items()}
        self.zone_counter = ZoneCounter(self._zone_polys)
        self.line_counter = LineCounter(self.scene.get("lines") or {})
        self.health = self._default_health() if health is None else (health or None)
        self._crowd: dict[str, float] = {}
        self.features: BinFeatures | None = None
        # (track, zone) -> [entered, last seen, a person?]
        self._entered: dict[tuple[int, str], list] = {}
        self._stays: list[tuple[str, float]] = []  # (zone, seconds) of people's stays that ended
        self._t0: pd.Timestamp | None = None
        self.policy_ = None  # the privacy decision, taken (and audited) on the first display
        self._annotator: Annotator | None = None  # built on the first annotated display
        self._closed: pd.DataFrame | None = None

    def _default_rules(self) -> list:
        """The event rules the camera asks for (all kinds if it does not say); repeated presence
        only when the camera enables it (opt-in, audited). A ``CameraConfig`` builds them from
        its typed settings; a scene dict (a scripted clip) from its keys."""
        if hasattr(self.camera, "enabled_detectors"):
            return events.rules_for(self.camera, audit=self.audit)
        found = list(events.make_rules(self.scene))
        settings = self.scene.get("repeated_presence")
        if isinstance(settings, dict) and settings.get("enabled"):
            found.append(events.RepeatedPresenceRule(self.scene, audit=self.audit, **settings))
        return found

    def _default_health(self) -> CameraHealthCheck | None:
        settings = self.scene.get("health") or {}
        if not settings.get("enabled", True):
            return None
        return CameraHealthCheck(**{k: settings[k] for k in ("frozen_s", "tampered_s") if k in settings})

    def _warmup_frames(self) -> int:
        """Frames of the warm-up: ``warmup_s`` at the camera's rate, at least ``MIN_WARMUP_FRAMES``."""
        if not self.warmup_s:
            return 0
        return max(MIN_WARMUP_FRAMES, math.ceil(self.warmup_s * self.fps))

    def use_fps(self, fps: float) -> None:
        """Run at ``fps`` frames a second: the warm-up, and every stage that counts frames for
        a duration (``use_fps`` of the finder and the tracker, if they have one). The event
        rules measure their windows in the frames' seconds and need no telling."""
        if not fps > 0:
            raise ValueError(f"camera '{self.camera_id}': fps must be positive, got {fps!r}")
        self.fps = float(fps)
        self.scene["fps"] = self.fps
        self.warmup_frames = self._warmup_frames()
        for stage in (self.finder, self.tracker):
            use = getattr(stage, "use_fps", None)
            if callable(use):
                use(self.fps)

    # ------------------------------------------------------------------ one frame

    def restart(self) -> None:
        """The source was reopened (a reconnect, a loop): hide whole frames until warmed up again,
        and learn the camera's view afresh."""
        self._warm_seen = 0
        if self.health is not None:
            self.health.restart()

    def watch(self, source) -> None:
        """Restart the warm-up whenever ``source`` (a ``VideoSource``) reconnects."""
        self._watched = source
        self._reconnects = source.health().reconnects

    def process(self, frame) -> FrameResult:
        """Run every stage on one frame: a ``sources.Frame`` (index, ts, image) or a bare image."""
        index, ts, image = self._unpack(frame)
        if self._watched is not None and self._watched.health().reconnects != self._reconnects:
            self._reconnects = self._watched.health().reconnects
            self.restart()
        if self._last_ts is not None and not 0 <= (ts - self._last_ts).total_seconds() <= RESTART_GAP_S:
            self.restart()
        self._last_ts = ts
        self._warm_seen += 1
        warming_up = self._warm_seen <= self.warmup_frames
        if self._t0 is None:
            self._t0 = ts
            h, w = image.shape[:2]
            if not self.zones:  # no zones configured: the whole image is one zone, "all"
                self._zone_polys = {"all": np.array([[0, 0], [w, 0], [w, h], [0, h]], float)}
                self.zones = {"all": sv.PolygonZone(self._zone_polys["all"].astype(np.int64))}
                self.zone_counter = ZoneCounter(self._zone_polys)
            if self.features is None:  # else the bin in progress of a previous loop (continue_bins)
                self.features = BinFeatures(self.camera_id, self._zone_polys, (w, h), self.bin_s,
                                            lines=self.line_counter.lines)
            self._shape = image.shape
        elif image.shape != self._shape:
            raise ValueError(f"camera '{self.camera_id}': frame {index} is {image.shape[1]}x{image.shape[0]} px, "
                             f"the camera's first frame was {self._shape[1]}x{self._shape[0]} px")
        time_s = (ts - self._t0).total_seconds()

        detections, foreground = self.finder.detect(image)
        tracked = self.tracker.update(detections, index)
        ids = np.asarray(tracked.tracker_id, int)
        speed, direction = self.motion.update(time_s, ids, tracked.xyxy)
        inside = zones_of(self.zones, tracked.xyxy)
        tracked.data["class_name"] = class_names(tracked)
        tracked.data["speed_mps"], tracked.data["dir_x"], tracked.data["dir_y"] = (
            speed, direction[:, 0], direction[:, 1])
        tracked.data.update({IN_ZONE + name: mask for name, mask in inside.items()})
        people = tracked.class_id == PERSON
        dwell = self._dwell(time_s, ids, inside, people)
        found = []
        shared = self.finder.shared(image) if hasattr(self.finder, "shared") else image
        for rule in self.rules:
            found.extend(rule.update(index, time_s, shared, tracked, foreground))
        if self.health is not None:
            found.extend(self.health.update(index, time_s, image))
        counts = self._count(time_s, image, detections,
                             {name: int((m & people).sum()) for name, m in inside.items()})
        crossings = self.line_counter.update(tracked[people]) if self.line_counter.lines else None
        stays, self._stays = self._stays, []
        self._closed = self.features.add(ts, tracked.xyxy[people], speed[people], direction[people],
                                         {k: v[people] for k, v in inside.items()}, counts,
                                         stays, crossings)
        return FrameResult(index, time_s, ts, tracked, found, foreground, counts, dwell, warming_up)

    def _count(self, now: float, image: np.ndarray, detections: sv.Detections,
               tracked: dict[str, int]) -> dict[str, float]:
        """People per zone: a fitted crowd counter every ``count_every_s`` seconds if given, else
        the larger of the tracked people and the occlusion-corrected foreground estimate."""
        if self.counter is not None:
            if not self._crowd or self._counted_s is None or not 0 <= now - self._counted_s < self.count_every_s:
                self._crowd = self.counter.count_zones(image, self._zone_polys)
                # A counter whose background follows the scene learns each frame it counted.
                if hasattr(self.counter, "partial_fit"):
                    self.counter.partial_fit([image])
                self._counted_s = now
            return {name: float(self._crowd.get(name, 0.0)) for name in tracked}
        small, scale = self.finder.working_foreground
        crowd = self.zone_counter.count(small, scale, self.finder.size_model,
                                        detections.xyxy[detections.class_id == PERSON])
        return {name: max(float(n), crowd.get(name, 0.0)) for name, n in tracked.items()}

    def _unpack(self, frame) -> tuple[int, pd.Timestamp, np.ndarray]:
        if isinstance(frame, np.ndarray):
            index = getattr(self, "_next", 0)
            ts = self.start + pd.Timedelta(seconds=index / self.fps)
        else:
            index, ts, image = frame
            frame = image
            ts = pd.Timestamp(ts)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"camera '{self.camera_id}': frame {index} is not a BGR image "
                             f"(shape {getattr(frame, 'shape', None)})")
        self._next = int(index) + 1
        return int(index), ts, frame

    def _dwell(self, time_s: float, ids: np.ndarray, inside: dict, people=None,
               forget_s: float = 3.0) -> dict:
        """Seconds each track has spent in each zone since it entered it. A track seen outside
        the zone has left it; one not seen at all (hidden for a moment) has not, unless it stays
        unseen for ``forget_s``. A person's stay that ends goes to ``_stays`` (zone, seconds:
        entered to last seen in the zone), for the bin's dwell summary."""
        now, seen = set(), {int(t) for t in ids}
        person = np.ones(len(ids), bool) if people is None else np.asarray(people, bool)
        for name, mask in inside.items():
            for tid, is_person in zip(ids[mask], person[mask]):
                key = (int(tid), name)
                self._entered.setdefault(key, [time_s, time_s, bool(is_person)])[1] = time_s
                now.add(key)
        for key, (entered, last, is_person) in list(self._entered.items()):
            if key not in now and (key[0] in seen or time_s - last > forget_s):
                del self._entered[key]
                if is_person:
                    self._stays.append((key[1], last - entered))
        return {key: time_s - self._entered[key][0] for key in now}

    def end_stays(self) -> None:
        """The source ended: every stay still open ends at its last sight (dwell summary)."""
        stays = [(zone, last - entered) for (_, zone), (entered, last, person) in self._entered.items()
                 if person]
        self._entered.clear()
        if self.features is not None:
            self.features.end_stays(self._stays + stays)
        self._stays = []

    # ------------------------------------------------------------------ a whole source

    def run(self, source=None, store=None, max_frames: int | None = None, *,
            on_frame=None, keep_bin_open: bool = False) -> dict:
        """Process a source (a ``VideoSource``, a path, or an iterable of frames) to its end;
        ``None``: the camera configuration's own source.

        Observations and events are appended to ``store`` (anything with
        ``append(table, df)``) bin by bin, and the last, partial bin at the end
        unless ``keep_bin_open`` (a looping clip: the next loop's pipeline takes
        it over with ``continue_bins``, so no bin is written twice). ``on_frame(image,
        result)`` is called after each frame (a worker publishing ``tile``s).
        Returns a summary: frames, tracks, observations and events written, and
        the processing rate.
        """
        frames = self.frames(source)
        obs_parts, event_parts = [], []
        n_frames, n_obs, n_events, ids = 0, 0, 0, set()
        bins = 0
        t0 = time.perf_counter()
        for frame in frames:
            if max_frames is not None and n_frames >= max_frames:
                break
            result = self.process(frame)
            n_frames += 1
            if on_frame is not None:
                on_frame(frame if isinstance(frame, np.ndarray) else frame[2], result)
            ids.update(np.asarray(result.detections.tracker_id, int).tolist())
            if result.events:
                event_parts.append(self.event_rows(result.events))
            if self._closed is not None and len(self._closed):
                obs_parts.append(self._closed)
                bins += 1
            if bins >= self.batch_bins:
                n_obs, n_events = self._write(store, obs_parts, event_parts, n_obs, n_events)
                obs_parts, event_parts, bins = [], [], 0
        if self.features is not None and not keep_bin_open:
            self.end_stays()
            obs_parts.append(self.features.flush())
        n_obs, n_events = self._write(store, obs_parts, event_parts, n_obs, n_events)
        elapsed = time.perf_counter() - t0
        close = getattr(frames, "close", None)
        if callable(close) and frames is not source:
            close()
        summary = {"camera_id": self.camera_id, "frames": n_frames, "track_ids": len(ids),
                   "observations": n_obs, "events": n_events,
                   "fps": n_frames / elapsed if elapsed > 0 else float("nan")}
        health = getattr(frames, "health", None)
        if callable(health):
            h = health()
            summary["health"] = {"frames_received": h.frames_received, "frames_dropped": h.frames_dropped,
                                 "reconnects": h.reconnects, "status": h.status, "last_error": h.last_error}
        return summary

    def continue_bins(self, previous: CameraPipeline) -> None:
        """Carry on ``previous``'s bin in progress (a clip looped into a fresh pipeline whose
        times continue the last loop's): the bin is written once, with every frame in it. The
        last loop's open stays end there (its tracks do not carry over)."""
        previous.end_stays()
        self.features, previous.features = previous.features, None

    def flush(self, store=None) -> int:
        """Write the bin in progress (left open by ``run(keep_bin_open=True)``); rows written."""
        if self.features is None:
            return 0
        self.end_stays()
        n_obs, _ = self._write(store, [self.features.flush()], [], 0, 0)
        return n_obs

    def frames(self, source=None, **options):
        """The frames of ``source``: a path or URL opened as a ``VideoSource`` (``None``: the
        camera configuration's own source; ``options`` go to ``VideoSource``, e.g.
        ``give_up_after_s``); anything else is taken to be an iterable of frames."""
        if source is None:
            if hasattr(self.camera, "enabled_detectors"):  # a CameraConfig
                opened = VideoSource.from_config(self.camera, **options)
                self._adopt(opened)
                return opened
            source = self.scene.get("source")
            if source is None:
                raise ValueError(f"camera '{self.camera_id}': no source given and none in its configuration")
        if isinstance(source, (str, int)) or hasattr(source, "__fspath__"):
            # A file keeps its own frame rate; only a frame folder needs the configured one.
            fps = self.scene.get("fps") if sources.source_kind(source) == "folder" else None
            opened = sources.open_source(source, self.camera_id, fps=fps, **options)
            self._adopt(opened)
            return opened
        if isinstance(source, sources.VideoSource):
            self._adopt(source)
        return source

    def _adopt(self, source: VideoSource) -> None:
        """Watch ``source`` and run at the rate its frames are stamped at, if it knows it."""
        self.watch(source)
        rate = source.rate
        if rate and rate != self.fps:
            self.use_fps(rate)

    def _write(self, store, obs_parts, event_parts, n_obs, n_events) -> tuple[int, int]:
        """A closed bin's events, then its observations: a bin whose observations are stored
        has its events stored too (a camera restarted elsewhere resumes after it)."""
        from safecity.data.schema import validate

        obs = [p for p in obs_parts if len(p)]
        evs = [p for p in event_parts if len(p)]
        if evs:
            table = validate(pd.concat(evs, ignore_index=True), "events")
            n_events += len(table)
            if store is not None:
                store.append("events", table)
        if obs:
            table = validate(pd.concat(obs, ignore_index=True), "observations")
            n_obs += len(table)
            if store is not None:
                store.append("observations", table)
        return n_obs, n_events

    def event_rows(self, found: list[dict]) -> pd.DataFrame:
        """``events`` rows for what the rules found (details: track ids, zone, duration, score)."""
        lon, lat = self.scene.get("lon"), self.scene.get("lat")
        return events.to_event_rows(found, self.camera_id, self._t0, lon=lon, lat=lat)

    # ------------------------------------------------------------------ output frames

    def display(self, image: np.ndarray, result: FrameResult, annotate: bool = True) -> np.ndarray:
        """The frame as it may leave the pipeline: people blurred, then (``annotate``) boxes, ids,
        zones and events drawn.

        The foreground mask is blurred too, so a person the people finder missed
        stays hidden; while the pipeline warms up (``result.warming_up``) the
        whole frame is.
        """
        if self.policy_ is None:
            self.policy_ = privacy.privacy_policy(self.scene, audit=self.audit, actor=self.actor)
        people = result.detections[class_names(result.detections) == "person"]
        out = privacy.protect(image, xywh(people), self.policy_,
                              mask=_full_size(result.foreground, image.shape[:2]),
                              warming_up=getattr(result, "warming_up", True))
        if not annotate:
            return out
        if self._annotator is None or self._annotator.zones.keys() != self._zone_polys.keys():
            self._annotator = Annotator(self._zone_polys)
        return self._annotator.draw(out, result.detections, result.events)


    def tile(self, image: np.ndarray, result: FrameResult, width: int | None = 360,
             quality: int = 70) -> bytes:
        """``display(image, result)`` as JPEG, shrunk to ``width`` pixels if wider: what a
        camera wall shows, and the only picture a camera worker sends anywhere."""
        shown = self.display(image, result)
        if width and shown.shape[1] > width:
            height = round(shown.shape[0] * width / shown.shape[1])
            shown = cv2.resize(shown, (width, height), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise ValueError(f"camera '{self.camera_id}': frame {result.index} cannot be encoded")
        return buf.tobytes()


def _full_size(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """The working-resolution foreground scaled back to the frame's size."""
    if mask is None or mask.shape[:2] == shape:
        return mask
    return cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def _plugins(scene: dict) -> list:
    """The user's own ONNX models of people or objects declared for the camera (weapon
    models go to the ``weapon`` event rule instead)."""
    from safecity.video.detect import OnnxFinder

    out = []
    for p in scene.get("plugins") or []:
        if str(p.get("kind", "")).startswith("weapon"):
            continue
        out.append(OnnxFinder(p["path"], input_size=tuple(p.get("input_size", (640, 640))),
                                classes=tuple(p.get("classes", ("person",))),
                                confidence=float(p.get("confidence", 0.4)), kind=p.get("kind", "person")))
    return out


def observations_for(camera, frames: Iterable, bin_s: float = 60.0, **kwargs) -> pd.DataFrame:
    """Every observations row of a list of frames (all bins, the last one partial), in memory."""
    pipe = CameraPipeline(camera, rules=[], bin_s=bin_s, **kwargs)
    parts = []
    for frame in frames:
        pipe.process(frame)
        if pipe._closed is not None:
            parts.append(pipe._closed)
    if pipe.features is not None:
        pipe.end_stays()
        parts.append(pipe.features.flush())
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else empty_observations()


__all__ = ["CameraPipeline", "FrameResult", "observations_for"]
