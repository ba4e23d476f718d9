"""Intake drivers: read the real data sets as published and the demo store, as tidy tables.

``catalog.yml`` at the repository root names every data set; each entry uses one
of the small ``DataSource`` classes at the end of this module, and each class
only calls one plain ``read_*`` function. Notebooks and tests can call those
functions on a path directly::

    intake.open_catalog("catalog.yml")["melbourne_counts"].read()
    read_melbourne_counts("../shared/data/city/melbourne_pedestrians/pedestriancounts_melbourne.zip")

Where a data-model table fits (``schema.py``) the reader returns it validated:
Melbourne counts are ``observations``, Melbourne counters and Paris cameras are
``sensors``, Montgomery 911 calls and San Francisco gunshot alerts are
``events``. The other tables are documented here:

``responses`` (SF fire): one row per unit sent to a call.
    call_number, unit_id, unit_type (ENGINE, MEDIC, TRUCK, ...), call_type,
    priority (the published ``Priority`` code: "2", "3" or "E"), station_area
    (the first-due station's area as published, e.g. "03"),
    received, dispatched, response (unit en route), on_scene, available
    (UTC timestamps; response, on_scene and available may be NaT), lon, lat.
``zones`` (Marseille quartiers): ``geo.load_zones``'s shape: zone_id (a slug of
    the name), name, arrondissement (INSEE code 13201..13216), geometry
    (shapely, lon/lat), lon, lat (a point inside the zone).
``landmarks`` (Marseille monuments): name, lon, lat, kind (guessed from the
    name: religious, museum, culture, military, transport, maritime, sport,
    civic, residence, monument, else landmark), capacity (known venues only).
``frames`` (UCSD Ped2): split (training/testing), video ("01"..), frame
    (0-based index), frame_file, path, abnormal (1/0 for testing, NaN for
    training, where every frame is normal).
``frames`` (Mall): frame (1-based, as in the file names), frame_file, path, count.
``heads`` (Mall): frame_file, x, y (pixels of the 640x480 frame).
``video`` (PETS 2009): one row: path, fps, n_frames, width, height, codec.
``detections`` (PETS 2009): frame (1-based, MOTChallenge numbering), x, y, w,
    h (top-left corner and size, pixels of the 480x360 video), score.

Local times become UTC as follows (``local_to_utc``): a wall-clock time that
happens twice when clocks go back is taken as its first occurrence (summer
time); a time that never happens when clocks go forward is moved to the first
valid instant after it, except for Melbourne's hourly bins (see
``read_melbourne_counts``).

Real data is looked for under ``$SAFECITY_SHARED_DATA`` when set, else under
the ``root`` given by the catalog (``../shared/data`` beside the repository).
A missing file raises ``FileNotFoundError`` naming the path it expected.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from intake.source.base import DataSource, Schema

from safecity.config.city import DEFAULT_CITY, MELBOURNE
from safecity.data import geo
from safecity.data import schema

SHARED_DATA_ENV = "SAFECITY_SHARED_DATA"

#: Montgomery County, Pennsylvania, with a margin of about 10 km so that calls
#: in neighbouring townships (mutual aid) keep their position.
MONTGOMERY_BOUNDS = (-75.9, 39.9, -74.9, 40.6)  # lon_min, lat_min, lon_max, lat_max

#: Landmark kinds: a name gets the kind of the first pattern it matches.
_LANDMARK_KINDS = [
    ("religious", r"[ée]glise|cath[ée]drale|basilique|chapelle|abbaye|notre-dame|synagogue|"
                  r"temple|pagode|couvent|cimeti[èe]re|croix"),
    ("museum", r"mus[ée]e|mucem|palais longchamp|vieille charit[ée]|observatoire"),
    ("culture", r"th[ée][âa]tre|cin[ée]ma|biblioth[èe]que|friche|cit[ée] des arts|le d[ôo]me|"
                r"palais des arts|acad[ée]mie"),
    ("military", r"\bfort\b|caserne|tour sainte|ch[âa]teau d.if"),
    ("transport", r"\bgare\b"),
    ("maritime", r"phare|s[ée]maphore|mar[ée]graphe|consigne sanitaire"),
    ("sport", r"stade|omnisports"),
    ("civic", r"h[ôo]tel de ville|pr[ée]fecture|palais de justice|h[ôo]tel de r[ée]gion|"
              r"h[ôo]tel du d[ée]partement|h[ôo]tel des postes|h[ôo]pital|h[ôo]tel-dieu|"
              r"banque|bourse|p[ée]nitentiaire|lyc[ée]e"),
    ("residence", r"ch[âa]teau|villa|bastide|maison|immeuble|cit[ée] radieuse|h[ôo]tel de"),
    ("monument", r"monument|statue|ob[ée]lisque|\barc\b|fontaine|porte|pouce|arbre|pavillon|"
                 r"silo|halle|vestiges"),
]


# --------------------------------------------------------------------------- paths


def shared_path(relpath: str, root: str | os.PathLike | None = None) -> Path:
    """The path of ``relpath`` in the real-data folder; raise if it is not there.

    The folder is ``$SAFECITY_SHARED_DATA`` when set, else ``root``, else
    ``../shared/data`` beside the repository.
    """
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        base = Path(env)
    elif root is not None:
        base = Path(root)
    else:
        base = Path(__file__).resolve().parents[3] / "shared" / "data"
    path = base / relpath
    if not path.exists():
        raise FileNotFoundError(
            f"real data not found: expected {path.resolve()} ('{relpath}' under the shared "
            f"data folder {base.resolve()}). safecity looks for the real data sets under "
            f"../shared/data beside the repository, or under ${SHARED_DATA_ENV} when set."
        )
    return path.resolve()


def open_catalog(path: str | os.PathLike | None = None):
    """The project's ``catalog.yml`` (the one beside the package unless ``path`` is given).

    A notebook opens it this way from any folder, even the temporary one a test
    runs it in, and then asks for tables by name.
    """
    import intake

    return intake.open_catalog(str(path or Path(__file__).resolve().parents[2] / "catalog.yml"))


def read_if_present(catalog, name: str, **args) -> pd.DataFrame | None:
    """An entry's table, or ``None`` when its data is absent here (the reason is printed).

    ``args`` override the entry's arguments (e.g. ``data_dir`` of a demo store).
    Notebooks run on the built-in data alone and add each real data set that is
    there; an absent one is skipped and said so, never faked.
    """
    try:
        return (catalog[name](**args) if args else catalog[name]).read()
    except FileNotFoundError as err:
        print(f"skipped {name}: {err}")
        return None


def local_to_utc(local: pd.Series, tz: str, nonexistent: str = "shift_forward") -> pd.Series:
    """Naive wall-clock times in ``tz`` as UTC; the repeated hour is read as its first occurrence."""
    first = np.ones(len(local), dtype=bool)  # True = daylight-saving time, i.e. the earlier instant
    return local.dt.tz_localize(tz, ambiguous=first, nonexistent=nonexistent).dt.tz_convert("UTC")


def _json_records(frame: pd.DataFrame) -> list[str]:
    """One compact JSON object per row; null fields are left out."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [json.dumps({k: v for k, v in r.items() if v is not None}, ensure_ascii=False)
            for r in records]


# --------------------------------------------------------------------------- city


def read_melbourne_counts(zip_path: str | os.PathLike) -> pd.DataFrame:
    """Hourly pedestrian counts as ``observations`` (metric people_count, sensor melbourne-<id>).

    The published CSV has no header: date and time, day of week, hour, sensor
    id, sensor name, count. Its times are Melbourne wall-clock times, and ts
    is the start of the hour in UTC. On the April night when clocks go back
    the file holds one 02:00 bin per sensor; it is read as the first 02:00
    (summer time), so the UTC series has a one-hour hole there, not a
    duplicate. Until 2013 the file also holds a 02:00 bin on the October night
    when clocks skip 02:00 (18 rows, 2012-10-07); that hour does not exist
    and moving it would collide with the 03:00 bin, so those rows are dropped,
    as are the 14 rows with no count. Two rows with no sensor id get it from
    their sensor name.
    """
    raw = pd.read_csv(zip_path, header=None, usecols=[0, 3, 4, 5],
                      names=["when", "id", "name", "count"], skipinitialspace=True)
    id_of_name = raw.dropna(subset=["id"]).drop_duplicates("name").set_index("name")["id"]
    raw["id"] = raw["id"].fillna(raw["name"].map(id_of_name))
    local = pd.to_datetime(raw["when"], format="%d-%b-%Y %H:%M")
    ts = local_to_utc(local, MELBOURNE.tz, nonexistent="NaT")
    keep = ts.notna() & raw["count"].notna() & raw["id"].notna()
    out = pd.DataFrame({
        "ts": ts[keep],
        "sensor_id": "melbourne-" + raw.loc[keep, "id"].astype(int).astype(str),
        "metric": "people_count",
        "value": raw.loc[keep, "count"].astype(float),
    })
    return schema.validate(out.sort_values(["ts", "sensor_id"], kind="stable"), "observations")


def read_melbourne_sensors(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Melbourne counter locations as ``sensors`` (kind counter; name and install year in metadata)."""
    raw = pd.read_csv(csv_path)
    meta = pd.DataFrame({
        "name": raw["Sensor Description"], "code": raw["Sensor Name"],
        "status": raw["Status"], "year_installed": raw["Year Installed"],
        "location_type": raw["Location Type"],
    })
    out = pd.DataFrame({
        "sensor_id": "melbourne-" + raw["Sensor ID"].astype(str),
        "kind": "counter", "lon": raw["Longitude"], "lat": raw["Latitude"],
        "zone": None, "metadata": _json_records(meta),
    })
    return schema.validate(out.sort_values("sensor_id"), "sensors")


def read_melbourne_events() -> pd.DataFrame:
    """Known mass events in central Melbourne, 2012-2015, as a ``calendar`` table.

    Hand-compiled for the backtest on the City of Melbourne pedestrian counts
    (``safecity/data/melbourne_events.csv``; each row's public source is in its
    ``source`` column). Dates are those the sources state, or fixed by rule
    (the Grand Final parade is the day before the AFL Grand Final; Moomba is
    the Labour Day long weekend; the Melbourne Cup is the first Tuesday of
    November; the Boxing Day Test starts on 26 December). Times are local
    (AEST/AEDT) with their offset. Attendance is an order of magnitude from
    organisers or press ("approx" in the source column: taken from a
    neighbouring year or a typical figure), left empty where none was found;
    events without lon/lat cover the whole centre.
    """
    from importlib import resources

    from safecity.config.city import MELBOURNE
    from safecity.data.calendars import read_calendar

    path = resources.files("safecity") / "data" / "melbourne_events.csv"
    with resources.as_file(path) as p:
        return read_calendar(p, tz=MELBOURNE.tz)


def read_montgomery_911(zip_path: str | os.PathLike) -> pd.DataFrame:
    """Montgomery County 911 calls as ``events`` (kind call, source montgomery_911).

    details holds title (``EMS: FALL VICTIM``), category (EMS, Fire, Traffic),
    desc, addr, twp, zip and the responding station parsed from desc. A call
    geocoded outside ``MONTGOMERY_BOUNDS`` (in Alabama, Texas, Ohio, central
    Pennsylvania: 15 rows) is kept with lon/lat empty, its published position
    in details as geocoded_lon/geocoded_lat and ``outside_county: true``.
    event_id is ``montgomery_911-<row>``, the 1-based data row of the file.
    """
    raw = pd.read_csv(zip_path, dtype={"zip": "Int64"})
    lon_min, lat_min, lon_max, lat_max = MONTGOMERY_BOUNDS
    outside = ~(raw["lng"].between(lon_min, lon_max) & raw["lat"].between(lat_min, lat_max))
    details = pd.DataFrame({
        "title": raw["title"],
        "category": raw["title"].str.split(":").str[0],
        "desc": raw["desc"], "addr": raw["addr"], "twp": raw["twp"],
        "zip": raw["zip"].astype("string"),
        "station": raw["desc"].str.extract(r"Station:?\s*([^;]+);", expand=False).str.strip(),
        "outside_county": outside.where(outside),
        "geocoded_lon": raw["lng"].where(outside), "geocoded_lat": raw["lat"].where(outside),
    })
    out = pd.DataFrame({
        "event_id": "montgomery_911-" + pd.Series(np.arange(1, len(raw) + 1)).astype(str),
        "ts": local_to_utc(pd.to_datetime(raw["timeStamp"], format="%Y-%m-%d %H:%M:%S"),
                           "America/New_York"),
        "kind": "call", "sensor_id": None,
        "lon": raw["lng"].mask(outside), "lat": raw["lat"].mask(outside),
        "score": np.nan, "source": "montgomery_911", "details": _json_records(details),
    })
    return schema.validate(out, "events")


def read_sf_shotspotter(csv_path: str | os.PathLike) -> pd.DataFrame:
    """San Francisco acoustic gunshot alerts as ``events`` (kind gunshot, source sf_shotspotter).

    The file is UTF-8 with a byte-order mark; Date and Time are San Francisco
    wall-clock times. details holds type (Single_Gunshot, Multiple_Gunshots;
    absent in 3,044 rows), id (absent in the same rows), rounds, beat and
    address. event_id is ``sf_shotspotter-<row>``, the 1-based data row.
    """
    raw = pd.read_csv(csv_path, encoding="utf-8-sig", dtype={"ID": "string", "Beat": "string"})
    details = pd.DataFrame({
        "type": raw["Type"], "id": raw["ID"], "rounds": raw["Rnds"],
        "beat": raw["Beat"], "address": raw["returned address"],
    })
    local = pd.to_datetime(raw["Date"] + " " + raw["Time"], format="%d-%b-%y %H:%M:%S")
    out = pd.DataFrame({
        "event_id": "sf_shotspotter-" + pd.Series(np.arange(1, len(raw) + 1)).astype(str),
        "ts": local_to_utc(local, "America/Los_Angeles"),
        "kind": "gunshot", "sensor_id": None,
        "lon": raw["Longitude"], "lat": raw["Latitude"],
        "score": np.nan, "source": "sf_shotspotter", "details": _json_records(details),
    })
    return schema.validate(out, "events")


_SF_TIMES = {"received": "Received DtTm", "dispatched": "Dispatch DtTm",
             "response": "Response DtTm", "on_scene": "On Scene DtTm",
             "available": "Available DtTm"}


def read_sf_fire_responses(csv_path: str | os.PathLike) -> pd.DataFrame:
    """SF Fire Department calls for service as a ``responses`` table (see the module docstring)."""
    raw = pd.read_csv(csv_path, dtype=str)
    lat_lon = raw["Location"].str.extract(r"\(\s*([-0-9.]+)\s*,\s*([-0-9.]+)\s*\)").astype(float)
    out = pd.DataFrame({
        "call_number": raw["Call Number"], "unit_id": raw["Unit ID"],
        "unit_type": raw["Unit Type"], "call_type": raw["Call Type"],
        "priority": raw["Priority"], "station_area": raw["Station Area"],
    })
    for column, published in _SF_TIMES.items():
        local = pd.to_datetime(raw[published], format="%m/%d/%Y %I:%M:%S %p")
        out[column] = local_to_utc(local, "America/Los_Angeles").astype("datetime64[ns, UTC]")
    out["lon"], out["lat"] = lat_lon[1], lat_lon[0]
    return out


def read_paris_cameras(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Paris police street cameras as ``sensors`` (kind camera, sensor paris-<number>, zone = postcode).

    metadata holds the site (a street crossing), the postcode and the
    commissioning date: ``installed`` as an ISO date when the published
    value is one (dd/mm/yy, or an Excel day number as in ``40898``), and
    always ``installed_raw`` as published (``Début 2019``).
    """
    raw = pd.read_csv(csv_path, sep=";", dtype=str, encoding="utf-8")
    published = raw["Date de mise en service"]
    installed = pd.to_datetime(published, format="%d/%m/%y", errors="coerce")
    serial = pd.to_numeric(published, errors="coerce")
    installed = installed.fillna(pd.Timestamp("1899-12-30") + pd.to_timedelta(serial, unit="D"))
    meta = pd.DataFrame({
        "site": raw["Implantation"], "postcode": raw["Code postal"],
        "placement": raw["Précision de l’implantation"],
        "installed": installed.dt.strftime("%Y-%m-%d"), "installed_raw": published,
    })
    out = pd.DataFrame({
        "sensor_id": "paris-" + raw["Numéro"], "kind": "camera",
        "lon": raw["lon"].astype(float), "lat": raw["lat"].astype(float),
        "zone": raw["Code postal"], "metadata": _json_records(meta),
    })
    return schema.validate(out, "sensors")


def read_marseille_zones(geojson_path: str | os.PathLike) -> pd.DataFrame:
    """The 111 quartiers as a zones table (``geo.load_zones``)."""
    return geo.load_zones(geojson_path)


def read_marseille_landmarks(geojson_path: str | os.PathLike) -> pd.DataFrame:
    """Monuments as a landmarks table: ``geo.load_landmarks`` plus a kind guessed from the name."""
    landmarks = geo.load_landmarks(geojson_path)
    landmarks.insert(3, "kind", landmark_kind(landmarks["name"]))
    return landmarks


def landmark_kind(names: pd.Series) -> pd.Series:
    """The kind of each landmark from the first rule of ``_LANDMARK_KINDS`` its name matches."""
    kind = pd.Series("landmark", index=names.index, dtype="str")
    for label, pattern in reversed(_LANDMARK_KINDS):  # earlier rules win, so they are applied last
        kind[names.str.contains(pattern, case=False, regex=True)] = label
    return kind


# --------------------------------------------------------------------------- video


def read_ucsd_ped2(folder: str | os.PathLike) -> pd.DataFrame:
    """UCSD Ped2 frames (training and testing) with the frame-level anomaly labels of the test clips."""
    folder = Path(folder)
    rows = [(split, f.parent.name, f.name, str(f))
            for split in ("training", "testing")
            for f in sorted((folder / split / "frames").glob("*/*.jpg"))]
    frames = pd.DataFrame(rows, columns=["split", "video", "frame_file", "path"])
    frames.insert(2, "frame", frames["frame_file"].str.split(".").str[0].astype(int))
    labels = pd.read_csv(folder / "testing" / "labels.csv", dtype={"video": str})
    labels["split"] = "testing"
    out = frames.merge(labels, on=["split", "video", "frame_file"], how="left", validate="1:1")
    out["abnormal"] = out["abnormal"].astype(float)
    return out


def read_mall_frames(folder: str | os.PathLike) -> pd.DataFrame:
    """Mall frames with their ground-truth head counts."""
    folder = Path(folder)
    files = sorted((folder / "frames").glob("*.jpg"))
    frames = pd.DataFrame({"frame_file": [f.name for f in files], "path": [str(f) for f in files]})
    frames.insert(0, "frame", frames["frame_file"].str.extract(r"(\d+)", expand=False).astype(int))
    counts = pd.read_csv(folder / "counts.csv")
    return frames.merge(counts, on="frame_file", how="left", validate="1:1")


def read_mall_heads(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Mall head annotations: one row per head (frame_file, x, y)."""
    return pd.read_csv(csv_path, dtype={"frame_file": str, "x": float, "y": float})


def read_video_info(video_path: str | os.PathLike) -> pd.DataFrame:
    """One row describing a video file, from its container header (no frame is decoded); a
    folder gives one row per video file in it, in name order."""
    import cv2

    if Path(video_path).is_dir():
        files = sorted(p for p in Path(video_path).iterdir() if p.suffix.lower() in (".avi", ".mp4"))
        if not files:
            raise FileNotFoundError(f"{video_path}: no .avi or .mp4 file in this folder")
        return pd.concat([read_video_info(f) for f in files], ignore_index=True)
    capture = cv2.VideoCapture(str(video_path))
    if not capture.isOpened():
        raise ValueError(f"OpenCV cannot open the video {video_path}")
    try:
        fourcc = int(capture.get(cv2.CAP_PROP_FOURCC))
        info = {
            "path": str(video_path),
            "fps": capture.get(cv2.CAP_PROP_FPS),
            "n_frames": int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            "width": int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "codec": "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\0"),
        }
    finally:
        capture.release()
    return pd.DataFrame([info])


def read_mot_detections(txt_path: str | os.PathLike, scale: float = 1.0) -> pd.DataFrame:
    """MOTChallenge detections (frame, x, y, w, h, score), boxes multiplied by ``scale``.

    ``scale`` maps the annotation's pixels to the video's: 0.625 for the
    480x360 PETS 2009 re-encode of the 768x576 original.
    """
    raw = pd.read_csv(txt_path, header=None, usecols=range(7),
                      names=["frame", "id", "x", "y", "w", "h", "score"])
    out = raw.drop(columns="id")
    out[["x", "y", "w", "h"]] = out[["x", "y", "w", "h"]] * scale
    return out


# --------------------------------------------------------------------------- demo


def read_store_table(data_dir: str | os.PathLike, table: str) -> pd.DataFrame:
    """One table of a safecity store (the demo city written by ``safecity simulate``)."""
    from safecity.data.store import Store

    data_dir = Path(data_dir)
    if not (data_dir / "history").is_dir():  # Store() would create the folder; say what is missing
        raise FileNotFoundError(
            f"demo data not found: expected a safecity store at {data_dir.resolve()}. "
            f"Create it from the repository root with `safecity simulate --out demo-data` "
            f"(or `safecity simulate --out {data_dir}`)."
        )
    store = Store(data_dir)
    try:
        return store.read(table)
    finally:
        store.state.close()


# --------------------------------------------------------------------------- intake drivers


class _TableSource(DataSource):
    """One in-memory DataFrame per source; subclasses only say which reader to call."""

    container = "dataframe"
    version = "0.1.0"
    partition_access = False

    def _get_schema(self) -> Schema:
        return Schema(datashape=None, dtype=None, shape=None, npartitions=1, extra_metadata={})

    def _get_partition(self, i: int) -> pd.DataFrame:
        return self.read()

    def _close(self) -> None:
        pass


class SharedDataSource(_TableSource):
    """A real data set: ``path`` is relative to the shared data folder ``root``."""

    name = "safecity_shared"
    reader = None  # a read_* function taking the resolved path

    def __init__(self, path: str, root: str | None = None, metadata: dict | None = None, **kwargs):
        self.path, self.root, self.kwargs = path, root, kwargs
        super().__init__(metadata=metadata)

    def read(self) -> pd.DataFrame:
        return type(self).reader(shared_path(self.path, self.root), **self.kwargs)


class MelbourneCountsSource(SharedDataSource):
    name = "melbourne_counts"
    reader = staticmethod(read_melbourne_counts)


class MelbourneSensorsSource(SharedDataSource):
    name = "melbourne_sensors"
    reader = staticmethod(read_melbourne_sensors)


class Montgomery911Source(SharedDataSource):
    name = "montgomery_911"
    reader = staticmethod(read_montgomery_911)


class SFShotSpotterSource(SharedDataSource):
    name = "sf_shotspotter"
    reader = staticmethod(read_sf_shotspotter)


class SFFireResponsesSource(SharedDataSource):
    name = "sf_fire_responses"
    reader = staticmethod(read_sf_fire_responses)


class ParisCamerasSource(SharedDataSource):
    name = "paris_cameras"
    reader = staticmethod(read_paris_cameras)


class MarseilleZonesSource(SharedDataSource):
    name = "marseille_zones"
    reader = staticmethod(read_marseille_zones)


class MarseilleLandmarksSource(SharedDataSource):
    name = "marseille_landmarks"
    reader = staticmethod(read_marseille_landmarks)


class UCSDPed2Source(SharedDataSource):
    name = "ucsd_ped2"
    reader = staticmethod(read_ucsd_ped2)


class MallFramesSource(SharedDataSource):
    name = "mall_frames"
    reader = staticmethod(read_mall_frames)


class MallHeadsSource(SharedDataSource):
    name = "mall_heads"
    reader = staticmethod(read_mall_heads)


class VideoInfoSource(SharedDataSource):
    name = "video_info"
    reader = staticmethod(read_video_info)


class MOTDetectionsSource(SharedDataSource):
    name = "mot_detections"
    reader = staticmethod(read_mot_detections)


class StoreTableSource(_TableSource):
    """One table of a safecity store (``data_dir``), such as the demo city."""

    name = "safecity_store"

    def __init__(self, data_dir: str, table: str, metadata: dict | None = None):
        self.data_dir, self.table = data_dir, table
        super().__init__(metadata=metadata)

    def read(self) -> pd.DataFrame:
        return read_store_table(self.data_dir, self.table)


class CalendarFileSource(_TableSource):
    """A calendar file (.csv, .ics, .geojson) read into the ``calendar`` table."""

    name = "safecity_calendar"

    def __init__(self, path: str, tz: str = DEFAULT_CITY.tz, metadata: dict | None = None):
        self.path, self.tz = path, tz
        super().__init__(metadata=metadata)

    def read(self) -> pd.DataFrame:
        from safecity.data.calendars import read_calendar

        return read_calendar(self.path, tz=self.tz)
