"""The synthetic city: deterministic, valid, and its ground truth is really in the data."""
from __future__ import annotations

import dataclasses
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from safecity.config.city import DEFAULT_CITY, MELBOURNE, load_city
from safecity.data import citydir, geo
from safecity.data import schema
from safecity.sim import city as sim
from safecity.sim import clips as sv

ZONES = geo.builtin_zones()  # explicit zones: the same city with or without the real data


@pytest.fixture(scope="module")
def city():
    return sim.simulate_city(seed=0, days=7, zones=ZONES)


def _obs_matrix(obs, sensor_ids, ts):
    """People counts as a (sensor, bin) matrix aligned with ``ts``."""
    counts = obs[obs["metric"] == "people_count"].pivot(index="sensor_id", columns="ts", values="value")
    return counts.reindex(index=sensor_ids, columns=ts).to_numpy()


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_city_and_other_seed_other_city():
    a = sim.simulate_city(seed=3, days=2, zones=ZONES)
    b = sim.simulate_city(seed=3, days=2, zones=ZONES)
    for name in ("sensors", "observations", "events", "units", "calendar", "nodes", "edges"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    for name in a.truth:
        pd.testing.assert_frame_equal(a.truth[name], b.truth[name])
    c = sim.simulate_city(seed=4, days=2, zones=ZONES)
    assert not a.observations["value"].equals(c.observations["value"])
    assert not np.allclose(a.sensors["lon"], c.sensors["lon"])
    assert not a.events["ts"].equals(c.events["ts"])


def test_a_day_is_the_same_whether_generated_alone_or_with_others(city):
    anomalies = city.truth["anomalies"]
    day = pd.Timestamp("2026-06-03", tz="UTC")
    alone = sim.simulate_observations(city.sensors, city.calendar, anomalies, day, seed=0)
    together = city.observations[(city.observations["ts"] >= day)
                                 & (city.observations["ts"] < day + pd.Timedelta(days=1))]
    key = ["metric", "ts", "sensor_id"]
    pd.testing.assert_frame_equal(alone.sort_values(key, ignore_index=True),
                                  together.sort_values(key, ignore_index=True))
    # One sensor on its own (as a Dask task would get it) gives the same rows too.
    one = city.sensors[city.sensors["sensor_id"] == "cnt-005"]
    rows = sim.simulate_observations(one, city.calendar, anomalies, day, seed=0)
    pd.testing.assert_frame_equal(rows, alone[alone["sensor_id"] == "cnt-005"].reset_index(drop=True))
    ev, inc = sim.simulate_events(city.sensors, city.calendar, city.nodes, city.edges, day, seed=0)
    assert set(ev["event_id"]) <= set(city.events["event_id"])
    assert set(inc["incident_id"]) <= set(city.truth["incidents"]["incident_id"])


def test_every_table_fits_the_data_model(city):
    for table in ("sensors", "observations", "events", "units", "calendar"):
        df = getattr(city, table)
        assert len(df) > 0, table
        schema.validate(df, table)
    schema.validate(city.truth["incidents"], "incidents")
    assert set(city.sensors["kind"]) == {"camera", "counter", "gunshot_detector", "panic_button"}
    assert set(city.observations["metric"]) == {"people_count", "mean_speed"}
    assert city.sensors["zone"].notna().all()
    for text in pd.concat([city.sensors["metadata"], city.events["details"]]):
        assert isinstance(json.loads(text), dict)


# --------------------------------------------------------------------------- counts


def test_counts_follow_daily_and_weekly_cycles(city):
    counts = city.observations[city.observations["metric"] == "people_count"]
    local = counts["ts"].dt.tz_convert(sim.CITY.tz)
    commuters = city.sensors.loc[city.sensors["metadata"].str.contains('"commuter"'), "sensor_id"]
    c = counts[counts["sensor_id"].isin(commuters)]
    hour = local[c.index].dt.hour
    weekday = local[c.index].dt.day_of_week < 5
    night = c["value"][weekday & hour.between(2, 4)].mean()
    evening_peak = c["value"][weekday & hour.between(17, 18)].mean()
    sunday_peak = c["value"][(local[c.index].dt.day_of_week == 6) & hour.between(17, 18)].mean()
    assert evening_peak > 8 * night
    assert evening_peak > 1.5 * sunday_peak


def test_injected_anomalies_are_visible_in_the_counts(city):
    ts = pd.date_range("2026-06-01", periods=7 * 288, freq="5min", tz="UTC")
    counting = city.sensors[city.sensors["kind"].isin(sim.COUNT_KINDS)].reset_index(drop=True)
    usual = sim.expected_counts(counting, city.calendar, ts)  # without the anomalies
    seen = _obs_matrix(city.observations, counting["sensor_id"], ts)
    kinds = set()
    for a in city.truth["anomalies"].itertuples():
        rows = counting.index[counting["sensor_id"].isin(json.loads(a.sensor_ids))]
        cols = np.nonzero((ts >= a.start) & (ts < a.end))[0]
        ratio = seen[np.ix_(rows, cols)].sum() / usual[np.ix_(rows, cols)].sum()
        bound = {"spike": (2.0, np.inf), "drop": (0, 0.45), "outage": (0, 0.01),
                 "district_drop": (0, 0.8), "citywide_drop": (0, 0.8)}[a.kind]
        assert bound[0] <= ratio <= bound[1], (a.anomaly_id, a.kind, ratio)
        kinds.add(a.kind)
    assert {"spike", "drop", "citywide_drop", "district_drop"} <= kinds


def test_a_spike_stands_out_against_the_same_hours_a_week_apart():
    city = sim.simulate_city(seed=1, n_cameras=2, n_counters=6, days=14, n_units=3, freq="15min",
                             zones=ZONES)
    counts = city.observations[city.observations["metric"] == "people_count"].set_index(["sensor_id", "ts"])["value"]
    anomalies = city.truth["anomalies"]
    week = pd.Timedelta(days=7)
    checked = 0
    for a in anomalies.query("kind == 'spike'").itertuples():
        shift = week if a.start - week < pd.Timestamp("2026-06-01", tz="UTC") else -week
        clash = anomalies[(anomalies["start"] < a.end + shift) & (anomalies["end"] > a.start + shift)
                          & anomalies["sensor_ids"].str.contains(a.sensor_id)]
        if len(clash):  # the other week has its own anomaly at that sensor: no reference
            continue
        window = pd.date_range(a.start, a.end, freq="15min", inclusive="left")
        now = counts.loc[[(a.sensor_id, t) for t in window]].sum()
        other = counts.loc[[(a.sensor_id, t + shift) for t in window]].sum()
        assert now > 1.8 * other, (a.anomaly_id, now, other)
        checked += 1
    assert checked >= 5


def test_a_concert_raises_counts_near_its_venue_only(city):
    event = city.calendar[city.calendar["location"] == "Stade Vélodrome"].iloc[0]
    ts = pd.date_range(event["start"] - pd.Timedelta(hours=3), event["end"] + pd.Timedelta(hours=2),
                       freq="5min")
    counting = city.sensors[city.sensors["kind"].isin(sim.COUNT_KINDS)].reset_index(drop=True)
    without = city.calendar[city.calendar["calendar_id"] != event["calendar_id"]]
    profile = sim.expected_counts(counting, without, ts)
    distance = geo.distance_m(counting["lon"], counting["lat"], event["lon"], event["lat"])
    near, far = distance < 500, distance > 5000
    assert near.any() and far.any()
    seen = _obs_matrix(city.observations, counting["sensor_id"], ts)
    egress = (ts >= event["end"]) & (ts < event["end"] + pd.Timedelta(hours=1))
    arrival = (ts >= event["start"] - pd.Timedelta(hours=2)) & (ts < event["start"])
    for window, factor in ((arrival, 1.8), (egress, 4.0)):  # arrivals spread, the exit is a wave
        assert seen[np.ix_(near, window)].sum() > factor * profile[np.ix_(near, window)].sum()
    with_event = sim.expected_counts(counting, city.calendar, ts)
    np.testing.assert_allclose(with_event[far], profile[far])


def test_school_holidays_and_roadworks_change_the_profile(city):
    counting = city.sensors[city.sensors["kind"].isin(sim.COUNT_KINDS)].reset_index(drop=True)
    calendar = sim.make_calendar("2026-06-29", 14, city.nodes, city.edges, seed=0)
    assert "Vacances d'été" in set(calendar["name"])
    term = pd.date_range("2026-06-29 06:00", periods=4, freq="15min", tz="UTC")  # Monday 8-9 local
    holiday = term + pd.Timedelta(days=7)
    school_run = sim.expected_counts(counting, calendar, term).sum()
    no_school = sim.expected_counts(counting, calendar, holiday).sum()
    assert no_school < 0.85 * school_run

    site = counting.iloc[[0]]
    works = pd.DataFrame([{"calendar_id": "w", "kind": "roadworks", "name": "Travaux",
                           "start": term[0], "end": term[-1] + pd.Timedelta(hours=1),
                           "location": "here", "lon": site["lon"].iat[0], "lat": site["lat"].iat[0],
                           "expected_attendance": None}])
    works = schema.validate(works, "calendar")
    empty = works.iloc[:0]
    assert (sim.expected_counts(site, works, term) < 0.5 * sim.expected_counts(site, empty, term)).all()


# --------------------------------------------------------------------------- events and units


def test_ground_truth_incidents_group_existing_events(city):
    incidents = city.truth["incidents"]
    events = city.events.set_index("event_id")
    listed = [e for ids in incidents["event_ids"] for e in json.loads(ids)]
    assert listed and set(listed) <= set(events.index)
    assert len(listed) == len(set(listed))  # an event belongs to one happening at most
    assert {"gunshot", "panic", "call"} <= set(events["kind"])
    shots = 0
    for ids in incidents.loc[incidents["kind"] == "gunshot", "event_ids"]:
        heard = events.loc[json.loads(ids)].query("kind == 'gunshot'")
        if len(heard) >= 2:
            assert heard["sensor_id"].is_unique
            assert (heard["ts"].max() - heard["ts"].min()) < pd.Timedelta(seconds=10)
            shots += 1
    assert shots >= 1
    several_callers = incidents["event_ids"].map(
        lambda ids: (events.loc[json.loads(ids), "kind"] == "call").sum() >= 2)
    assert several_callers.any()
    for inc in incidents.itertuples():  # the events happen at and after the incident
        ev = events.loc[json.loads(inc.event_ids)]
        assert (ev["ts"] >= inc.ts).all()
        assert (geo.distance_m(ev["lon"], ev["lat"], inc.lon, inc.lat) < 600).all()


def test_units_stay_in_the_city_and_follow_the_status_cycle(city):
    units = city.units
    lon0, lat0, lon1, lat1 = geo.MARSEILLE_BOUNDS
    assert units["lon"].between(lon0, lon1).all() and units["lat"].between(lat0, lat1).all()
    assert set(units["kind"]) == {"police", "fire", "ambulance"}
    allowed = {("available", "dispatched"), ("dispatched", "en_route"), ("en_route", "on_scene"),
               ("on_scene", "returning"), ("returning", "available")}
    for _, track in units.sort_values("ts").groupby("unit_id"):
        status = track["status"].to_numpy()
        moves = set(zip(status[:-1], status[1:])) - {(s, s) for s in status}
        assert moves <= allowed, moves
    served = city.truth["dispatches"].dropna(subset=["unit_id"])
    assert len(served) > 10
    incidents = city.truth["incidents"].set_index("incident_id")
    for d in served.itertuples():
        at = units[(units["unit_id"] == d.unit_id) & (units["ts"] >= d.on_scene)
                   & (units["ts"] < d.cleared)]
        assert (at["status"] == "on_scene").all() and len(at)
        inc = incidents.loc[d.incident_id]
        assert geo.distance_m(at["lon"], at["lat"], inc.lon, inc.lat).max() < 600


def test_road_network_is_connected_and_on_land(city):
    import networkx as nx

    graph = geo.to_networkx(city.nodes, city.edges)
    assert nx.is_strongly_connected(graph)
    assert set(city.edges["road_class"]) == {"primary", "secondary", "residential"}
    np.testing.assert_allclose(city.edges["travel_time_s"],
                               city.edges["length_m"] / (city.edges["speed_kmh"] / 3.6))
    land = geo.land(ZONES)
    assert all(land.buffer(1e-6).contains(geo.shapely.Point(x, y))
               for x, y in zip(city.nodes["lon"], city.nodes["lat"]))


def test_write_and_read_back(city, tmp_path):
    small = sim.simulate_city(seed=2, days=2, n_counters=4, n_cameras=2, n_units=4, zones=ZONES)
    citydir.write_city(small, tmp_path)
    for rel in ("zones.geojson", "network/nodes.parquet", "network/edges.parquet", "stations.parquet",
                "truth/anomalies.parquet", "truth/incidents.parquet", "city.yml"):
        assert (tmp_path / rel).is_file(), rel
    back = citydir.read_city(tmp_path)
    for name, key in (("sensors", ["sensor_id"]), ("events", ["event_id"]),
                      ("observations", ["metric", "ts", "sensor_id"]), ("units", ["unit_id", "ts"])):
        pd.testing.assert_frame_equal(
            schema.validate(getattr(back, name), name).sort_values(key, ignore_index=True),
            getattr(small, name).sort_values(key, ignore_index=True), check_dtype=False)
    pd.testing.assert_frame_equal(back.truth["incidents"], small.truth["incidents"])
    assert len(back.zones) == len(ZONES) and back.params["seed"] == 2
    assert back.config == small.config == DEFAULT_CITY  # the synthetic city is Marseille
    for name in ("nodes", "edges", "stations"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(small, name))


def test_city_directory_carries_its_city(city, tmp_path):
    """A city directory says which city it is (city.yml); one without the file is DEFAULT_CITY."""
    melbourne = dataclasses.replace(city, config=MELBOURNE)
    citydir.write_city(melbourne, tmp_path / "melbourne")
    assert load_city(tmp_path / "melbourne" / "city.yml") == MELBOURNE
    assert citydir.read_city(tmp_path / "melbourne").config == MELBOURNE
    citydir.write_city(city, tmp_path / "old")
    (tmp_path / "old" / "city.yml").unlink()
    assert citydir.read_city(tmp_path / "old").config == DEFAULT_CITY


def test_city_directory_without_the_store(city, tmp_path):
    """``store=False`` reads geography, stations and truth, and leaves no store behind."""
    citydir.write_city(city, tmp_path / "c")
    shutil.rmtree(tmp_path / "c" / "history")
    (tmp_path / "c" / "state.sqlite").unlink()
    light = citydir.read_city(tmp_path / "c", store=False)
    assert light.observations.empty and list(light.units.columns) == schema.columns("units")
    pd.testing.assert_frame_equal(light.truth["incidents"], city.truth["incidents"])
    pd.testing.assert_frame_equal(light.stations, city.stations)
    assert not (tmp_path / "c" / "history").exists() and not (tmp_path / "c" / "state.sqlite").exists()


# --------------------------------------------------------------------------- clips


def test_clips_read_back_with_their_tracks_and_truth(tmp_path):
    sv.write_clips(tmp_path, seed=0)
    for scenario in sv.SCENARIOS:
        cap = cv2.VideoCapture(str(tmp_path / f"{scenario}.avi"))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        frames = sv.read_clip(tmp_path / f"{scenario}.avi")
        tracks = pd.read_csv(tmp_path / f"{scenario}_tracks.csv")
        truth = pd.read_csv(tmp_path / f"{scenario}_truth.csv")
        scene = json.loads((tmp_path / f"{scenario}_scene.json").read_text())
        expected = sv.DEFAULT_FRAMES.get(scenario, 200)
        assert n == len(frames) == expected, scenario
        assert frames[0].shape == (scene["size"][1], scene["size"][0], 3)
        assert tracks["frame"].between(0, expected - 1).all()
        assert set(tracks["cls"]) <= {"person", "bag"}
        if scenario == "normal":
            assert truth.empty
            continue
        assert len(truth) and set(truth["kind"]) <= set(schema.EVENT_KINDS)
        assert (truth["start_frame"] <= truth["end_frame"]).all()
        assert truth["end_frame"].max() < expected
        for ids in truth["track_ids"]:
            assert set(json.loads(ids)) <= set(tracks["track_id"])


def test_clip_is_deterministic_and_matches_its_script():
    a = sv.render_clip("person_on_ground", seed=5)
    b = sv.render_clip("person_on_ground", seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    pd.testing.assert_frame_equal(a.tracks, b.tracks)
    event = a.truth.iloc[0]
    actor = a.tracks[a.tracks["track_id"] == json.loads(event["track_ids"])[0]]
    down = actor[actor["frame"] >= event["start_frame"] + 5]
    assert (down["w"] > down["h"]).all() and down[["x", "y"]].nunique().max() == 1
    # The drawn person is where the track says: the box differs from the empty street.
    empty = sv.render_clip("person_on_ground", seed=5, n_frames=1).frames[0]
    box = down.iloc[-1]
    x, y, w, h = (int(box[k]) for k in ("x", "y", "w", "h"))
    frame = a.frames[int(box["frame"])]
    assert np.abs(frame[y:y + h, x:x + w].astype(int) - empty[y:y + h, x:x + w]).mean() > 10

    wrong = sv.render_clip("wrong_way", seed=5)
    runner = wrong.tracks[wrong.tracks["track_id"] == json.loads(wrong.truth["track_ids"][0])[0]]
    assert runner["x"].diff().dropna().lt(0).mean() > 0.9  # against the scene's flow (+x)
    assert wrong.scene["flow_direction"] == [1.0, 0.0]


# --------------------------------------------------------------------------- real zones


def test_real_quartiers_are_the_zones():
    path = shared_data("city/marseille/marseille_quartiers_111.geojson")
    zones = geo.load_zones(path)
    assert len(zones) == 111 and zones["zone_id"].is_unique
    assert zones["arrondissement"].nunique() == 16
    assert geo.zone_of([5.3741], [43.2946], zones)[0] is not None  # the Vieux-Port
    city = sim.simulate_city(seed=0, days=1, n_units=3, zones=zones)
    assert city.sensors["zone"].isin(zones["zone_id"]).all()
    minx, miny, maxx, maxy = geo.land(zones).bounds
    assert city.nodes["lon"].between(minx, maxx).all() and city.nodes["lat"].between(miny, maxy).all()
