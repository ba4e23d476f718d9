"""The city's calendars as one ``calendar`` table, and the per-hour features a forecaster needs.

Crowds follow the calendar: public and school holidays, matches and concerts,
roadworks that move traffic. This module turns each source into rows of the
``calendar`` table (see ``schema``) and turns that table into 0/1 and
attendance columns over an hourly index (``calendar_flags``).

Sources:

* ``public_holidays`` and ``school_holidays`` come from the ``holidays`` and
  ``vacances-scolaires-france`` packages (Marseille is school zone B).
* ``read_events_csv``, ``read_events_ics`` and ``read_roadworks`` read the files
  a city keeps (CSV, iCalendar, GeoJSON); ``read_calendar`` picks one by the
  file's extension and ``read_calendars`` reads several into one table.

Every reader returns a validated table or raises ``CalendarError`` naming the
file and the line (CSV, ICS) or the feature and property (GeoJSON); the
readers only read, so a bad file can never leave half a calendar stored.
Times in the table are UTC; a time written without an offset is local time in
``tz`` (``DEFAULT_CITY.tz`` by default).
"""
from __future__ import annotations

import datetime as dt
import difflib
import json
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from safecity.config.city import DEFAULT_CITY
from safecity.data.schema import CALENDAR_KINDS, SchemaError, columns, empty, validate

PathLike = str | os.PathLike
#: A time: ISO text, a date, a datetime or a Timestamp; naive ones are local.
When = str | dt.date | pd.Timestamp
#: A zones frame from ``safecity.data.geo`` (id, name, geometry) or just zone ids and names.
Zones = pd.DataFrame | Iterable[str] | None

#: The iCalendar property that carries a VEVENT's expected attendance (a number).
ATTENDANCE_PROPERTY = "X-EXPECTED-ATTENDANCE"


class CalendarError(ValueError):
    """A calendar file is malformed; each problem names the file and the line, or the feature."""

    def __init__(self, path: PathLike, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        if len(problems) == 1:
            message = problems[0]
        else:
            message = f"{path}: {len(problems)} problems:\n  " + "\n  ".join(problems)
        super().__init__(message)


# =========================================================================== holidays


def public_holidays(start: When, end: When, *, country: str = DEFAULT_CITY.country,
                    subdiv: str | None = DEFAULT_CITY.subdiv, tz: str = DEFAULT_CITY.tz, language: str | None = None) -> pd.DataFrame:
    """Public holidays that overlap ``[start, end)``, one city-wide row per holiday.

    A holiday runs from local midnight to the next local midnight in ``tz``
    (stored in UTC). Naive ``start``/``end`` are local times in ``tz``. Names
    come from the ``holidays`` package, in ``language`` when given.
    """
    import holidays

    t0, t1 = _utc(start, tz), _utc(end, tz)
    years = range(t0.tz_convert(tz).year, t1.tz_convert(tz).year + 1)
    days = holidays.country_holidays(country, subdiv=subdiv, years=years, language=language)
    place = f"{country}-{subdiv}" if subdiv else country
    rows = [{"calendar_id": f"public-holiday-{place}-{day:%Y%m%d}".lower(), "kind": "public_holiday",
             "name": name, "start": _midnight(day, tz), "end": _midnight(day, tz, days=1)}
            for day, name in sorted(days.items())]
    return _city_wide(rows, t0, t1)


def school_holidays(start: When, end: When, *, zone: str = DEFAULT_CITY.school_zone,
                    tz: str = DEFAULT_CITY.tz) -> pd.DataFrame:
    """French school holidays of ``zone`` that overlap ``[start, end)``, one row per period.

    A period runs from local midnight of its first day to local midnight after
    its last, so Christmas holidays that straddle New Year are one row. Warns
    when the range goes beyond the years the package knows, since the
    missing years would otherwise look like term time.
    """
    from vacances_scolaires_france import SchoolHolidayDates

    t0, t1 = _utc(start, tz), _utc(end, tz)
    known = SchoolHolidayDates()
    wanted = range(t0.tz_convert(tz).year - 1, t1.tz_convert(tz).year + 1)
    years = [y for y in wanted if known.min_year <= y <= known.max_year]
    if t0.tz_convert(tz).year < known.min_year or t1.tz_convert(tz).year > known.max_year:
        warnings.warn(f"school holidays are known for {known.min_year}-{known.max_year} only; "
                      f"asked for {t0:%Y-%m-%d} to {t1:%Y-%m-%d}", stacklevel=2)
    days = pd.DataFrame(
        [(d, r["nom_vacances"]) for y in years for d, r in known.holidays_for_year_and_zone(y, zone).items()],
        columns=["day", "name"]).sort_values("day", ignore_index=True)
    # A new period starts where a day does not follow the previous one or the name changes.
    gap = pd.to_datetime(days["day"]).diff() != pd.Timedelta(days=1)
    period = (gap | (days["name"] != days["name"].shift())).cumsum()
    rows = [{"calendar_id": f"school-holiday-{zone}-{g['day'].iat[0]:%Y%m%d}".lower(),
             "kind": "school_holiday", "name": g["name"].iat[0],
             "start": _midnight(g["day"].iat[0], tz), "end": _midnight(g["day"].iat[-1], tz, days=1)}
            for _, g in days.groupby(period)]
    return _city_wide(rows, t0, t1)


def _midnight(day, tz: str, days: int = 0) -> pd.Timestamp:
    local = pd.Timestamp(day) + pd.Timedelta(days=days)
    return local.tz_localize(tz).tz_convert("UTC")


def _city_wide(rows: list[dict], t0: pd.Timestamp, t1: pd.Timestamp) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns("calendar"))
    if frame.empty:
        return empty("calendar")
    frame = frame[(frame["start"] < t1) & (frame["end"] > t0)]
    return validate(frame.astype({"lon": float, "lat": float, "expected_attendance": float}), "calendar")


def _utc(value, tz: str) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is local time in ``tz``."""
    t = pd.Timestamp(value)
    return t.tz_localize(tz).tz_convert("UTC") if t.tzinfo is None else t.tz_convert("UTC")


# =========================================================================== features


def calendar_flags(calendar: pd.DataFrame, index: pd.DatetimeIndex, tz: str = DEFAULT_CITY.tz,
                   location: str | Iterable[str] | None = None,
                   soon: str | pd.Timedelta = "3h") -> pd.DataFrame:
    """Per-stamp calendar features over ``index``, ready to join to hourly counts.

    Each stamp stands for the bin from it to the next stamp (the index's
    ``freq``, else its smallest step, else one hour); a row counts when its
    ``[start, end)`` overlaps the bin. A naive index is local time in ``tz``.

    Columns (the frame has ``index`` as its index):
    ``public_holiday``, ``school_holiday``, ``event``, ``roadworks`` (0/1);
    ``event_attendance`` (sum of expected attendance of events under way,
    unknown counts 0); ``event_soon`` (1 from ``soon`` before an event starts
    to ``soon`` after it ends, when crowds arrive and leave).

    ``location``: a zone id or list of them; rows at those locations and
    city-wide rows (no location) count. ``None`` counts every row.
    """
    stamps = _stamps(index, tz)
    step = _step(stamps)
    rows = _at_location(calendar, location)
    soon = pd.Timedelta(soon)

    def active(kind: str, weight=None, pad=pd.Timedelta(0)) -> np.ndarray:
        sel = rows[rows["kind"] == kind]
        w = np.ones(len(sel)) if weight is None else sel[weight].fillna(0).to_numpy(float)
        return _overlap_sum(stamps, step, sel["start"] - pad, sel["end"] + pad, w)

    out = pd.DataFrame(index=index)
    out["public_holiday"] = (active("public_holiday") > 0).astype("int64")
    out["school_holiday"] = (active("school_holiday") > 0).astype("int64")
    out["event"] = (active("event") > 0).astype("int64")
    out["event_attendance"] = active("event", "expected_attendance")
    out["event_soon"] = (active("event", pad=soon) > 0).astype("int64")
    out["roadworks"] = (active("roadworks") > 0).astype("int64")
    return out


def _stamps(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"calendar_flags needs a pandas DatetimeIndex, got {type(index).__name__}")
    utc = index.tz_localize(tz) if index.tz is None else index
    return utc.tz_convert("UTC").as_unit("ns")


def _step(stamps: pd.DatetimeIndex) -> pd.Timedelta:
    if stamps.freq is not None:
        return pd.Timedelta(stamps.freq)
    steps = np.diff(np.unique(stamps.asi8))
    return pd.Timedelta(int(steps.min()), "ns") if len(steps) else pd.Timedelta(hours=1)


def _at_location(calendar: pd.DataFrame, location) -> pd.DataFrame:
    if location is None:
        return calendar
    wanted = {location.casefold()} if isinstance(location, str) else {str(x).casefold() for x in location}
    where = calendar["location"]
    return calendar[where.isna() | where.astype(str).str.casefold().isin(wanted)]


def _overlap_sum(stamps: pd.DatetimeIndex, step: pd.Timedelta, starts: pd.Series, ends: pd.Series,
                 weights: np.ndarray) -> np.ndarray:
    """For each bin ``[t, t + step)``, the summed weight of intervals overlapping it.

    Sorted search plus a running sum: O((stamps + intervals) log), no stamp x
    interval matrix, so years of hourly stamps against thousands of rows stay fast.
    """
    t = stamps.asi8
    order = np.argsort(t, kind="stable")
    ts = t[order]
    # Bin t overlaps [s, e) when t + step > s and t < e.
    lo = np.searchsorted(ts, _ns(starts) - step.value, side="right")
    hi = np.searchsorted(ts, _ns(ends), side="left")
    keep = hi > lo
    delta = np.zeros(len(ts) + 1)
    np.add.at(delta, lo[keep], weights[keep])
    np.add.at(delta, hi[keep], -weights[keep])
    out = np.empty(len(ts))
    out[order] = np.cumsum(delta[:-1])
    return out


def _ns(times: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns").asi8


# =========================================================================== readers


def read_calendar(path: PathLike, zones: Zones = None, kind: str | None = None,
                  tz: str = DEFAULT_CITY.tz) -> pd.DataFrame:
    """Read one calendar file, choosing the reader by extension.

    ``.csv`` is events (or roadworks when ``kind="roadworks"``), ``.ics`` is
    iCalendar events, ``.geojson``/``.json`` is roadworks.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        if kind == "roadworks":
            return read_roadworks(path, zones, tz=tz)
        return read_events_csv(path, zones, tz=tz, kind=kind or "event")
    if suffix in (".ics", ".ical", ".ifb", ".icalendar"):
        return read_events_ics(path, zones, tz=tz, kind=kind or "event")
    if suffix in (".geojson", ".json"):
        return read_roadworks(path, zones, tz=tz)
    raise CalendarError(path, [f"{path}: unknown calendar format {suffix!r}; "
                               "expected .csv, .ics, .geojson or .json"])


def read_calendars(paths: Iterable[PathLike], zones: Zones = None,
                   tz: str = DEFAULT_CITY.tz) -> pd.DataFrame:
    """Read several calendar files into one table; a calendar_id used twice names both files."""
    frames, seen = [], {}
    for path in paths:
        frame = read_calendar(path, zones, tz=tz)
        clash = [f"{path}: calendar_id {cid!r} is also in {seen[cid]}"
                 for cid in frame["calendar_id"] if cid in seen]
        if clash:
            raise CalendarError(path, clash)
        seen.update(dict.fromkeys(frame["calendar_id"], str(path)))
        frames.append(frame)
    if not frames:
        return empty("calendar")
    return validate(pd.concat(frames, ignore_index=True), "calendar")


def read_events_csv(path: PathLike, zones: Zones = None, tz: str = DEFAULT_CITY.tz,
                    kind: str = "event") -> pd.DataFrame:
    """Events from a CSV file with columns ``name,start,end,location``.

    Optional columns: ``lon,lat,expected_attendance,calendar_id,kind``.
    ``location`` may be empty (city-wide, or found from lon/lat when ``zones``
    is a zones frame); when ``zones`` is given a location must name one of
    them (zone id or name, any case) and is stored as its zone id. Times are
    ISO 8601; without an offset they are local in ``tz``; a date alone as
    ``end`` means the whole day. Line numbers in errors count the header as 1
    (a quoted field spanning lines would shift them).
    """
    return _read_csv(path, zones, tz, kind, required=("name", "start", "end", "location"))


def read_roadworks(path: PathLike, zones: Zones = None, tz: str = DEFAULT_CITY.tz) -> pd.DataFrame:
    """Roadworks from CSV (``name,start,end`` and ``location`` or ``lon,lat``) or GeoJSON.

    GeoJSON: Point, LineString or Polygon features (or their Multi forms)
    with properties ``name,start,end`` and optionally ``location``,
    ``calendar_id``; lon/lat is a point on the geometry, and the zone comes
    from it when ``zones`` is a zones frame.
    """
    if Path(path).suffix.lower() in (".geojson", ".json"):
        return _read_geojson(path, zones, tz)
    return _read_csv(path, zones, tz, "roadworks", required=("name", "start", "end"),
                     place=("location", ("lon", "lat")))


def read_events_ics(path: PathLike, zones: Zones = None, tz: str = DEFAULT_CITY.tz,
                    kind: str = "event") -> pd.DataFrame:
    """Events from an iCalendar file, one row per VEVENT.

    DTSTART is required; the end is DTEND, else DTSTART + DURATION, else (as
    RFC 5545 says) the end of the day for an all-day event and DTSTART for a
    timed one. TZID times are converted to UTC; floating times are local in
    ``tz``. SUMMARY is the name, UID the calendar_id, LOCATION the zone (as
    in ``read_events_csv``), GEO the lon/lat, and the non-standard
    ``X-EXPECTED-ATTENDANCE`` property the expected attendance. Cancelled
    events are skipped; recurring ones (RRULE, RDATE) are refused rather
    than read as a single occurrence.
    """
    from icalendar import Calendar

    text = _read_text(path)
    lines = text.splitlines()
    try:
        cal = Calendar.from_ical(text)
    except ValueError as err:
        line = _quoted_line(lines, str(err), 1, len(lines))
        where = f"{path}:{line}" if line else str(path)
        raise CalendarError(path, [f"{where}: not a valid iCalendar file: {err}"]) from None
    begins = [i + 1 for i, line in enumerate(lines) if line.strip().upper() == "BEGIN:VEVENT"]
    ends = [i + 1 for i, line in enumerate(lines) if line.strip().upper() == "END:VEVENT"]
    lookup = _zone_lookup(zones)
    rows, problems = [], []
    for n, (event, begin) in enumerate(zip(cal.walk("VEVENT"), begins)):
        end_line = ends[n] if n < len(ends) else len(lines)
        try:
            row = _ics_row(event, begin, Path(path).stem, kind, tz)
            if row is not None:
                rows.append((f"{path}:{begin}", _place(row, lookup, zones)))
        except _Bad as bad:
            if bad.field is None:
                line = _quoted_line(lines, str(bad), begin, end_line) or begin
                problems.append(f"{path}:{line}: VEVENT at line {begin}: {bad}")
                continue
            prop = _ICS_FIELDS.get(bad.field, bad.field)
            line = _property_line(lines, begin, end_line, prop)
            problems.append(f"{path}:{line}: {prop} of the VEVENT at line {begin}: {bad}")
    return _finish(path, rows, problems)


# --------------------------------------------------------------------------- csv


def _read_csv(path, zones, tz, kind, required, place=None) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # A first row longer than the header would silently become the index.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, dtype=str, skip_blank_lines=False, index_col=False,
                                encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise CalendarError(path, [f"{path}: the file is empty (expected a header line)"]) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, UnicodeDecodeError) as err:
        raise CalendarError(path, [f"{path}: not a readable CSV file: {str(err).strip()}"]) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [f"'{c}'" for c in required if c not in table.columns]
    if place and not (place[0] in table.columns or all(c in table.columns for c in place[1])):
        missing.append(f"'{place[0]}' (or '{','.join(place[1])}')")
    if missing:
        raise CalendarError(path, [f"{path}:1: missing column {', '.join(missing)}; "
                                   f"the header has {', '.join(table.columns)}"])
    lookup = _zone_lookup(zones)
    rows, problems = [], []
    for i, record in enumerate(table.to_dict("records")):
        line = i + 2  # the header is line 1
        values = {k: _blank_to_none(v) for k, v in record.items()}
        if all(v is None for v in values.values()):
            continue
        try:
            row = _row(values, f"{Path(path).stem}-{line}", kind, tz, day_end=True)
            rows.append((f"{path}:{line}", _place(row, lookup, zones)))
        except _Bad as bad:
            problems.append(f"{path}:{line}: column '{bad.field}': {bad}")
    return _finish(path, rows, problems)


# --------------------------------------------------------------------------- geojson


def _read_geojson(path, zones, tz) -> pd.DataFrame:
    from shapely.geometry import shape

    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise CalendarError(path, [f"{path}:{err.lineno}: not valid JSON: {err.msg}"]) from None
    except RecursionError:
        raise CalendarError(path, [f"{path}: not a GeoJSON file: nested too deeply"]) from None
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = {"type": "FeatureCollection", "features": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise CalendarError(path, [f"{path}: expected a GeoJSON FeatureCollection with 'features'"])
    lookup = _zone_lookup(zones)
    rows, problems = [], []
    for i, feature in enumerate(data["features"]):
        where = f"{path}: features[{i}]"
        props = feature.get("properties") if isinstance(feature, dict) else None
        try:
            if not isinstance(props, dict):
                raise _Bad("properties", "missing, or not an object")
            values = {str(k).lower(): _blank_to_none(v) for k, v in props.items()}
            for key in ("name", "start", "end"):
                if key not in values:
                    raise _Bad(key, "missing property")
            geometry = feature.get("geometry")
            if geometry is not None:
                try:
                    with warnings.catch_warnings():  # shapely warns on NaN, refused below
                        warnings.simplefilter("ignore", RuntimeWarning)
                        geom = shape(geometry)
                except Exception as err:  # shapely raises several types for bad geometry
                    raise _Bad("geometry", f"not a valid GeoJSON geometry: {err}") from None
                if geom.geom_type not in _GEOMETRIES:
                    raise _Bad("geometry", f"type {geom.geom_type} is not one of {', '.join(_GEOMETRIES)}")
                if geom.is_empty:
                    raise _Bad("geometry", "empty geometry")
                _check_coordinates(geom)
                if values.get("lon") is None and values.get("lat") is None:
                    point = geom.representative_point()
                    values["lon"], values["lat"] = point.x, point.y
            elif values.get("location") is None:
                raise _Bad("geometry", "missing geometry and no 'location' property")
            default_id = feature.get("id") if feature.get("id") is not None else f"{Path(path).stem}-{i}"
            row = _row(values, str(default_id), "roadworks", tz, day_end=True)
            rows.append((where, _place(row, lookup, zones)))
        except _Bad as bad:
            field = bad.field
            if field in ("lon", "lat") and field not in (props or {}):
                field = "geometry"  # the point was taken from the geometry
            elif field not in ("geometry", "properties"):
                field = f"properties.{field}"
            problems.append(f"{where}.{field}: {bad}")
    return _finish(path, rows, problems)


_GEOMETRIES = ("Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon")


def _check_coordinates(geom) -> None:
    """Refuse NaN, infinite or off-Earth positions (Python's JSON reads NaN; shapely keeps it,
    and a NaN point would land the roadworks at (0, 0))."""
    import shapely

    points = shapely.get_coordinates(geom)
    lonlat = points[:, :2]
    bad = ~np.isfinite(lonlat).all(axis=1)
    if bad.any():
        raise _Bad("geometry", f"coordinate {points[bad][0].tolist()} is not a number (NaN or infinite)")
    off = (np.abs(lonlat[:, 0]) > 180) | (np.abs(lonlat[:, 1]) > 90)
    if off.any():
        raise _Bad("geometry", f"coordinate {lonlat[off][0].tolist()} is outside lon -180..180, lat -90..90")


# --------------------------------------------------------------------------- ics

_ICS_FIELDS = {"name": "SUMMARY", "start": "DTSTART", "end": "DTEND", "location": "LOCATION",
               "lon": "GEO", "lat": "GEO", "expected_attendance": ATTENDANCE_PROPERTY,
               "calendar_id": "UID"}
_ICS_PROPERTIES = {prop: field for field, prop in _ICS_FIELDS.items()}


def _ics_row(event, begin: int, stem: str, kind: str, tz: str) -> dict | None:
    if event.errors:  # lines or values icalendar could not parse
        prop, message = event.errors[0]
        raise _Bad(_ICS_PROPERTIES.get(str(prop).upper(), prop) if prop else None, message)
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        return None
    for prop in ("RRULE", "RDATE"):
        if prop in event:
            raise _Bad(None, f"recurring events ({prop}) are not supported; expand them first")
    if "DTSTART" not in event:
        raise _Bad("start", "missing property (every VEVENT needs DTSTART)")
    start = _ics_time(event, "DTSTART", "start")
    if "DTEND" in event:
        end = _ics_time(event, "DTEND", "end")
    elif "DURATION" in event:
        end = start + event.decoded("DURATION")
    else:
        end = start + dt.timedelta(days=1) if _is_date(start) else start
    geo = event.get("GEO")
    values = {
        "name": _blank_to_none(str(event.get("SUMMARY", ""))),
        "start": start, "end": end,
        "location": _blank_to_none(str(event.get("LOCATION", ""))),
        "lon": geo.longitude if geo is not None else None,
        "lat": geo.latitude if geo is not None else None,
        "expected_attendance": _blank_to_none(_ics_text(event.get(ATTENDANCE_PROPERTY))),
        "calendar_id": _blank_to_none(str(event.get("UID", ""))),
    }
    return _row(values, f"{stem}-{begin}", kind, tz, day_end=False)


def _ics_time(event, prop: str, field: str):
    value = event[prop]
    try:
        when = value.dt
    except Exception as err:  # icalendar marks values it could not parse as broken
        raise _Bad(field, f"not a date or time: {err}") from None
    tzid = value.params.get("TZID") if hasattr(value, "params") else None
    if tzid and isinstance(when, dt.datetime) and when.tzinfo is None:
        raise _Bad(field, f"unknown time zone TZID={tzid}")
    if not isinstance(when, dt.date):
        raise _Bad(field, f"not a date or time: {when!r}")
    return when


def _ics_text(value) -> str:
    if value is None:
        return ""
    raw = getattr(value, "to_ical", None)
    text = raw() if raw else value
    return text.decode() if isinstance(text, bytes) else str(text)


def _property_line(lines: list[str], begin: int, end: int, prop: str) -> int:
    """The line of ``prop`` inside the VEVENT spanning lines ``begin..end``, else ``begin``."""
    pattern = re.compile(rf"{re.escape(prop)}[;:]", re.IGNORECASE)
    for number in range(begin, end + 1):
        if pattern.match(lines[number - 1]):
            return number
    return begin


def _quoted_line(lines: list[str], message: str, lo: int, hi: int) -> int | None:
    """The number of the line in ``lo..hi`` that the library's message quotes, if any."""
    for quoted in re.findall(r"'([^']+)'", message):
        for number in range(lo, hi + 1):
            if lines[number - 1].strip() == quoted.strip():
                return number
    return None


# --------------------------------------------------------------------------- rows


class _Bad(ValueError):
    """One field of one row is wrong; the reader adds the file and line."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        super().__init__(message)


def _row(values: dict, default_id: str, kind: str, tz: str, day_end: bool) -> dict:
    """A calendar row from raw values (strings or dates), or ``_Bad`` naming the field."""
    for key in ("name", "start", "end"):
        if values.get(key) is None:
            raise _Bad(key, "empty")
    start = _when(values["start"], tz, "start")
    end = _when(values["end"], tz, "end", day_end=day_end)
    if end < start:
        raise _Bad("end", f"{_show(values['end'])} is before start {_show(values['start'])}")
    row_kind = values.get("kind") or kind
    if row_kind not in CALENDAR_KINDS:
        raise _Bad("kind", f"{row_kind!r} is not one of {', '.join(CALENDAR_KINDS)}")
    lon = _number(values.get("lon"), "lon", -180, 180)
    lat = _number(values.get("lat"), "lat", -90, 90)
    if (lon is None) != (lat is None):
        raise _Bad("lat" if lat is None else "lon", "lon and lat must be given together")
    return {"calendar_id": str(values.get("calendar_id") or default_id), "kind": row_kind,
            "name": str(values["name"]), "start": start, "end": end,
            "location": None if values.get("location") is None else str(values["location"]).strip(),
            "lon": lon, "lat": lat,
            "expected_attendance": _number(values.get("expected_attendance"), "expected_attendance", 0)}


def _when(value, tz: str, field: str, day_end: bool = False) -> pd.Timestamp:
    """A UTC timestamp from ISO 8601 text or a date/datetime; naive is local in ``tz``.

    A date alone is local midnight, or the midnight after it when ``day_end``
    (so ``end=2026-07-05`` means to the end of that day).
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = dt.date.fromisoformat(text) if len(text) <= 10 else dt.datetime.fromisoformat(text)
        except ValueError:
            raise _Bad(field, f"{text!r} is not an ISO 8601 date or time "
                              "(like 2026-07-14 or 2026-07-14T21:00)") from None
    if _is_date(value):
        return _midnight(value, tz, days=1 if day_end else 0)
    if not isinstance(value, dt.datetime):
        raise _Bad(field, f"{value!r} is not a date or time")
    t = pd.Timestamp(value)
    if t.tzinfo is None:
        t = t.tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
    return t.tz_convert("UTC")


def _is_date(value) -> bool:
    return isinstance(value, dt.date) and not isinstance(value, dt.datetime)


def _number(value, field: str, lo: float, hi: float = float("inf")) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Bad(field, f"{value!r} is not a number") from None
    if not lo <= number <= hi:
        raise _Bad(field, f"{number:g} is outside {lo:g}..{hi:g}")
    return number


def _blank_to_none(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else repr(str(value))


# --------------------------------------------------------------------------- zones


def _zone_lookup(zones) -> dict[str, tuple[str, str]] | None:
    """Casefolded zone id or name -> (its spelling, zone id); None when no zones are given."""
    if zones is None:
        return None
    if isinstance(zones, pd.DataFrame):
        ids = zones["zone_id"].astype(str)
        names = zones["name"].astype(str) if "name" in zones else ids
        pairs = [*zip(names, ids), *zip(ids, ids)]
    else:
        pairs = [(str(z), str(z)) for z in zones]
    return {spelling.casefold(): (spelling, zone) for spelling, zone in pairs}


def _place(row: dict, lookup: dict[str, tuple[str, str]] | None, zones) -> dict:
    """Map the row's location to a zone id, or find it from lon/lat; ``_Bad`` if unknown."""
    if lookup is None:
        return row
    if row["location"] is not None:
        key = row["location"].casefold()
        if key not in lookup:
            close = difflib.get_close_matches(key, list(lookup), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(lookup[c][0]) for c in close)}?" if close else ""
            raise _Bad("location", f"unknown zone {row['location']!r}{hint}")
        return {**row, "location": lookup[key][1]}
    if row["lon"] is not None and isinstance(zones, pd.DataFrame):
        from safecity.data.geo import zone_of

        zone = zone_of(row["lon"], row["lat"], zones)[0]
        if zone is None:
            raise _Bad("lon", f"point ({row['lon']:g}, {row['lat']:g}) is outside every zone")
        return {**row, "location": zone}
    return row


# --------------------------------------------------------------------------- output


def _finish(path, rows: list[tuple[str, dict]], problems: list[str]) -> pd.DataFrame:
    """The validated table from (where, row) pairs, or every problem found in the file at once."""
    first: dict[str, str] = {}
    for where, row in rows:
        cid = row["calendar_id"]
        if cid in first:
            problems.append(f"{where}: calendar_id {cid!r} is already used at {first[cid]}")
        first.setdefault(cid, where)
    if problems:
        raise CalendarError(path, problems)
    if not rows:
        return empty("calendar")
    frame = pd.DataFrame([row for _, row in rows], columns=columns("calendar"))
    try:
        return validate(frame.astype({"lon": float, "lat": float, "expected_attendance": float}),
                        "calendar")
    except SchemaError as err:
        raise CalendarError(path, [f"{path}: {err}"]) from None


def _read_text(path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise CalendarError(path, [f"{path}: not UTF-8 text: {err}"]) from None
