"""An installation's cameras, declared in one YAML file and validated at start-up.

Adding a camera, drawing a zone or changing a loitering limit is a change of
data, not code: the file lists every camera with its source, zones (polygons
in image pixels), limits, image-to-ground mapping and privacy settings. A
mistake stops the start with a message naming the file, the camera and the
field (``cameras.yml: camera 'cam-3': zones.plaza: a polygon needs at least 3
points``) instead of surfacing hours later as a detector that never fires.

``CameraConfig.scene()`` hands the stages the same plain dict as
``safecity.sim.clips.scene_for``, so every detector runs unchanged on a
real camera or on a scripted clip. The ground mapping is a homography from
image pixels to metres on a local ground frame (``x`` then ``y``, with ``y``
pointing at compass bearing ``bearing_deg`` and ``x`` 90 degrees clockwise of
it: east and north when the bearing is 0), placed on the map by an ``origin``
lon/lat. Without a homography, ``pixels_per_metre`` gives a flat scale (the
ground frame is then the image seen from above, ``y`` up the image).
"""
from __future__ import annotations

import difflib
import itertools
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import cv2
import numpy as np
import shapely
import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr,
                      ValidationError, ValidationInfo, field_validator, model_validator)

from safecity.config.event_kinds import CAMERA_KINDS, DEFAULT_CAMERA_KINDS
from safecity.config.addresses import redact, source_kind

#: A complete installation file to copy from (shipped with the package).
EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "cameras.example.yml"

_M_PER_DEG_LAT = 110_574.0  # as safecity.data.geo, so distances agree with geo.distance_m
_M_PER_DEG_LON_EQUATOR = 111_320.0


class ConfigError(ValueError):
    """A camera configuration that cannot be used; the message names file, camera and field."""


# =========================================================================== field types


def _point(value) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"a point is [x, y], got {value!r}")
    x, y = (float(v) for v in value)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"a point needs finite coordinates, got {value!r}")
    return x, y


def _polygon(points: list) -> list[tuple[float, float]]:
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
    shape = shapely.Polygon(points)
    if not shape.is_valid:
        raise ValueError(f"the polygon crosses itself ({shapely.is_valid_reason(shape)}); "
                         "list its points in order around the edge")
    if shape.area <= 0:
        raise ValueError("the polygon has no area (its points are on one line)")
    return [tuple(p) for p in points]


def _direction(value) -> tuple[float, float]:
    """An angle in degrees (clockwise from the image's +x, as y points down) or a vector, made unit."""
    if isinstance(value, bool):
        raise ValueError(f"a direction is an angle in degrees or a vector [dx, dy], got {value!r}")
    if isinstance(value, (int, float)):
        a = math.radians(float(value))
        return round(math.cos(a), 12), round(math.sin(a), 12)
    dx, dy = _point(value)
    norm = math.hypot(dx, dy)
    if norm == 0:
        raise ValueError("a direction vector cannot be [0, 0]")
    return dx / norm, dy / norm


def _source(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise ValueError(f"a source is a file, a folder, a stream URL or a device number, got {value!r}")
    return str(value).strip()


def _line(points: list) -> list[tuple[float, float]]:
    if len(points) != 2:
        raise ValueError(f"a line is two points [[x1, y1], [x2, y2]], got {len(points)} point(s)")
    if tuple(points[0]) == tuple(points[1]):
        raise ValueError("a line's two points are the same point")
    return [tuple(p) for p in points]


Point = Annotated[tuple[float, float], BeforeValidator(_point)]
Polygon = Annotated[list[Point], AfterValidator(_polygon)]
Line = Annotated[list[Point], AfterValidator(_line)]
Direction = Annotated[tuple[float, float], BeforeValidator(_direction)]
ZoneName = Annotated[str, Field(min_length=1)]


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt ``loitering_limt_s`` must not fall back to a default."""

    model_config = ConfigDict(extra="forbid")


# =========================================================================== sections


class LonLat(_Strict):
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)


class PointPair(_Strict):
    """One calibration point: where a ground mark is in the image, and in metres on the ground."""

    image: Point
    ground: Point


class GroundMapping(_Strict):
    """Image pixels to ground metres (a homography), and ground metres to lon/lat."""

    points: list[PointPair] | None = None
    matrix: list[list[float]] | None = None
    origin: LonLat | None = None
    bearing_deg: float = 0.0
    _homography: np.ndarray | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _fit(self):
        if self.points is not None and self.matrix is not None:
            raise ValueError("give either points or matrix, not both")
        if self.points is not None:
            self._homography = _fit_homography(self.points)
        elif self.matrix is not None:
            m = np.asarray(self.matrix, float)
            if m.shape != (3, 3) or not np.isfinite(m).all():
                raise ValueError(f"matrix: a homography is a 3x3 matrix of numbers, got shape {m.shape}")
            if abs(np.linalg.det(m / np.abs(m).max())) < 1e-12:
                raise ValueError("matrix: the homography is degenerate (its determinant is 0)")
            self._homography = m
        return self

    @property
    def homography(self) -> np.ndarray | None:
        """The 3x3 image-to-ground matrix, or None when only an origin is given."""
        return self._homography


def _fit_homography(pairs: list[PointPair]) -> np.ndarray:
    if len(pairs) < 4:
        raise ValueError(f"points: a homography needs at least 4 image/ground point pairs, got {len(pairs)}")
    image = np.array([p.image for p in pairs], float)
    ground = np.array([p.ground for p in pairs], float)
    for name, pts in (("image", image), ("ground", ground)):
        if not _in_general_position(pts):
            raise ValueError(f"points: the {name} points are degenerate: a homography needs 4 of them "
                             "with no 3 on one line")
    h, _ = cv2.findHomography(image, ground, 0)
    if h is None or not np.isfinite(h).all() or abs(np.linalg.det(h / np.abs(h).max())) < 1e-12:
        raise ValueError("points: no homography fits these point pairs (degenerate)")
    return h


def _in_general_position(pts: np.ndarray) -> bool:
    """True if some 4 of the points have no 3 on a line (up to 1e-6 of their spread)."""
    scale = float(np.ptp(pts, axis=0).max()) or 1.0
    tol = 1e-6 * scale**2

    def area2(a, b, c):
        return abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    for quad in itertools.islice(itertools.combinations(pts, 4), 2000):
        if all(area2(*tri) > tol for tri in itertools.combinations(quad, 3)):
            return True
    return False


class Privacy(_Strict):
    """Blur people in every frame that leaves the pipeline, unless a stated (and audited) reason says otherwise."""

    blur: bool = True
    reason: Annotated[str, BeforeValidator(lambda v: "" if v is None else v)] = ""

    @model_validator(mode="after")
    def _reason_to_unblur(self):
        self.reason = self.reason.strip()
        if not self.blur and not self.reason:
            raise ValueError("blur is false but no reason is given: turning the blur off needs a "
                             "stated reason (it is audited)")
        return self


class RepeatedPresence(_Strict):
    """Opt-in: the same anonymous person back ``count`` times within ``window_s`` (signatures kept ``ttl_s``)."""

    enabled: bool = False
    ttl_s: float = Field(86_400.0, gt=0)
    count: int = Field(3, ge=2)
    window_s: float = Field(3_600.0, gt=0)


class OnnxPlugin(_Strict):
    """A user's own detection model, run through ``cv2.dnn`` (the only way to detect weapons)."""

    path: Path
    kind: str = Field("person", min_length=1)
    input_size: tuple[int, int] = (640, 640)
    classes: list[str] = Field(default_factory=lambda: ["person"], min_length=1)
    confidence: float = Field(0.4, gt=0, le=1)

    @field_validator("path")
    @classmethod
    def _exists(cls, path: Path, info: ValidationInfo) -> Path:
        if path.suffix.lower() != ".onnx":
            raise ValueError(f"{path}: a plug-in model is an .onnx file")
        path = _resolve(path, info)
        if not path.is_file():
            raise ValueError(f"{path}: no such model file")
        return path

    @field_validator("input_size")
    @classmethod
    def _positive(cls, size):
        if min(size) <= 0:
            raise ValueError(f"input_size is [width, height] in pixels, got {list(size)}")
        return size


class HealthChecks(_Strict):
    """The camera's own health events (``safecity.video.health``): a picture unchanged for
    ``frozen_s``, a covered lens or a moved camera lasting ``tampered_s``."""

    enabled: bool = True
    frozen_s: float = Field(10.0, gt=0)
    tampered_s: float = Field(3.0, gt=0)


# =========================================================================== camera


class CameraConfig(_Strict):
    """One camera: where its frames come from and what to watch for in them.

    ``fps`` is the rate frames are analysed at (a faster camera is thinned to
    it; a folder of images is taken to be at this rate). Limits are in
    seconds, people, or people per square metre; ``zones`` are polygons in
    image pixels; ``flow`` gives each corridor zone its expected direction of
    movement (an angle in degrees clockwise from the image's +x, or a vector).
    ``lines`` are counting lines, each two image points ``[[x1, y1], [x2, y2]]``
    directed from the first to the second: a person whose feet cross it from the
    line's right-hand side to its left-hand side (as seen on the screen, looking
    from the first point to the second) goes *in*, the other way *out*.
    ``health`` sets the frozen and tampered checks.
    """

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    source: Annotated[str, BeforeValidator(_source)]
    fps: float = Field(gt=0, le=1000)
    start: datetime | None = None
    position: LonLat | None = None
    size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None = None
    zones: dict[ZoneName, Polygon] = Field(default_factory=dict)
    lines: dict[ZoneName, Line] = Field(default_factory=dict)
    forbidden_zones: list[str] = Field(default_factory=list)
    flow: dict[str, Direction] = Field(default_factory=dict)
    loitering_limit_s: float = Field(60.0, gt=0)
    abandon_limit_s: float = Field(30.0, gt=0)
    density_limit_per_m2: float = Field(4.0, gt=0)
    max_people: dict[str, Annotated[int, Field(gt=0)]] = Field(default_factory=dict)
    fire_region: Polygon | None = None
    pixels_per_metre: float | None = Field(None, gt=0)
    ground: GroundMapping | None = None
    privacy: Privacy = Field(default_factory=Privacy)
    health: HealthChecks = Field(default_factory=HealthChecks)
    repeated_presence: RepeatedPresence = Field(default_factory=RepeatedPresence)
    detectors: list[Literal[CAMERA_KINDS]] = Field(default_factory=lambda: list(DEFAULT_CAMERA_KINDS))
    plugins: list[OnnxPlugin] = Field(default_factory=list)

    def __repr_args__(self):
        """The source without its credentials: a repr lands in logs (a Dask worker logs a failed task's arguments)."""
        for name, value in super().__repr_args__():
            yield name, redact(value) if name == "source" and isinstance(value, str) else value

    @field_validator("source")
    @classmethod
    def _source_exists(cls, source: str, info: ValidationInfo) -> str:
        try:
            kind = source_kind(source)
        except FileNotFoundError:
            kind = None
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if kind in ("device", "stream"):
            return source
        path = _resolve(Path(source), info)
        if not path.exists():
            raise ValueError(f"{path}: no such video file or folder of frames")
        return str(path)

    @model_validator(mode="after")
    def _consistent(self):
        zones = set(self.zones)
        known = ", ".join(sorted(zones)) or "none declared"
        for field, names in (("forbidden_zones", self.forbidden_zones), ("flow", self.flow),
                             ("max_people", self.max_people)):
            for name in names:
                if name not in zones:
                    raise ValueError(f"{field}: '{name}' is not one of the zones ({known})")
        for name in self.lines:
            if name in zones:  # both would be the observations' sensor "camera:name"
                raise ValueError(f"lines.{name}: a zone has the same name; give the line another")
        if self.size is not None:
            w, h = self.size
            shapes = [*((f"zones.{n}", p) for n, p in self.zones.items()),
                      *((f"lines.{n}", p) for n, p in self.lines.items()),
                      *([("fire_region", self.fire_region)] if self.fire_region else [])]
            for where, poly in shapes:
                for x, y in poly:
                    if not (0 <= x <= w and 0 <= y <= h):
                        raise ValueError(f"{where}: point ({x:g}, {y:g}) is outside the {w}x{h} image")
        if self.ground is not None and self.ground.homography is None and self.pixels_per_metre is None:
            raise ValueError("ground: give points or matrix (a homography), or a pixels_per_metre scale "
                             "beside the origin")
        if "excessive_density" in self.detectors and self._scale() is None:
            raise ValueError("detectors: excessive_density needs square metres: give ground.points, "
                             "ground.matrix or pixels_per_metre")
        if "repeated_presence" in self.detectors and not self.repeated_presence.enabled:
            raise ValueError("detectors: repeated_presence is opt-in: set repeated_presence.enabled: true")
        if "weapon" in self.detectors and not any(p.kind.startswith("weapon") for p in self.plugins):
            raise ValueError("detectors: weapon detection needs a plug-in model of kind 'weapon' "
                             "(none ships with safecity)")
        return self

    # ----------------------------------------------------------------- for the stages

    @property
    def homography(self) -> np.ndarray | None:
        """Image pixels to ground metres (3x3), if the camera is calibrated with one."""
        return None if self.ground is None else self.ground.homography

    @property
    def enabled_detectors(self) -> list[str]:
        """The event kinds this camera reports (repeated presence joins when enabled)."""
        kinds = list(self.detectors)
        if self.repeated_presence.enabled and "repeated_presence" not in kinds:
            kinds.append("repeated_presence")
        return kinds

    def scene(self) -> dict:
        """The settings as the stages take them: the keys and shapes of ``synthetic_video.scene_for``.

        Added beside those: ``camera_id``, ``source``, ``homography`` (3x3
        list or None), ``flow_zone`` and ``flows`` (every corridor's unit
        vector; ``flow_direction`` is the first one), ``repeat_enabled``,
        ``repeat_ttl_s``, ``repeated_presence`` (the section as a dict),
        ``privacy``, ``detectors``, ``plugins``, ``position`` and ``lon``,
        ``lat`` (the camera's, or None), ``start``. ``size`` is present only
        when declared.
        """
        flows = {name: list(vec) for name, vec in self.flow.items()}
        first = next(iter(flows), None)
        h = self.homography
        scene = {
            "camera_id": self.id,
            "source": self.source,
            "fps": self.fps,
            "zones": {name: [list(p) for p in poly] for name, poly in self.zones.items()},
            "lines": {name: [list(p) for p in line] for name, line in self.lines.items()},
            "health": self.health.model_dump(),
            "forbidden_zones": list(self.forbidden_zones),
            "flow_direction": flows[first] if first else None,
            "flow_zone": first,
            "flows": flows,
            "loitering_limit_s": self.loitering_limit_s,
            "abandon_limit_s": self.abandon_limit_s,
            "repeat_count": self.repeated_presence.count,
            "repeat_window_s": self.repeated_presence.window_s,
            "repeat_enabled": self.repeated_presence.enabled,
            "repeat_ttl_s": self.repeated_presence.ttl_s,
            "repeated_presence": self.repeated_presence.model_dump(),
            "density_limit_per_m2": self.density_limit_per_m2,
            "max_people": dict(self.max_people),
            "pixels_per_metre": self._scale(),
            "homography": None if h is None else h.tolist(),
            "fire_region": None if self.fire_region is None else [list(p) for p in self.fire_region],
            "privacy": {"blur": self.privacy.blur, "reason": self.privacy.reason},
            "detectors": self.enabled_detectors,
            "plugins": [p.model_dump(mode="json") for p in self.plugins],
            "position": None if self.position is None else [self.position.lon, self.position.lat],
            "lon": None if self.position is None else self.position.lon,
            "lat": None if self.position is None else self.position.lat,
            "start": None if self.start is None else self.start.isoformat(),
        }
        if self.size is not None:
            scene["size"] = list(self.size)
        return scene

    @classmethod
    def from_scene(cls, scene: dict, id: str, source: str | int | os.PathLike) -> CameraConfig:
        """A camera for a scripted clip's ``scene`` (``synthetic_video.scene_for``).

        The synthetic street has one flow for the whole street; it goes to the
        first zone (``main``, the whole street).
        """
        data = {
            "id": id, "source": os.fspath(source) if isinstance(source, os.PathLike) else source,
            "fps": scene["fps"], "zones": scene.get("zones") or {},
            "forbidden_zones": scene.get("forbidden_zones") or [],
            "loitering_limit_s": scene.get("loitering_limit_s", 60.0),
            "abandon_limit_s": scene.get("abandon_limit_s", 30.0),
            "density_limit_per_m2": scene.get("density_limit_per_m2", 4.0),
            "max_people": scene.get("max_people") or {},
            "pixels_per_metre": scene.get("pixels_per_metre"),
            "fire_region": scene.get("fire_region"),
            "repeated_presence": scene.get("repeated_presence") or {
                "enabled": bool(scene.get("repeat_enabled", False)),
                "ttl_s": scene.get("repeat_ttl_s", 86_400.0),
                "count": scene.get("repeat_count", 3),
                "window_s": scene.get("repeat_window_s", 3_600.0)},
        }
        if scene.get("size") is not None:
            data["size"] = scene["size"]
        if scene.get("flows"):
            data["flow"] = scene["flows"]
        elif scene.get("flow_direction") is not None:
            zone = scene.get("flow_zone") or next(iter(data["zones"]), None)
            if zone is None:
                raise ValueError(f"camera '{id}': the scene has a flow_direction but no zone to give it to")
            data["flow"] = {zone: scene["flow_direction"]}
        if scene.get("homography") is not None:
            data["ground"] = {"matrix": scene["homography"]}
        for key in ("privacy", "detectors", "plugins", "start", "lines", "health"):
            if scene.get(key) is not None:
                data[key] = scene[key]
        if scene.get("position") is not None:
            data["position"] = dict(zip(("lon", "lat"), scene["position"]))
        return cls.model_validate(data)

    def image_to_ground(self, points) -> np.ndarray:
        """Image points (n x 2 pixels) to ground metres (n x 2), by the homography or the flat scale."""
        pts = np.asarray(points, float).reshape(-1, 2)
        if self.homography is not None:
            return cv2.perspectiveTransform(pts[None], self.homography)[0]
        if self.pixels_per_metre is None:
            raise ValueError(f"camera '{self.id}': no ground mapping (give ground.points, ground.matrix "
                             "or pixels_per_metre)")
        return np.c_[pts[:, 0], -pts[:, 1]] / self.pixels_per_metre

    def image_to_lonlat(self, points) -> np.ndarray:
        """Image points (n x 2 pixels) to lon/lat (n x 2), through the ground frame and its origin."""
        if self.ground is None or self.ground.origin is None:
            raise ValueError(f"camera '{self.id}': image_to_lonlat needs ground.origin (lon, lat)")
        return self._east_north_to_lonlat(self._ground_to_east_north(self.image_to_ground(points)))

    def field_of_view(self, max_range_m: float = 60.0) -> shapely.Polygon:
        """The ground the camera sees, in lon/lat: its image mapped onto the map, cut at ``max_range_m``.

        The image rectangle (``size``, else the calibration points' extent) is
        cut below the horizon (where the homography sends rows to infinity),
        mapped to the ground (a homography keeps lines straight, so the corners
        suffice) and cut to a disc of ``max_range_m`` around the camera
        (``position``, else the ground origin): a quadrilateral, or a fan when
        the view reaches farther than the range. Empty when nothing it sees lies
        within range. A camera with no ground mapping or no origin is a
        ``ValueError`` naming it: it cannot be drawn on a map.
        """
        if not (max_range_m > 0 and math.isfinite(max_range_m)):
            raise ValueError(f"max_range_m must be a positive number of metres, got {max_range_m!r}")
        if self.ground is None or self.ground.origin is None:
            raise ValueError(f"camera '{self.id}': no field of view without a ground mapping placed "
                             "on the map (ground.points or ground.matrix, and ground.origin)")
        corners = self._image_corners()
        h = self.homography
        if h is not None:
            corners = _below_horizon(corners, h, self.id)
        if corners.shape[0] < 3:
            return shapely.Polygon()
        seen = shapely.Polygon(self._ground_to_east_north(self.image_to_ground(corners)))
        at = self.position or self.ground.origin
        centre = self._lonlat_to_east_north(at.lon, at.lat)
        reach = shapely.Point(centre).buffer(max_range_m, quad_segs=16)
        area = shapely.make_valid(seen).intersection(reach)
        if area.is_empty or not isinstance(area, shapely.Polygon):
            area = max(getattr(area, "geoms", []), key=lambda g: g.area, default=shapely.Polygon())
            if not isinstance(area, shapely.Polygon) or area.is_empty:
                return shapely.Polygon()
        return shapely.Polygon(self._east_north_to_lonlat(np.asarray(area.exterior.coords)))

    def _image_corners(self) -> np.ndarray:
        """The image's corners (pixels), clockwise from the top left as y points down."""
        if self.size is not None:
            x0, y0, (x1, y1) = 0.0, 0.0, self.size
        elif self.ground is not None and self.ground.points:
            pts = np.array([p.image for p in self.ground.points], float)
            (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        else:
            raise ValueError(f"camera '{self.id}': a field of view needs the image size (size: "
                             "[width, height]) or ground.points to span the image")
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)

    def _ground_to_east_north(self, xy: np.ndarray) -> np.ndarray:
        """Ground-frame metres (x right of the bearing, y along it) to metres east/north of the origin."""
        x, y = np.asarray(xy, float).reshape(-1, 2).T
        b = math.radians(self.ground.bearing_deg)
        return np.c_[x * math.cos(b) + y * math.sin(b), -x * math.sin(b) + y * math.cos(b)]

    def _east_north_to_lonlat(self, en: np.ndarray) -> np.ndarray:
        east, north = np.asarray(en, float).reshape(-1, 2).T
        lon0, lat0 = self.ground.origin.lon, self.ground.origin.lat
        lon = lon0 + east / (_M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat0)))
        return np.c_[lon, lat0 + north / _M_PER_DEG_LAT]

    def _lonlat_to_east_north(self, lon: float, lat: float) -> tuple[float, float]:
        lon0, lat0 = self.ground.origin.lon, self.ground.origin.lat
        return ((lon - lon0) * _M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat0)),
                (lat - lat0) * _M_PER_DEG_LAT)

    def _scale(self) -> float | None:
        """Pixels per metre: declared, or the homography's local scale at the image centre."""
        if self.pixels_per_metre is not None:
            return self.pixels_per_metre
        h = self.homography
        if h is None:
            return None
        if self.size is not None:
            at = np.array(self.size, float) / 2
        elif self.ground.points:
            at = np.mean([p.image for p in self.ground.points], axis=0)
        else:
            at = np.zeros(2)
        p = cv2.perspectiveTransform(np.array([[at, at + (1, 0), at + (0, 1)]], float), h)[0]
        (ax, ay), (bx, by) = p[1] - p[0], p[2] - p[0]
        area = abs(ax * by - ay * bx)  # square metres covered by one pixel
        return round(float(1 / math.sqrt(area)), 3) if area > 0 else None


def _below_horizon(corners: np.ndarray, h: np.ndarray, camera_id: str) -> np.ndarray:
    """The part of an image polygon that shows the ground: where the homography's scale ``w``
    has the sign it has at the middle of the bottom edge, kept a little short of the horizon
    (``w`` = 0, the ground at infinity) so that every point maps to a finite place."""
    bottom = np.array([corners[:, 0].mean(), corners[:, 1].max(), 1.0])
    def w_of(p: np.ndarray) -> np.ndarray:
        return p[..., 0] * h[2, 0] + p[..., 1] * h[2, 1] + h[2, 2]

    sign = np.sign(w_of(bottom))
    if sign == 0:
        raise ValueError(f"camera '{camera_id}': the bottom of the image maps to the horizon; "
                         "the ground mapping cannot be right")
    w = sign * w_of(corners)
    # 1/1000 of the largest scale: points there map 1000 times farther than the nearest ground
    floor = 1e-3 * w.max()
    kept = []
    for k in range(len(corners)):
        a, b = corners[k], corners[(k + 1) % len(corners)]
        wa, wb = w[k], w[(k + 1) % len(corners)]
        if wa >= floor:
            kept.append(a)
        if (wa - floor) * (wb - floor) < 0:
            kept.append(a + (floor - wa) / (wb - wa) * (b - a))
    return np.array(kept, float).reshape(-1, 2)


class Installation(_Strict):
    """Every camera of one installation (one YAML file)."""

    name: str | None = None
    cameras: list[CameraConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self):
        seen: dict[str, int] = {}
        for k, camera in enumerate(self.cameras):
            if camera.id in seen:
                raise ValueError(f"camera '{camera.id}': id: the same id is used by cameras "
                                 f"#{seen[camera.id] + 1} and #{k + 1}")
            seen[camera.id] = k
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise KeyError(f"no camera '{camera_id}' (cameras: {', '.join(c.id for c in self.cameras)})")


# =========================================================================== loading


def load_installation(path: str | os.PathLike) -> Installation:
    """Read and validate an installation file; relative paths in it are relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}); a cameras file is YAML "
                          "text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        # the parser's message may quote the offending line, a source URL with its password
        problem = redact(getattr(exc, "problem", None) or getattr(exc, "reason", None) or exc)
        raise ConfigError(f"{path}:{where} not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'cameras' list, got {type(raw).__name__}")
    try:
        return Installation.model_validate(raw, context={"base": path.resolve().parent})
    except ValidationError as exc:
        # pydantic echoes the values it rejects, and a source URL may carry a password
        raise ConfigError(redact("\n".join(_describe(e, raw, path) for e in exc.errors()))) from None


def load_cameras(path: str | os.PathLike) -> list[CameraConfig]:
    """The validated cameras of an installation file (``ConfigError`` names file, camera and field)."""
    return load_installation(path).cameras


def _describe(error: dict, raw: dict, path: Path) -> str:
    """One pydantic error as ``file: camera 'id': field.path: what is wrong``."""
    loc = list(error["loc"])
    prefix = str(path)
    if len(loc) >= 2 and loc[0] == "cameras" and isinstance(loc[1], int):
        cams = raw.get("cameras") or []
        item = cams[loc[1]] if loc[1] < len(cams) else None
        cam_id = item.get("id") if isinstance(item, dict) else None
        prefix += f": camera '{cam_id}'" if cam_id else f": camera #{loc[1] + 1}"
        loc = loc[2:]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    kind, msg = error["type"], error["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    elif kind == "extra_forbidden":
        msg = "unknown key" + _suggest(str(loc[-1]))
    elif kind == "missing":
        msg = "missing (required)"
    elif not isinstance(error.get("input"), (dict, list)) and len(repr(error.get("input"))) < 60:
        msg += f" (got {error['input']!r})"
    return f"{prefix}: {field}: {msg}" if field else f"{prefix}: {msg}"


def _suggest(key: str) -> str:
    names = [*CameraConfig.model_fields, *Installation.model_fields, *GroundMapping.model_fields,
             *Privacy.model_fields, *RepeatedPresence.model_fields, *OnnxPlugin.model_fields,
             *HealthChecks.model_fields]
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base") if info is not None else None
    path = path.expanduser()
    return path if path.is_absolute() or base is None else Path(base) / path
