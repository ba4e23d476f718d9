"""The intake catalog: every entry reads its data as published and returns the documented table."""
from __future__ import annotations

import functools
import json
import shutil
import zipfile
from pathlib import Path

import intake
import pandas as pd
import pytest
import shapely
from conftest import ROOT, shared_data

from safecity.data import catalog
from safecity.data import schema
from safecity.data.store import Store

CATALOG = ROOT / "catalog.yml"

RESPONSES = ["call_number", "unit_id", "unit_type", "call_type", "priority", "station_area",
             "received", "dispatched", "response", "on_scene", "available", "lon", "lat"]

#: entry -> (file or folder under the shared data, data-model table or columns, rows)
REAL = {
    "melbourne_counts": ("city/melbourne_pedestrians/pedestriancounts_melbourne.zip",
                         "observations", 656_823 - 14 - 18),  # minus no-count and skipped-hour rows
    "melbourne_sensors": ("city/melbourne_pedestrians/Pedestrian_sensor_locations.csv",
                          "sensors", 43),
    "montgomery_911": ("city/montgomery_911/911.zip", "events", 99_492),
    "sf_fire_2020": ("city/sf_fire/sffd_calls_jnhamid_2020.csv", RESPONSES, 10_410),
    "sf_fire_2009_2019": ("city/sf_fire/sffd_calls_tonyfriends_a.csv", RESPONSES, 4_340),
    "sf_shotspotter": ("city/sf_shotspotter/San_Francisco_ShotSpotter.csv", "events", 4_385),
    "marseille_quartiers": ("city/marseille/marseille_quartiers_111.geojson",
                            ["zone_id", "name", "arrondissement", "geometry", "lon", "lat"], 111),
    "marseille_landmarks": ("city/marseille/marseille_monuments.geojson",
                            ["name", "lon", "lat", "kind", "capacity"], 113),
    "paris_cameras": ("city/paris_cctv/data.csv", "sensors", 707),
    "ucsd_ped2_frames": ("video/ucsd_ped2",
                         ["split", "video", "frame", "frame_file", "path", "abnormal"], 2550 + 1020),
    "mall_frames": ("video/mall", ["frame", "frame_file", "path", "count"], 1200),
    "mall_heads": ("video/mall/heads.csv", ["frame_file", "x", "y"], 36_655),
    "pets2009_video": ("video/pets2009_s2l1/vtest.avi",
                       ["path", "fps", "n_frames", "width", "height", "codec"], 1),
    "upfall_cam1_videos": ("video/upfall_cam1", ["path", "fps", "n_frames", "width", "height", "codec"], 33),
    "aboda_video": ("video/aboda/video4.avi", ["path", "fps", "n_frames", "width", "height", "codec"], 1),
    "pets2009_detections": ("video/pets2009_s2l1/mot15_public_det.txt",
                            ["frame", "x", "y", "w", "h", "score"], 4_359),
}
DEMO = {f"demo_{t}": t for t in ("sensors", "observations", "events", "units", "calendar")}
SHIPPED = {"melbourne_calendar"}  # data that ships with the package


@functools.cache
def _cached(name: str) -> pd.DataFrame:
    return intake.open_catalog(str(CATALOG))[name].read()


def read(name: str) -> pd.DataFrame:
    """The entry's table (read once per session), or skip/fail when its data is absent."""
    shared_data(REAL[name][0])
    return _cached(name).copy()


def test_catalog_lists_every_data_set():
    assert set(intake.open_catalog(str(CATALOG))) == set(REAL) | set(DEMO) | SHIPPED


def test_shipped_melbourne_calendar_reads_as_a_calendar_table():
    cal = intake.open_catalog(str(CATALOG)).melbourne_calendar.read()
    schema.validate(cal, "calendar")
    white_night = cal[cal["name"].str.contains("White Night")]
    local_days = white_night["start"].dt.tz_convert("Australia/Melbourne").dt.strftime("%Y-%m-%d")
    assert "2014-02-22" in set(local_days)


@pytest.mark.parametrize("name", sorted(REAL))
def test_entry_reads_the_documented_table(name):
    _, table, rows = REAL[name]
    df = read(name)
    assert len(df) == rows
    if isinstance(table, str):
        assert list(df.columns) == schema.columns(table)
        schema.validate(df, table)
    else:
        assert list(df.columns) == table


@pytest.mark.parametrize("name", sorted(REAL))
def test_missing_real_data_names_the_expected_path(name, tmp_path, monkeypatch):
    root = tmp_path / "nowhere"
    monkeypatch.setenv("SAFECITY_SHARED_DATA", str(root))
    with pytest.raises(FileNotFoundError) as err:
        intake.open_catalog(str(CATALOG))[name].read()
    message = str(err.value)
    assert str(root / REAL[name][0]) in message
    assert "../shared/data" in message and "SAFECITY_SHARED_DATA" in message


# --------------------------------------------------------------------------- content


def test_melbourne_counts_are_utc_hours_without_duplicates():
    obs = read("melbourne_counts")
    assert obs["sensor_id"].nunique() == 39
    assert set(obs["sensor_id"]) <= set(read("melbourne_sensors")["sensor_id"])
    assert (obs["metric"] == "people_count").all() and (obs["value"] >= 0).all()
    assert not obs.duplicated(["ts", "sensor_id"]).any()
    # 2012-01-01 00:00 in Melbourne (summer time, UTC+11) .. 2015-02-15 02:00 (one
    # Webb Bridge row; every other sensor ends on 2015-02-14)
    assert obs["ts"].min() == pd.Timestamp("2011-12-31 13:00", tz="UTC")
    assert obs["ts"].max() == pd.Timestamp("2015-02-14 15:00", tz="UTC")
    # the one 02:00 bin of the night clocks go back is the first 02:00 (UTC+11)
    night = obs[obs["sensor_id"] == "melbourne-4"].set_index("ts")["value"]
    assert night[pd.Timestamp("2014-04-05 15:00", tz="UTC")] == 90
    assert pd.Timestamp("2014-04-05 16:00", tz="UTC") not in night.index


def test_melbourne_sensors_are_in_melbourne():
    sensors = read("melbourne_sensors")
    assert sensors["lon"].between(144.9, 145.0).all() and sensors["lat"].between(-37.83, -37.79).all()
    meta = json.loads(sensors.set_index("sensor_id").loc["melbourne-4", "metadata"])
    assert meta["name"] == "Town Hall (West)"


def test_montgomery_calls_flag_positions_outside_the_county():
    calls = read("montgomery_911")
    details = calls["details"].map(json.loads)
    outside = details.map(lambda d: d.get("outside_county", False))
    assert outside.sum() == 15
    assert calls.loc[outside, ["lon", "lat"]].isna().all().all()
    lon_min, lat_min, lon_max, lat_max = catalog.MONTGOMERY_BOUNDS
    inside = calls[~outside]
    assert inside["lon"].between(lon_min, lon_max).all() and inside["lat"].between(lat_min, lat_max).all()
    assert set(details.map(lambda d: d["category"])) == {"EMS", "Fire", "Traffic"}
    assert (calls["kind"] == "call").all() and (calls["source"] == "montgomery_911").all()
    # 2015-12-10 17:40 in Pennsylvania (UTC-5) .. 2016-08-24 11:17 (UTC-4)
    assert calls["ts"].min() == pd.Timestamp("2015-12-10 22:40", tz="UTC")
    assert calls["ts"].max() == pd.Timestamp("2016-08-24 15:17:02", tz="UTC")


@pytest.mark.parametrize("name", ["sf_fire_2020", "sf_fire_2009_2019"])
def test_sf_fire_timelines_are_ordered_and_in_san_francisco(name):
    resp = read(name)
    assert resp["lon"].between(-122.52, -122.35).all() and resp["lat"].between(37.70, 37.84).all()
    assert (resp["received"] <= resp["dispatched"]).all()
    timed = resp.dropna(subset=["on_scene"])
    assert (timed["dispatched"] <= timed["on_scene"]).all()
    assert 0.1 < resp["on_scene"].isna().mean() < 0.4  # "about a fifth" overall
    assert not resp.duplicated(["call_number", "unit_id"]).any()
    assert resp["received"].dt.tz is not None


def test_sf_fire_2020_covers_two_weeks_of_april():
    resp = read("sf_fire_2020")
    local = resp["received"].dt.tz_convert("America/Los_Angeles")
    assert local.min().date() == pd.Timestamp("2020-04-07").date()
    assert local.max().date() == pd.Timestamp("2020-04-20").date()
    assert {"ENGINE", "MEDIC", "TRUCK"} <= set(resp["unit_type"])


def test_shotspotter_alerts_are_gunshots_in_san_francisco():
    shots = read("sf_shotspotter")
    assert (shots["kind"] == "gunshot").all()
    assert shots["lon"].between(-122.52, -122.35).all() and shots["lat"].between(37.69, 37.84).all()
    # 2013-01-01 00:00:10 in San Francisco (UTC-8) .. 2015-06-24 23:54:02 (UTC-7)
    assert shots["ts"].min() == pd.Timestamp("2013-01-01 08:00:10", tz="UTC")
    assert shots["ts"].max() == pd.Timestamp("2015-06-25 06:54:02", tz="UTC")
    types = shots["details"].map(lambda d: json.loads(d).get("type"))
    assert types.isna().sum() == 3_044


def test_marseille_quartiers_cover_the_sixteen_arrondissements():
    zones = read("marseille_quartiers")
    assert zones["zone_id"].is_unique
    assert sorted(zones["arrondissement"].unique()) == [str(13201 + i) for i in range(16)]
    assert all(g.is_valid for g in zones["geometry"])
    points = shapely.points(zones["lon"].to_numpy(), zones["lat"].to_numpy())
    assert shapely.contains(zones["geometry"].to_numpy(), points).all()


def test_marseille_landmarks_are_in_marseille():
    marks = read("marseille_landmarks")
    assert marks["lon"].between(5.2, 5.6).all() and marks["lat"].between(43.15, 43.4).all()
    assert marks.set_index("name").loc["Notre-Dame de la Garde", "kind"] == "religious"
    assert marks.set_index("name").loc["Stade Vélodrome", "kind"] == "sport"
    assert (marks["kind"] != "landmark").mean() > 0.9


def test_paris_cameras_are_in_paris():
    cams = read("paris_cameras")
    assert (cams["kind"] == "camera").all()
    assert cams["lon"].between(2.22, 2.47).all() and cams["lat"].between(48.81, 48.91).all()
    assert cams["zone"].str.match(r"^75\d{3}$").all()
    installed = cams["metadata"].map(lambda m: json.loads(m).get("installed"))
    assert installed.notna().mean() > 0.9
    assert pd.to_datetime(installed.dropna()).between("2009-01-01", "2025-12-31").all()


def test_ucsd_ped2_labels_only_the_test_frames():
    frames = read("ucsd_ped2_frames")
    train, test = frames[frames["split"] == "training"], frames[frames["split"] == "testing"]
    assert train["video"].nunique() == 16 and test["video"].nunique() == 6
    assert train["abnormal"].isna().all()
    assert set(test["abnormal"]) == {0.0, 1.0}
    assert 0.3 < test["abnormal"].mean() < 0.9
    assert Path(frames["path"].iloc[-1]).is_file()


def test_mall_counts_match_the_heads():
    frames, heads = read("mall_frames"), read("mall_heads")
    assert frames["count"].between(13, 53).all()
    assert frames["frame"].tolist() == list(range(1, 1201))
    per_frame = heads.groupby("frame_file").size()
    assert (frames.set_index("frame_file")["count"] == per_frame).all()
    assert heads["x"].between(0, 640).all() and heads["y"].between(0, 480).all()
    assert Path(frames["path"].iloc[0]).is_file()


def test_pets_detections_fit_the_video():
    video = read("pets2009_video").iloc[0]
    assert (video["n_frames"], video["width"], video["height"], video["fps"]) == (795, 480, 360, 10)
    det = read("pets2009_detections")
    assert det["frame"].between(1, video["n_frames"]).all()
    assert (det[["x", "y"]] >= 0).all().all()
    assert ((det["x"] + det["w"]) <= video["width"]).all()
    assert ((det["y"] + det["h"]) <= video["height"]).all()
    assert det["score"].between(0, 1).all()


# --------------------------------------------------------------------------- demo store


def _demo_tables() -> dict[str, pd.DataFrame]:
    ts = pd.date_range("2026-06-01 08:00", periods=3, freq="5min", tz="UTC")
    return {
        "sensors": pd.DataFrame({"sensor_id": ["cam-1", "cnt-1"], "kind": ["camera", "counter"],
                                 "lon": [5.37, 5.38], "lat": [43.29, 43.30], "zone": ["opera", None],
                                 "metadata": ["{}", "{}"]}),
        "observations": pd.DataFrame({"ts": ts, "sensor_id": "cam-1", "metric": "people_count",
                                      "value": [3.0, 4.0, 5.0]}),
        "events": pd.DataFrame({"event_id": ["e1"], "ts": ts[:1], "kind": ["crowd_movement"],
                                "sensor_id": ["cam-1"], "lon": [5.37], "lat": [43.29],
                                "score": [0.9], "source": ["simulate"], "details": ["{}"]}),
        "units": pd.DataFrame({"unit_id": ["P1"], "kind": ["police"], "status": ["available"],
                               "lon": [5.37], "lat": [43.29], "ts": ts[:1], "station": ["Noailles"]}),
        "calendar": pd.DataFrame({"calendar_id": ["om-psg"], "kind": ["event"], "name": ["OM - PSG"],
                                  "start": ts[:1], "end": ts[-1:], "location": ["Stade Vélodrome"],
                                  "lon": [5.3958], "lat": [43.2698], "expected_attendance": [65000.0]}),
    }


def test_demo_entries_read_the_store_beside_the_catalog(tmp_path):
    shutil.copy(CATALOG, tmp_path / "catalog.yml")
    store = Store(tmp_path / "demo-data")
    written = _demo_tables()
    for table, df in written.items():
        store.append(table, df)
    store.state.close()
    cat = intake.open_catalog(str(tmp_path / "catalog.yml"))
    for name, table in DEMO.items():
        got = cat[name].read()
        want = schema.validate(written[table], table)
        pd.testing.assert_frame_equal(schema.validate(got, table), want, check_dtype=False)


def test_missing_demo_data_says_where_and_how_to_create_it(tmp_path):
    shutil.copy(CATALOG, tmp_path / "catalog.yml")
    cat = intake.open_catalog(str(tmp_path / "catalog.yml"))
    for name in DEMO:
        with pytest.raises(FileNotFoundError) as err:
            cat[name].read()
        assert str((tmp_path / "demo-data").resolve()) in str(err.value)
        assert "safecity simulate --out demo-data" in str(err.value)
    assert not (tmp_path / "demo-data").exists()  # reading never creates the store


# --------------------------------------------------------------------------- parsing rules


def test_local_times_repeated_hour_is_the_first_and_skipped_hour_moves_forward():
    local = pd.Series(pd.to_datetime(["2014-04-06 02:30", "2014-10-05 02:30"]))
    utc = catalog.local_to_utc(local, "Australia/Melbourne")
    assert utc.tolist() == [pd.Timestamp("2014-04-05 15:30", tz="UTC"),   # 02:30 AEDT (UTC+11)
                            pd.Timestamp("2014-10-04 16:00", tz="UTC")]   # 03:00 AEDT


def test_melbourne_reader_on_a_small_zip(tmp_path):
    rows = [
        " 06-APR-2014 01:00,Sunday,1,4,Town Hall (West),10",
        " 06-APR-2014 02:00,Sunday,2,4,Town Hall (West),20",  # clocks go back: first 02:00
        " 06-APR-2014 03:00,Sunday,3,,Town Hall (West),30",   # no id: taken from the name
        " 05-OCT-2014 02:00,Sunday,2,4,Town Hall (West),40",  # clocks skip 02:00: dropped
        " 05-OCT-2014 03:00,Sunday,3,4,Town Hall (West),",    # no count: dropped
    ]
    path = tmp_path / "counts.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("counts.csv", "\n".join(rows) + "\n")
    obs = catalog.read_melbourne_counts(path)
    assert obs["ts"].tolist() == [pd.Timestamp(t, tz="UTC") for t in
                                  ("2014-04-05 14:00", "2014-04-05 15:00", "2014-04-05 17:00")]
    assert obs["value"].tolist() == [10.0, 20.0, 30.0]
    assert (obs["sensor_id"] == "melbourne-4").all()


def test_mot_detections_are_scaled(tmp_path):
    path = tmp_path / "det.txt"
    path.write_text("3,-1,100,200,40,80,0.9,-1,-1,-1\n")
    det = catalog.read_mot_detections(path, scale=0.625)
    assert det.iloc[0].tolist() == [3, 62.5, 125.0, 25.0, 50.0, 0.9]


def test_shared_data_helper_skips_or_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFECITY_SHARED_DATA", str(tmp_path))
    monkeypatch.delenv("SAFECITY_REQUIRE_DATA", raising=False)
    with pytest.raises(pytest.skip.Exception, match="real data not found at"):
        shared_data("city/nothing.csv")
    monkeypatch.setenv("SAFECITY_REQUIRE_DATA", "1")
    with pytest.raises(pytest.fail.Exception, match="real data not found at"):
        shared_data("city/nothing.csv")
    (tmp_path / "here.csv").write_text("x\n")
    assert shared_data("here.csv") == tmp_path / "here.csv"
