"""Calendar ingestion: holidays from the packages, files from the city, features for the forecaster."""
from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from safecity.data.calendars import (
    CalendarError, calendar_flags, public_holidays, read_calendar, read_calendars,
    read_events_csv, read_events_ics, read_roadworks, school_holidays,
)
from safecity.data.geo import builtin_zones
from safecity.data.schema import empty, validate

UTC = "UTC"


@pytest.fixture(scope="module")
def zones():
    return builtin_zones()


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=UTC)


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


def geojson(*features) -> str:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}, indent=1)


def feature(geometry, **props) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": props}


def point(lon=5.378, lat=43.298) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


def problem_in(err: pytest.ExceptionInfo, where: str, *words: str) -> None:
    message = str(err.value)
    assert where in message, message
    for word in words:
        assert word in message, message


# =========================================================================== holidays


def test_french_public_holidays_2026_include_bastille_day_as_a_local_day():
    days = public_holidays("2026-01-01", "2027-01-01")
    assert len(days) == 11 and set(days["kind"]) == {"public_holiday"}
    assert days["location"].isna().all()
    july14 = days[days["start"] == utc("2026-07-13 22:00")]  # local midnight, CEST = UTC+2
    assert len(july14) == 1
    assert july14["end"].iat[0] == utc("2026-07-14 22:00")
    christmas = days[days["start"] == utc("2026-12-24 23:00")]  # CET = UTC+1
    assert len(christmas) == 1


def test_public_holidays_of_melbourne_use_its_time_zone():
    days = public_holidays("2026-01-01", "2026-02-01", country="AU", subdiv="VIC",
                           tz="Australia/Melbourne")
    australia_day = days[days["start"] == utc("2026-01-25 13:00")]  # AEDT = UTC+11
    assert len(australia_day) == 1 and len(days) == 2  # New Year's Day and Australia Day


def test_public_holidays_are_clipped_to_the_range():
    days = public_holidays(utc("2026-07-14 12:00"), utc("2026-07-20"))
    assert days["start"].tolist() == [utc("2026-07-13 22:00")]


def test_school_holidays_zone_b_2026_include_the_summer_and_a_christmas_across_new_year():
    periods = school_holidays("2025-12-01", "2027-01-01")
    assert set(periods["kind"]) == {"school_holiday"}
    summer = periods[periods["name"] == "Vacances d'été"]
    assert summer["start"].tolist() == [utc("2026-07-03 22:00")]  # Saturday 4 July, local midnight
    assert summer["end"].iat[0] > utc("2026-08-30")
    christmas = periods[periods["start"] == utc("2025-12-19 23:00")]
    assert christmas["end"].iat[0] == utc("2026-01-04 23:00")  # one row, not cut at New Year
    assert periods["calendar_id"].is_unique


def test_school_holidays_warn_beyond_the_package_years():
    with pytest.warns(UserWarning, match="school holidays are known"):
        school_holidays("2100-01-01", "2100-02-01")


# =========================================================================== flags


def test_calendar_flags_mark_the_local_holiday_hours_only():
    days = pd.concat([public_holidays("2026-07-01", "2026-08-01"),
                      school_holidays("2026-06-01", "2026-08-01")], ignore_index=True)
    index = pd.date_range("2026-07-13", "2026-07-16", freq="h", tz=UTC)
    flags = calendar_flags(days, index)
    assert flags.index.equals(index)
    ph = flags["public_holiday"]
    assert ph[utc("2026-07-13 21:00")] == 0  # 23:00 local on the 13th
    assert ph[utc("2026-07-13 22:00")] == 1  # midnight local, 14 July
    assert ph[utc("2026-07-14 21:00")] == 1  # 23:00 local, still 14 July
    assert ph[utc("2026-07-14 22:00")] == 0
    assert ph.sum() == 24
    assert (flags["school_holiday"] == 1).all()  # summer holidays


def test_calendar_flags_sum_attendance_by_location_and_mark_arrivals():
    events = validate(pd.DataFrame({
        "calendar_id": ["a", "b", "w"], "kind": ["event", "event", "roadworks"],
        "name": ["Match", "Concert", "Travaux"],
        "start": [utc("2026-03-07 20:00"), utc("2026-03-07 20:30"), utc("2026-03-07 00:00")],
        "end": [utc("2026-03-07 22:00"), utc("2026-03-07 21:00"), utc("2026-03-08 00:00")],
        "location": ["13208", "13204", "13201"], "lon": np.nan, "lat": np.nan,
        "expected_attendance": [60_000.0, 5_000.0, np.nan]}), "calendar")
    index = pd.date_range("2026-03-07 12:00", periods=14, freq="h", tz=UTC)
    every = calendar_flags(events, index)
    assert every.loc[utc("2026-03-07 20:00"), "event_attendance"] == 65_000  # bin 20-21 overlaps both
    assert every.loc[utc("2026-03-07 21:00"), "event_attendance"] == 60_000
    assert every.loc[utc("2026-03-07 22:00"), "event_attendance"] == 0  # ended at 22:00
    velodrome = calendar_flags(events, index, location="13208")
    assert velodrome.loc[utc("2026-03-07 20:00"), "event_attendance"] == 60_000
    assert velodrome["roadworks"].sum() == 0
    soon = velodrome["event_soon"]
    assert soon[utc("2026-03-07 16:00")] == 0 and soon[utc("2026-03-07 17:00")] == 1
    assert soon[utc("2026-03-08 01:00")] == 0 and soon[utc("2026-03-08 00:00")] == 1
    works = calendar_flags(events, index, location=["13201"])["roadworks"]
    assert works[:utc("2026-03-07 23:00")].all() and works.sum() == 12  # until midnight UTC


def test_calendar_flags_take_a_naive_index_as_local_time():
    days = public_holidays("2026-07-01", "2026-08-01")
    index = pd.date_range("2026-07-13 23:00", periods=2, freq="h")
    assert calendar_flags(days, index)["public_holiday"].tolist() == [0, 1]


def test_calendar_flags_of_an_empty_calendar_are_zero():
    index = pd.date_range("2026-07-13", periods=48, freq="h", tz=UTC)
    flags = calendar_flags(empty("calendar"), index)
    assert list(flags.columns) == ["public_holiday", "school_holiday", "event", "event_attendance",
                                   "event_soon", "roadworks"]
    assert (flags == 0).all().all()


def test_calendar_flags_over_years_of_hours_take_well_under_a_second():
    rng = np.random.default_rng(0)
    starts = utc("2024-01-01") + pd.to_timedelta(rng.integers(0, 3 * 365 * 24, 3000), unit="h")
    events = validate(pd.DataFrame({
        "calendar_id": [f"e{i}" for i in range(3000)], "kind": "event", "name": "x",
        "start": starts, "end": starts + pd.Timedelta(hours=3),
        "location": rng.choice(["13201", "13208"], 3000), "lon": np.nan, "lat": np.nan,
        "expected_attendance": 100.0}), "calendar")
    days = pd.concat([events, public_holidays("2024-01-01", "2027-01-01"),
                      school_holidays("2024-01-01", "2027-01-01")], ignore_index=True)
    index = pd.date_range("2024-01-01", "2027-01-01", freq="h", tz=UTC)
    t0 = time.perf_counter()
    flags = calendar_flags(days, index, location="13208")
    assert time.perf_counter() - t0 < 0.5
    assert len(flags) == len(index) > 26_000 and flags["event_attendance"].max() >= 100


# =========================================================================== CSV

GOOD_CSV = """
name,start,end,location,expected_attendance,calendar_id
Match de l'OM,2026-07-04T21:00,2026-07-04T23:30,marseille 8E,60000,om-1
Fête,2026-01-10,2026-01-10,13201,,

Concert,2026-07-05T20:00+00:00,2026-07-05T22:00Z,,5000,
"""


def test_events_csv_round_trip_converts_local_times_to_utc(tmp_path, zones):
    table = read_events_csv(write(tmp_path, "events.csv", GOOD_CSV), zones)
    assert table["calendar_id"].tolist() == ["om-1", "events-3", "events-5"]
    assert set(table["kind"]) == {"event"}
    om, fete, concert = (table.iloc[i] for i in range(3))
    assert (om["start"], om["end"]) == (utc("2026-07-04 19:00"), utc("2026-07-04 21:30"))
    assert om["location"] == "13208" and om["expected_attendance"] == 60_000
    # a date alone: local midnight in winter (UTC+1) to the end of that day
    assert (fete["start"], fete["end"]) == (utc("2026-01-09 23:00"), utc("2026-01-10 23:00"))
    assert np.isnan(fete["expected_attendance"])
    assert (concert["start"], concert["end"]) == (utc("2026-07-05 20:00"), utc("2026-07-05 22:00"))
    assert pd.isna(concert["location"])  # city-wide


def test_events_csv_kind_column_and_other_time_zone(tmp_path):
    path = write(tmp_path, "melb.csv", """
name,start,end,location,kind
AFL final,2026-09-26T14:30,2026-09-26T17:30,MCG,event
Road closure,2026-09-26,2026-09-27,MCG,roadworks
""")
    table = read_events_csv(path, tz="Australia/Melbourne")
    assert table["kind"].tolist() == ["event", "roadworks"]
    assert table["start"].iat[0] == utc("2026-09-26 04:30")  # AEST = UTC+10


@pytest.mark.parametrize("body, where, words", [
    ("A,2026-07-04T21:00,2026-07-04T23:30,13201\nB,2026-07-32T21:00,2026-08-01,13201\n",
     "bad.csv:3", ["'start'", "2026-07-32T21:00", "ISO 8601"]),
    ("A,2026-07-04T21:00,2026-07-04T23:30,Marseile 8e\n",
     "bad.csv:2", ["unknown zone 'Marseile 8e'", "did you mean 'Marseille 8e'"]),
    ("A,2026-07-04T21:00,2026-07-04T23:30,13201\n\nB,2026-07-04T21:00,2026-07-04T20:00,13201\n",
     "bad.csv:4", ["'end'", "before start"]),
])
def test_events_csv_errors_name_the_file_line_and_value(tmp_path, zones, body, where, words):
    path = write(tmp_path, "bad.csv", "name,start,end,location\n" + body)
    with pytest.raises(CalendarError) as err:
        read_events_csv(path, zones)
    problem_in(err, where, *words)


def test_events_csv_missing_column_names_it_and_the_file(tmp_path):
    path = write(tmp_path, "nocol.csv", "name,start,location\nA,2026-07-04,13201\n")
    with pytest.raises(CalendarError) as err:
        read_events_csv(path)
    problem_in(err, "nocol.csv:1", "missing column 'end'")


def test_events_csv_reports_every_bad_line_at_once(tmp_path, zones):
    path = write(tmp_path, "many.csv", """
name,start,end,location,expected_attendance
A,soon,2026-07-04,13201,
B,2026-07-04,2026-07-04,13201,lots
C,2026-07-04,2026-07-04,Atlantis,
""")
    with pytest.raises(CalendarError) as err:
        read_events_csv(path, zones)
    assert len(err.value.problems) == 3
    problem_in(err, "many.csv:2", "many.csv:3", "'lots' is not a number", "many.csv:4")


def test_duplicate_calendar_ids_name_both_lines(tmp_path):
    path = write(tmp_path, "dup.csv", """
name,start,end,location,calendar_id
A,2026-07-04,2026-07-04,,x
B,2026-07-05,2026-07-05,,x
""")
    with pytest.raises(CalendarError) as err:
        read_events_csv(path)
    problem_in(err, "dup.csv:3", "already used at", "dup.csv:2")


# =========================================================================== ICS

GOOD_ICS = """
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//safecity//tests//EN
BEGIN:VEVENT
UID:om-psg@ville
SUMMARY:Match OM - PSG
DTSTART;TZID=Europe/Paris:20261025T210000
DTEND;TZID=Europe/Paris:20261025T233000
LOCATION:Marseille 8e
X-EXPECTED-ATTENDANCE:65000
END:VEVENT
BEGIN:VEVENT
UID:fete-nationale@ville
SUMMARY:Fête nationale
DTSTART;VALUE=DATE:20260714
GEO:43.2946;5.3741
END:VEVENT
BEGIN:VEVENT
UID:concert@ville
SUMMARY:Concert
DTSTART:20260705T180000Z
DURATION:PT3H
END:VEVENT
BEGIN:VEVENT
UID:marche@ville
SUMMARY:Marché
DTSTART:20260110T080000
DTEND:20260110T130000
END:VEVENT
BEGIN:VEVENT
UID:annule@ville
SUMMARY:Annulé
STATUS:CANCELLED
DTSTART:20260110T080000
END:VEVENT
END:VCALENDAR
"""


def test_events_ics_round_trip_handles_tzid_all_day_duration_and_floating(tmp_path, zones):
    table = read_events_ics(write(tmp_path, "events.ics", GOOD_ICS), zones)
    rows = table.set_index("calendar_id")
    assert list(rows.index) == ["om-psg@ville", "fete-nationale@ville", "concert@ville", "marche@ville"]
    om = rows.loc["om-psg@ville"]  # 25 Oct 2026 is the day clocks go back: CET, UTC+1
    assert (om["start"], om["end"]) == (utc("2026-10-25 20:00"), utc("2026-10-25 22:30"))
    assert om["location"] == "13208" and om["expected_attendance"] == 65_000
    fete = rows.loc["fete-nationale@ville"]  # all day, no DTEND: that one local day
    assert (fete["start"], fete["end"]) == (utc("2026-07-13 22:00"), utc("2026-07-14 22:00"))
    assert (fete["lon"], fete["lat"]) == (5.3741, 43.2946)
    assert fete["location"] == "13201"  # from GEO, since there is no LOCATION
    concert = rows.loc["concert@ville"]
    assert (concert["start"], concert["end"]) == (utc("2026-07-05 18:00"), utc("2026-07-05 21:00"))
    marche = rows.loc["marche@ville"]  # floating time = local (CET)
    assert marche["start"] == utc("2026-01-10 07:00")


def _ics(*events: str) -> str:
    body = "".join(f"BEGIN:VEVENT\n{e.strip()}\nEND:VEVENT\n" for e in events)
    return f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n{body}END:VCALENDAR\n"


OK_EVENT = "UID:ok\nSUMMARY:ok\nDTSTART:20260705T180000Z\nDTEND:20260705T200000Z"


@pytest.mark.parametrize("event, where, words", [
    # lines: 1-3 header, 4-9 the good VEVENT, 10 BEGIN of the bad one, 11 UID, 12 SUMMARY, 13...
    ("UID:b\nSUMMARY:b\nDTSTART:20261305T180000Z", "bad.ics:13", ["DTSTART", "line 10"]),
    ("UID:b\nSUMMARY:b\nDTEND:20260705T180000Z", "bad.ics:10", ["DTSTART", "missing"]),
    ("UID:b\nSUMMARY:b\nDTSTART:20260705T180000Z\nLOCATION:Marseille 88e",
     "bad.ics:14", ["LOCATION", "unknown zone 'Marseille 88e'", "did you mean"]),
    ("UID:b\nSUMMARY:b\nDTSTART:20260705T180000Z\nDTEND:20260705T170000Z",
     "bad.ics:14", ["DTEND", "before start"]),
    ("UID:b\nSUMMARY:b\nDTSTART;TZID=Mars/Olympus:20260705T180000", "bad.ics:13", ["TZID=Mars/Olympus"]),
    ("UID:b\nSUMMARY:b\nDTSTART:20260705T180000Z\nRRULE:FREQ=WEEKLY", "bad.ics:10", ["RRULE"]),
    ("UID:b\nSUMMARY:b\nDTSTART:20260705T180000Z\nNOT A PROPERTY", "bad.ics:14", ["NOT A PROPERTY"]),
    ("UID:b\nSUMMARY:b\nDTSTART:20260705T180000Z\nX-EXPECTED-ATTENDANCE:lots",
     "bad.ics:14", ["X-EXPECTED-ATTENDANCE", "'lots' is not a number"]),
])
def test_events_ics_errors_name_the_file_and_line(tmp_path, zones, event, where, words):
    path = write(tmp_path, "bad.ics", _ics(OK_EVENT, event))
    with pytest.raises(CalendarError) as err:
        read_events_ics(path, zones)
    problem_in(err, where, *words)


def test_events_ics_unparseable_file_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "junk.ics", "BEGIN:VCALENDAR\nVERSION:2.0\nthis is not ical\nEND:VCALENDAR\n")
    with pytest.raises(CalendarError) as err:
        read_events_ics(path)
    problem_in(err, "junk.ics:3", "not a valid iCalendar file", "this is not ical")


# =========================================================================== roadworks

GOOD_GEOJSON = geojson(
    feature(point(5.3958, 43.2698), name="Réfection", start="2026-03-02T07:00", end="2026-03-04"),
    feature({"type": "LineString", "coordinates": [[5.375, 43.296], [5.381, 43.299]]},
            name="Tranchée", start="2026-03-02", end="2026-03-02T17:00", location="13201"),
    feature({"type": "Polygon", "coordinates": [[[5.40, 43.30], [5.41, 43.30], [5.41, 43.31],
                                                 [5.40, 43.30]]]},
            name="Chantier", start="2026-03-02T07:00+01:00", end="2026-03-02T17:00+01:00"),
)


def test_roadworks_geojson_round_trip_places_each_feature_in_its_zone(tmp_path, zones):
    table = read_roadworks(write(tmp_path, "works.geojson", GOOD_GEOJSON), zones)
    assert set(table["kind"]) == {"roadworks"}
    assert table["calendar_id"].tolist() == ["works-0", "works-1", "works-2"]
    assert table["location"].tolist() == ["13208", "13201", "13204"]
    assert (table["start"].iat[0], table["end"].iat[0]) == (utc("2026-03-02 06:00"), utc("2026-03-04 23:00"))
    assert table["end"].iat[1] == utc("2026-03-02 16:00")
    assert table[["lon", "lat"]].notna().all().all()
    assert 5.40 <= table["lon"].iat[2] <= 5.41  # a point on the polygon


@pytest.mark.parametrize("props, where, words", [
    ({"start": "2026-03-02T25:00"}, "features[1].properties.start", ["2026-03-02T25:00"]),
    ({"start": None}, "features[1].properties.start", ["empty"]),
    ({"location": "Marsielle 1er"}, "features[1].properties.location",
     ["unknown zone", "did you mean 'Marseille 1er'"]),
    ({"end": "2026-02-28"}, "features[1].properties.end", ["before start"]),
])
def test_roadworks_geojson_errors_name_the_file_feature_and_property(tmp_path, zones, props, where, words):
    good = {"name": "ok", "start": "2026-03-02", "end": "2026-03-03"}
    path = write(tmp_path, "bad.geojson", geojson(feature(point(), **good),
                                                  feature(point(), **{**good, **props})))
    with pytest.raises(CalendarError) as err:
        read_roadworks(path, zones)
    problem_in(err, "bad.geojson", where, *words)


def test_roadworks_geojson_missing_property_and_point_outside_the_city(tmp_path, zones):
    path = write(tmp_path, "bad.geojson", geojson(
        feature(point(), name="no end", start="2026-03-02"),
        feature(point(4.0, 43.0), name="at sea", start="2026-03-02", end="2026-03-03")))
    with pytest.raises(CalendarError) as err:
        read_roadworks(path, zones)
    problem_in(err, "bad.geojson: features[0].properties.end: missing property",
               "features[1].geometry", "outside every zone")


def test_roadworks_geojson_invalid_json_names_the_line(tmp_path):
    path = write(tmp_path, "broken.geojson", '{"type": "FeatureCollection",\n "features": [,]}\n')
    with pytest.raises(CalendarError) as err:
        read_roadworks(path)
    problem_in(err, "broken.geojson:2", "not valid JSON")


def test_roadworks_csv_with_points_gets_zones_and_errors_name_the_line(tmp_path, zones):
    path = write(tmp_path, "works.csv", """
name,start,end,lon,lat
Tranchée,2026-03-02T07:00,2026-03-02T17:00,5.3958,43.2698
""")
    table = read_roadworks(path, zones)
    assert table["kind"].tolist() == ["roadworks"] and table["location"].tolist() == ["13208"]
    bad = write(tmp_path, "works_bad.csv", "name,start,end,lon,lat\nT,2026-03-02,2026-03-02,5.3958,\n")
    with pytest.raises(CalendarError) as err:
        read_roadworks(bad, zones)
    problem_in(err, "works_bad.csv:2", "lon and lat")
    nowhere = write(tmp_path, "works_nowhere.csv", "name,start,end\nT,2026-03-02,2026-03-02\n")
    with pytest.raises(CalendarError) as err:
        read_roadworks(nowhere)
    problem_in(err, "works_nowhere.csv:1", "missing column 'location' (or 'lon,lat')")


# =========================================================================== dispatch


def test_read_calendar_dispatches_by_extension_and_reads_several(tmp_path, zones):
    files = [write(tmp_path, "events.csv", GOOD_CSV), write(tmp_path, "events.ics", GOOD_ICS),
             write(tmp_path, "works.geojson", GOOD_GEOJSON)]
    assert set(read_calendar(files[2], zones)["kind"]) == {"roadworks"}
    works_csv = write(tmp_path, "w.csv", "name,start,end,location\nT,2026-03-02,2026-03-02,13201\n")
    assert read_calendar(works_csv, kind="roadworks")["kind"].tolist() == ["roadworks"]
    table = read_calendars(files, zones)
    assert len(table) == 3 + 4 + 3 and table["calendar_id"].is_unique
    with pytest.raises(CalendarError) as err:
        read_calendars([files[0], write(tmp_path, "again.csv", GOOD_CSV)])
    problem_in(err, "again.csv", "'om-1'", "events.csv")
    with pytest.raises(CalendarError) as err:
        read_calendar(write(tmp_path, "events.xlsx", ""))
    problem_in(err, "events.xlsx", "unknown calendar format")
