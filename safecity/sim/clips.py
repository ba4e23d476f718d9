"""Short synthetic camera clips with scripted behaviours and their ground truth.

Real footage of a fall or an abandoned bag, labelled frame by frame, is rare
and cannot be shared; a clip drawn from a script has exact answers. Each
scenario stages one situation the video analytics must flag (loitering,
running against the flow, entering a forbidden zone, falling and staying down,
leaving a bag, a crowd gathering then dispersing, too many people in a zone,
one person coming back again and again, fire) among ordinary passers-by, and
returns the frames, every object's box per frame, the scripted events, and the
camera configuration (zones, expected flow, limits) a detector needs.

People are simple blobs (shadow, legs, body, head) in varied clothing, sized by
a fake perspective (smaller towards the top), walking with a slight bob, over
a textured street scene with sensor noise. Coordinates are pixels; a box's
``x, y`` is its top-left corner.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pandas as pd
import shapely

SCENARIOS = ("normal", "loitering", "wrong_way", "forbidden_zone", "person_on_ground",
             "abandoned_object", "crowd_movement", "excessive_density", "repeated_presence",
             "fire")

#: Scripted moments (frames): the fire starts, the crowd runs off; the returning person's id.
FIRE_STARTS, CROWD_DISPERSES, RETURNING_PERSON = 50, 140, 500

#: Frames per scenario when not given (the repeated visits need longer).
DEFAULT_FRAMES = {"repeated_presence": 280, "crowd_movement": 240, "loitering": 240}

_CLOTHES = [(40, 40, 160), (160, 60, 40), (40, 120, 40), (30, 30, 30), (200, 200, 200),
            (60, 140, 200), (120, 40, 120), (20, 90, 160), (140, 140, 60), (90, 60, 30),
            (180, 120, 200), (50, 80, 110)]
_SKIN = [(150, 180, 225), (110, 150, 200), (80, 110, 160), (60, 80, 120)]


class Clip(NamedTuple):
    """A rendered clip: BGR frames, per-frame boxes, scripted events, camera configuration."""

    frames: list
    tracks: pd.DataFrame
    truth: pd.DataFrame
    scene: dict


@dataclass
class _Agent:
    track_id: int
    route: list            # [(x, y, wait_frames), ...] in pixels
    start: int             # frame at which it stands on route[0]
    speed: float = 1.3     # metres per second
    person_id: int | None = None
    cls: str = "person"
    leave: bool = True     # disappears when the route ends (else stays put)
    fall_at: int | None = None
    run_from: int | None = None   # stops waiting and runs on from this frame
    carry_until: int | None = None  # carries a bag until this frame
    abandoned: int | None = None  # (bags) frame from which the bag counts as abandoned
    look: tuple = ()
    pos: np.ndarray = field(default=None, repr=False)   # (n_frames, 2), NaN when absent
    moving: np.ndarray = field(default=None, repr=False)


# =========================================================================== scene


def scene_for(scenario: str, size=(480, 360), fps: int = 10) -> dict:
    """The camera's configuration for a scenario: what a deployment's YAML would declare.

    ``zones`` are polygons in pixels; ``flow_direction`` is the unit vector of
    normal movement in the image; limits are in seconds, people or people per m².
    """
    w, h = size

    def rect(x0, y0, x1, y1):  # corners from fractions of the image
        return [[round(x0 * w), round(y0 * h)], [round(x1 * w), round(y0 * h)],
                [round(x1 * w), round(y1 * h)], [round(x0 * w), round(y1 * h)]]

    plaza = rect(0.30, 0.42, 0.62, 0.78)
    mid_y = 0.60 * h
    ppm = _height(mid_y, h) / 1.7
    plaza_m2 = shapely.Polygon(plaza).area / ppm**2
    return {
        "scenario": scenario,
        "size": [w, h],
        "fps": fps,
        "zones": {"main": rect(0.0, 0.30, 1.0, 1.0), "plaza": plaza,
                  "forbidden": rect(0.72, 0.66, 0.97, 0.95)},
        "forbidden_zones": ["forbidden"],
        "flow_direction": [1.0, 0.0],
        "loitering_limit_s": 8.0,
        "abandon_limit_s": 5.0,
        "repeat_count": 3,
        "repeat_window_s": 60.0,
        "density_limit_per_m2": round(12 / plaza_m2, 3),
        "max_people": {"plaza": 12},
        "pixels_per_metre": round(float(ppm), 2),
        "fire_region": rect(0.78, 0.16, 0.90, 0.34) if scenario == "fire" else None,
    }


# =========================================================================== render


def render_clip(scenario: str, seed: int = 0, n_frames: int | None = None, size=(480, 360),
                fps: int = 10) -> Clip:
    """Render one scripted scenario; the same arguments give the same pixels and truth.

    ``tracks``: frame, track_id, person_id, x, y, w, h, cls ('person' or 'bag';
    a bag is listed once it is set down). ``truth``: kind, start_frame,
    end_frame, track_ids (JSON list), zone; empty for ``normal``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario '{scenario}'; choose from {', '.join(SCENARIOS)}")
    n_frames = n_frames or DEFAULT_FRAMES.get(scenario, 200)
    w, h = size
    rng = np.random.default_rng([seed, SCENARIOS.index(scenario)])
    scene = scene_for(scenario, size, fps)
    agents, bags = _script(scenario, rng, n_frames, w, h, fps, scene)
    for a in agents + bags:
        _move(a, n_frames, h, fps)
    for bag in bags:  # the last scripted person carries it in and sets it down
        _set_down(bag, agents[-1], scene)
    for a in agents + bags:
        if not a.look:
            a.look = _look(rng)
    tracks = _tracks(agents, bags, n_frames, w, h)
    truth = _truth(scenario, agents, bags, tracks, scene, n_frames)

    background = _background(np.random.default_rng([seed, 99]), w, h, scene)
    noise = [np.random.default_rng([seed, 7, k]).normal(0, 3.0, (h, w, 3)).round().astype(np.int16)
             for k in range(8)]
    fire_from = FIRE_STARTS if scenario == "fire" else None
    frames = []
    for f in range(n_frames):
        img = background.copy()
        for a in sorted(agents + bags, key=lambda a: a.pos[f, 1] if not np.isnan(a.pos[f, 1]) else -1):
            if not np.isnan(a.pos[f, 0]):
                _draw(img, a, f, h)
        if fire_from is not None and f >= fire_from:
            _draw_fire(img, scene["fire_region"], f - fire_from, rng)
        img = np.clip(img.astype(np.int16) + noise[f % len(noise)] + int(rng.integers(-2, 3)), 0, 255)
        frames.append(img.astype(np.uint8))
    return Clip(frames, tracks, truth, scene)


def write_clips(out_dir, seed: int = 0, scenarios=None, n_frames: int | None = None,
                size=(480, 360), fps: int = 10) -> list[Path]:
    """Write each scenario as ``<scenario>.avi`` (MJPG) with ``_tracks.csv``, ``_truth.csv``, ``_scene.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for scenario in scenarios or SCENARIOS:
        clip = render_clip(scenario, seed=seed, n_frames=n_frames, size=size, fps=fps)
        path = out / f"{scenario}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, tuple(size))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {path} with the MJPG codec")
        for frame in clip.frames:
            writer.write(frame)
        writer.release()
        clip.tracks.to_csv(out / f"{scenario}_tracks.csv", index=False)
        clip.truth.to_csv(out / f"{scenario}_truth.csv", index=False)
        (out / f"{scenario}_scene.json").write_text(json.dumps(clip.scene, indent=2))
        written.append(path)
    return written


def read_clip(path) -> list[np.ndarray]:
    """All frames of a video file (BGR), as OpenCV decodes them."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


# =========================================================================== scripts


def _script(scenario, rng, n, w, h, fps, scene):
    """The agents of a scenario: passers-by plus the scripted actors."""
    ids = iter(range(1, 1000))
    density = {"crowd_movement": 0.0, "excessive_density": 0.03}.get(scenario, 0.06)
    agents = _passers_by(rng, ids, n, w, h, density)
    bags: list[_Agent] = []
    poly = {k: np.array(v, float) for k, v in scene["zones"].items()}

    def inside(name, margin=0.15):
        x0, y0 = poly[name].min(0)
        x1, y1 = poly[name].max(0)
        mx, my = (x1 - x0) * margin, (y1 - y0) * margin
        return float(rng.uniform(x0 + mx, x1 - mx)), float(rng.uniform(y0 + my, y1 - my))

    if scenario == "loitering":
        y = 0.6 * h
        route = [(-20, y, 0)] + [(*inside("plaza"), int(rng.integers(8, 25))) for _ in range(4)]
        route += [(w + 30, 0.7 * h, 0)]
        agents.append(_Agent(next(ids), route, start=5, speed=0.9))
    elif scenario == "wrong_way":
        agents.append(_Agent(next(ids), [(w + 25, 0.62 * h, 0), (-30, 0.58 * h, 0)], start=60,
                             speed=3.2))
    elif scenario == "forbidden_zone":
        fx, fy = inside("forbidden", 0.3)
        agents.append(_Agent(next(ids), [(-20, 0.75 * h, 0), (fx, fy, 30), (w * 0.8, 0.5 * h, 0),
                                         (w + 30, 0.45 * h, 0)], start=10))
    elif scenario == "person_on_ground":
        agents.append(_Agent(next(ids), [(-20, 0.7 * h, 0), (0.9 * w, 0.72 * h, 10 ** 6)],
                             start=10, speed=1.1, fall_at=80, leave=False))
    elif scenario == "abandoned_object":
        spot = (0.5 * w, 0.68 * h)
        owner = _Agent(next(ids), [(-20, 0.66 * h, 0), (*spot, 15), (w + 30, 0.5 * h, 0)], start=5)
        agents.append(owner)
        bags.append(_Agent(next(ids), [(spot[0] + 0.03 * w, spot[1] + 2, 0)], start=-1, cls="bag",
                           leave=False))
    elif scenario == "crowd_movement":
        cx, cy = 0.5 * w, 0.62 * h
        for k in range(16):
            ex, ey = _border_point(k / 15, w, h)
            gx = cx + rng.normal(0, 0.06 * w)
            gy = cy + rng.normal(0, 0.05 * h)
            # Arrive by about frame 90, stand until CROWD_DISPERSES, then run off the way they came.
            travel = np.hypot(gx - ex, gy - ey) / (_height(cy, h) / 1.7) / 1.4 * fps
            start = max(0, int(90 - travel - rng.uniform(0, 15)))
            agents.append(_Agent(next(ids), [(ex, ey, 0), (gx, gy, 10 ** 6), (ex, ey, 0)],
                                 start=start, speed=1.4, run_from=CROWD_DISPERSES))
    elif scenario == "excessive_density":
        for k in range(26):
            stay = [(*inside("plaza", 0.1), int(rng.integers(10, 40))) for _ in range(4)]
            side = -25 if k % 2 else w + 25
            agents.append(_Agent(next(ids), [(side, float(rng.uniform(0.45, 0.9)) * h, 0)] + stay
                                 + [(w + 30 - side, float(rng.uniform(0.45, 0.9)) * h, 0)],
                                 start=int(rng.integers(0, 50)), speed=float(rng.uniform(1.0, 1.5))))
    elif scenario == "repeated_presence":
        look = _look(rng, bright=True)
        person = RETURNING_PERSON
        start = 5
        for k in range(4):
            a, b = ((-20, 0.55 * h), (0.35 * w, h + 40)) if k % 2 == 0 else ((0.35 * w, h + 40), (-20, 0.55 * h))
            agents.append(_Agent(next(ids), [(*a, 0), (*b, 0)], start=start, person_id=person,
                                 look=look, speed=1.6))
            start += 70
    elif scenario == "fire":
        pass
    for a in agents:
        if a.person_id is None:
            a.person_id = a.track_id
    return agents, bags


def _passers_by(rng, ids, n, w, h, rate):
    """People walking with the flow (left to right), entering at random frames."""
    agents = []
    f = int(rng.integers(0, 10))
    while rate and f < n:
        y0 = float(rng.uniform(0.36, 0.97)) * h
        y1 = float(np.clip(y0 + rng.normal(0, 0.06 * h), 0.34 * h, 0.98 * h))
        agents.append(_Agent(next(ids), [(-25, y0, 0), (w + 25, y1, 0)], start=f,
                             speed=float(rng.uniform(1.1, 1.5))))
        f += int(rng.exponential(1 / rate)) + 3
    return agents


# =========================================================================== motion


def _border_point(t: float, w: int, h: int) -> tuple[float, float]:
    """A point just off the image along left, bottom, right edges, for ``t`` in 0..1."""
    left, bottom = 0.6 * h, w
    d = t * (2 * left + bottom)
    if d < left:
        return -30.0, 0.4 * h + d
    if d < left + bottom:
        return d - left, h + 45.0
    return w + 30.0, h - (d - left - bottom)


def _height(y, h):
    """Apparent height in pixels of a person whose feet are at image row ``y``."""
    return h * (0.10 + 0.16 * np.clip(y, 0, h) / h)


#: The scripted street's camera: how high it hangs and how wide it sees (horizontal field of view).
CAMERA_HEIGHT_M = 1.7 / 0.16
CAMERA_HFOV_DEG = 45.0


def ground_points(size=(480, 360)) -> list[dict]:
    """Image/ground point pairs (pixels, metres) of the camera that ``_height``'s perspective implies.

    A person 1.7 m tall standing at row ``y`` is ``_height(y)`` pixels tall:
    that is a pinhole camera ``CAMERA_HEIGHT_M`` above a flat street whose
    horizon is at row ``-0.625 h`` (above the image), so a row maps to a
    distance ``f * height / (y - horizon)`` ahead and a column to
    ``(x - w / 2) * distance / f`` to the right, with the focal length ``f``
    set by ``CAMERA_HFOV_DEG``. Across a row this gives ``_height(y) / 1.7``
    pixels per metre, the scale ``scene_for`` declares. The ground frame is
    the camera's foot (y along its view, x to its right): the pairs are the
    ``ground.points`` of ``safecity.config.cameras``.
    """
    w, h = size
    horizon = -0.625 * h
    focal = (w / 2) / np.tan(np.radians(CAMERA_HFOV_DEG / 2))
    pairs = []
    for x, y in ((0, h), (w, h), (w, 0), (0, 0)):
        ahead = focal * CAMERA_HEIGHT_M / (y - horizon)
        pairs.append({"image": [float(x), float(y)],
                      "ground": [round(float((x - w / 2) * ahead / focal), 3), round(float(ahead), 3)]})
    return pairs


def _move(a: _Agent, n: int, h: int, fps: int) -> None:
    """Walk the route frame by frame; fill ``pos`` (feet) and ``moving``."""
    a.pos = np.full((n, 2), np.nan)
    a.moving = np.zeros(n, bool)
    if a.cls == "bag":
        return
    x, y = a.route[0][:2]
    k, wait = 1, a.route[0][2]
    run_from = a.run_from
    for f in range(max(a.start, 0), n):
        if k >= len(a.route) and a.leave:
            break
        a.pos[f] = x, y
        if a.fall_at is not None and f >= a.fall_at:
            continue  # down and not getting up
        if wait > 0:
            wait -= 1
            if run_from is not None and f >= run_from:
                wait = 0
            continue
        if k >= len(a.route):
            continue
        speed = a.speed * (2.3 if run_from is not None and f >= run_from else 1.0)
        step = speed * _height(y, h) / 1.7 / fps
        tx, ty, tw = a.route[k]
        d = np.hypot(tx - x, ty - y)
        a.moving[f] = True
        if d <= step:
            x, y, wait, k = tx, ty, tw, k + 1
        else:
            x, y = x + step * (tx - x) / d, y + step * (ty - y) / d


def _set_down(bag: _Agent, owner: _Agent, scene: dict) -> None:
    """The owner drops the bag half a second after stopping and walks off without it."""
    moved = np.nonzero(owner.moving)[0]
    stopped = np.nonzero(~owner.moving & ~np.isnan(owner.pos[:, 0]))[0]
    stopped = stopped[stopped > moved[0]] if len(moved) else stopped[:0]
    if not len(stopped):  # the clip ends before the owner stops
        return
    drop, leave = int(stopped[0]) + 5, int(stopped[-1]) + 1
    owner.carry_until = drop
    bag.pos[drop:] = bag.route[0][:2]
    bag.person_id = bag.track_id
    bag.abandoned = leave + int(scene["abandon_limit_s"] * scene["fps"])


def _box(a: _Agent, f: int, h: int):
    x, y = a.pos[f]
    hp = _height(y, h)
    if a.cls == "bag":
        return x - 0.09 * hp, y - 0.16 * hp, 0.18 * hp, 0.16 * hp
    if a.fall_at is not None and f >= a.fall_at:
        return x - 0.5 * hp, y - 0.28 * hp, 1.0 * hp, 0.3 * hp
    return x - 0.2 * hp, y - hp, 0.4 * hp, hp


def _tracks(agents, bags, n, w, h) -> pd.DataFrame:
    rows = []
    for a in agents + bags:
        for f in np.nonzero(~np.isnan(a.pos[:, 0]))[0]:
            bx, by, bw, bh = _box(a, f, h)
            x0, y0 = max(bx, 0), max(by, 0)
            x1, y1 = min(bx + bw, w), min(by + bh, h)
            if (x1 - x0) * (y1 - y0) >= 0.3 * bw * bh and x1 > x0 and y1 > y0:
                rows.append((int(f), a.track_id, a.person_id, round(x0, 1), round(y0, 1),
                             round(x1 - x0, 1), round(y1 - y0, 1), a.cls))
    tracks = pd.DataFrame(rows, columns=["frame", "track_id", "person_id", "x", "y", "w", "h", "cls"])
    return tracks.sort_values(["frame", "track_id"], ignore_index=True)


# =========================================================================== truth


def _truth(scenario, agents, bags, tracks, scene, n) -> pd.DataFrame:
    """The scripted events, measured on the rendered motion (not on the script's intentions).

    Loitering and an abandoned bag start once their limit has passed, since
    only then is the situation what the law names; the others start when they
    begin. An event the clip is too short to show is left out.
    """
    fps = scene["fps"]
    zones = {k: shapely.Polygon(v) for k, v in scene["zones"].items()}
    rows = []
    actor = agents[-1] if agents else None

    def add(kind, start, end, ids, zone):
        if start <= min(end, n - 1):
            rows.append((kind, int(start), int(min(end, n - 1)), json.dumps([int(i) for i in ids]), zone))

    def frames_in(a, zone):
        ok = ~np.isnan(a.pos[:, 0])
        inside = np.zeros(n, bool)
        inside[ok] = shapely.contains_xy(zones[zone], a.pos[ok, 0], a.pos[ok, 1])
        return np.nonzero(inside)[0]

    def visible(a):
        return tracks.loc[tracks["track_id"] == a.track_id, "frame"].to_numpy()

    if scenario == "loitering":
        f = frames_in(actor, "plaza")
        if len(f):
            add("loitering", f[0] + int(scene["loitering_limit_s"] * fps), f[-1], [actor.track_id], "plaza")
    elif scenario == "wrong_way":
        f = visible(actor)
        if len(f):
            add("wrong_way", f[0], f[-1], [actor.track_id], "main")
    elif scenario == "forbidden_zone":
        f = frames_in(actor, "forbidden")
        if len(f):
            add("forbidden_zone", f[0], f[-1], [actor.track_id], "forbidden")
    elif scenario == "person_on_ground":
        add("person_on_ground", actor.fall_at, n - 1, [actor.track_id], "main")
    elif scenario == "abandoned_object":
        bag = bags[0]
        if bag.abandoned is not None:
            add("abandoned_object", bag.abandoned, n - 1, [bag.track_id, actor.track_id], "main")
    elif scenario == "crowd_movement":
        ids = [a.track_id for a in agents]
        moving = [np.nonzero(a.moving)[0] for a in agents]
        if all(len(m) and m[0] < CROWD_DISPERSES for m in moving):
            first = min(int(m[0]) for m in moving)
            arrived = max(int(m[m < CROWD_DISPERSES][-1]) for m in moving)
            gone = max(int(np.nonzero(~np.isnan(a.pos[:, 0]))[0][-1]) for a in agents)
            add("crowd_movement", first, arrived, ids, "main")
            add("crowd_movement", CROWD_DISPERSES, gone, ids, "main")
    elif scenario == "excessive_density":
        count = np.zeros(n, int)
        who = set()
        for a in agents:
            f = frames_in(a, "plaza")
            count[f] += 1
            who |= {a.track_id} if len(f) else set()
        over = np.nonzero(count > scene["max_people"]["plaza"])[0]
        if len(over):
            add("excessive_density", over[0], over[-1], sorted(who), "plaza")
    elif scenario == "repeated_presence":
        visits = [a for a in agents if a.person_id == RETURNING_PERSON]
        spans = [v for v in (visible(a) for a in visits) if len(v)]
        k = scene["repeat_count"] - 1
        if len(spans) > k:
            add("repeated_presence", spans[k][0], spans[-1][-1], [a.track_id for a in visits], "main")
    elif scenario == "fire":
        add("fire", FIRE_STARTS, n - 1, [], "main")
    return pd.DataFrame(rows, columns=["kind", "start_frame", "end_frame", "track_ids", "zone"])


# =========================================================================== drawing


def _look(rng, bright=False) -> tuple:
    top = (0, 200, 255) if bright else _CLOTHES[int(rng.integers(len(_CLOTHES)))]
    bottom = _CLOTHES[int(rng.integers(len(_CLOTHES)))]
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    hair = (20, 20, 20) if rng.random() < 0.6 else (40, 80, 130)
    return top, bottom, skin, hair, float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.9, 1.1))


def _draw(img, a: _Agent, f: int, h: int) -> None:
    x, y = a.pos[f]
    top, bottom, skin, hair, phase, build = a.look
    hp = _height(y, h)

    def p(u, v):
        return int(round(u)), int(round(v))

    cv2.ellipse(img, p(x, y), p(0.22 * hp, 0.05 * hp), 0, 0, 360, (70, 72, 75), -1, cv2.LINE_AA)
    if a.cls == "bag":
        cv2.rectangle(img, p(x - 0.09 * hp, y - 0.16 * hp), p(x + 0.09 * hp, y), (25, 35, 60), -1)
        cv2.line(img, p(x - 0.05 * hp, y - 0.16 * hp), p(x, y - 0.22 * hp), (20, 20, 20), 1)
        cv2.line(img, p(x, y - 0.22 * hp), p(x + 0.05 * hp, y - 0.16 * hp), (20, 20, 20), 1)
        return
    if a.fall_at is not None and f >= a.fall_at:
        t = min(1.0, (f - a.fall_at) / 5)  # tipping over takes half a second
        centre = p(x + 0.25 * hp * t, y - 0.5 * hp * (1 - t) - 0.12 * hp * t)
        axes = p(0.42 * hp * build, 0.12 * hp)
        cv2.ellipse(img, centre, axes, 90 * (1 - t), 0, 360, top, -1, cv2.LINE_AA)
        cv2.ellipse(img, p(x - 0.05 * hp * t, y - 0.25 * hp * (1 - t) - 0.06 * hp * t),
                    p(0.2 * hp, 0.06 * hp), 90 * (1 - t), 0, 360, bottom, -1, cv2.LINE_AA)
        cv2.circle(img, p(x + 0.7 * hp * t, y - 0.9 * hp * (1 - t) - 0.12 * hp * t),
                   max(2, int(0.085 * hp)), skin, -1, cv2.LINE_AA)
        return
    walk = phase + f * 0.9
    bob = 0.02 * hp * abs(np.sin(walk)) if a.moving[f] else 0.0
    swing = 0.08 * hp * np.sin(walk) if a.moving[f] else 0.0
    hip = y - 0.48 * hp - bob
    for s in (1, -1):
        cv2.line(img, p(x + 0.05 * s * hp, hip), p(x + s * swing, y), bottom, max(2, int(0.07 * hp)), cv2.LINE_AA)
    cv2.ellipse(img, p(x, y - 0.64 * hp - bob), p(0.17 * hp * build, 0.2 * hp), 0, 0, 360, top, -1, cv2.LINE_AA)
    arm = 0.06 * hp * np.sin(walk + np.pi) if a.moving[f] else 0.0
    for s in (1, -1):
        cv2.line(img, p(x + 0.15 * s * hp, y - 0.78 * hp - bob),
                 p(x + 0.17 * s * hp + s * arm, y - 0.5 * hp - bob), top, max(2, int(0.05 * hp)),
                 cv2.LINE_AA)
    if a.carry_until is not None and f < a.carry_until:
        cv2.rectangle(img, p(x + 0.16 * hp, y - 0.5 * hp - bob), p(x + 0.32 * hp, y - 0.34 * hp - bob),
                      (25, 35, 60), -1)
    head = p(x, y - 0.9 * hp - bob)
    cv2.circle(img, head, max(2, int(0.085 * hp)), skin, -1, cv2.LINE_AA)
    cv2.ellipse(img, p(x, y - 0.93 * hp - bob), p(0.085 * hp, 0.05 * hp), 0, 180, 360, hair, -1, cv2.LINE_AA)


def _draw_fire(img, region, age, rng) -> None:
    (x0, y0), _, (x1, y1), _ = region
    cx, base = (x0 + x1) / 2, y1
    grow = min(1.0, 0.2 + age / 30)
    overlay = img.copy()
    for k in range(6):  # smoke rising and widening
        sy = base - (k * 14 + (age * 2) % 14) * grow - 20
        r = int((8 + 4 * k) * grow)
        cv2.circle(overlay, (int(cx + rng.normal(0, 3) + 3 * k), int(sy)), r, (110, 110, 115), -1, cv2.LINE_AA)
    cv2.addWeighted(overlay, 0.45, img, 0.55, 0, dst=img)
    for k in range(7):  # flames flicker: random tongues every frame
        fx = int(cx + rng.normal(0, 8 * grow))
        fh = int(rng.uniform(12, 30) * grow)
        colour = [(0, 90, 255), (0, 160, 255), (40, 220, 255)][k % 3]
        cv2.ellipse(img, (fx, int(base - fh / 2)), (max(2, int(6 * grow)), max(3, fh // 2)),
                    0, 0, 360, colour, -1, cv2.LINE_AA)


def _background(rng, w, h, scene) -> np.ndarray:
    """A street: a facade with windows and a door, a kerb, paving, a hatched restricted area."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (128, 132, 136)
    texture = cv2.GaussianBlur(rng.normal(0, 14, (h, w)).astype(np.float32), (5, 5), 0)
    img = np.clip(img + texture[..., None], 0, 255).astype(np.uint8)
    top = int(0.26 * h)
    img[:top] = (110, 150, 185)
    for wx in range(int(0.04 * w), w - 20, int(0.12 * w)):
        cv2.rectangle(img, (wx, int(0.04 * h)), (wx + int(0.06 * w), int(0.14 * h)), (90, 70, 50), -1)
    cv2.rectangle(img, (int(0.46 * w), int(0.12 * h)), (int(0.54 * w), top), (40, 50, 70), -1)
    cv2.line(img, (0, top), (w, top), (80, 80, 80), 3)
    for y in np.geomspace(top + 6, h, 9):  # paving joints, closer together far away
        cv2.line(img, (0, int(y)), (w, int(y)), (105, 108, 112), 1)
    for x in range(0, w + 1, int(0.1 * w)):
        cv2.line(img, (w // 2 + (x - w // 2) // 3, top), (x, h), (105, 108, 112), 1)
    zone = np.array(scene["zones"]["forbidden"], np.int32)
    stripes = img.copy()
    cv2.fillPoly(stripes, [zone], (70, 85, 95))
    for k in range(-h, w, 16):
        cv2.line(stripes, (k, h), (k + h, 0), (0, 190, 230), 2)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [zone], 255)
    img[mask > 0] = stripes[mask > 0]
    cv2.polylines(img, [zone], True, (0, 200, 240), 2)
    return img
