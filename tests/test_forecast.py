"""Gathering forecasts: accurate on real counts, events move them, alerts fire in time, sklearn manners."""
from __future__ import annotations

import json
import tomllib
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from conftest import ROOT, shared_data
from safecity.data import geo
from safecity.data import schema
from safecity.sim import city as sim
from safecity.data.catalog import read_melbourne_counts, read_melbourne_events, read_melbourne_sensors
from safecity.data.counts import aggregate_zones, hourly_counts
from safecity.evaluation.forecasts import backtest
from safecity.forecast.alerts import gathering_alerts
from safecity.forecast.baselines import seasonal_naive, time_of_week_profile
from safecity.forecast.model import GatheringForecaster
from safecity.forecast.table import forecast_hours
from safecity.cli import main

MELBOURNE = "city/melbourne_pedestrians/pedestriancounts_melbourne.zip"
MELBOURNE_SENSORS = "city/melbourne_pedestrians/Pedestrian_sensor_locations.csv"
MELBOURNE_CITY = dict(tz="Australia/Melbourne", country="AU", subdiv="VIC", school_zone=None)
ORIGIN = pd.Timestamp("2026-06-26 22:00", tz="UTC")  # local midnight, Saturday 27 June 2026


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# =========================================================================== real data


@pytest.fixture(scope="module")
def melbourne():
    counts = read_melbourne_counts(shared_data(MELBOURNE))
    sensors = read_melbourne_sensors(shared_data(MELBOURNE_SENSORS))
    return counts, sensors


@pytest.mark.slow
def test_melbourne_backtest_beats_seasonal_naive_with_calibrated_intervals(melbourne):
    counts, sensors = melbourne
    events = read_melbourne_events()
    result = backtest(counts, events, horizon="24h", folds=6, test_days=183,
                         estimator=GatheringForecaster(**MELBOURNE_CITY), sensors=sensors)
    print(json.dumps(result, indent=1))  # the figures, for the record (pytest -s)

    # The test period is the last six months, one origin a day, 24 hours each.
    assert result["origins"] == 183
    assert utc(result["test_start"]) <= counts["ts"].max() - pd.Timedelta(days=182)
    assert result["n"] > 100_000
    forecaster = result["methods"]["forecaster"]
    naive = result["methods"]["seasonal_naive"]
    profile = result["methods"]["time_of_week_profile"]
    assert forecaster["mae"] <= 0.75 * naive["mae"]
    assert forecaster["mae"] < profile["mae"]
    assert 0.75 <= result["coverage_80"] <= 0.85
    assert forecaster["n"] == naive["n"] == profile["n"] == result["n"]  # the same points for all

    # Mass-event days are reported apart, and the calendar helps there.
    days = result["event_days"]
    assert {"2014-09-26", "2014-12-31"} <= set(days["days"])
    assert days["n"] > 0
    assert days["methods"]["forecaster"]["mae"] < days["methods"]["seasonal_naive"]["mae"]
    names = {e["name"] for e in result["events"]}
    assert {"New Year's Eve celebrations", "AFL Grand Final parade"} <= names


def test_melbourne_events_are_a_valid_calendar_with_sources_and_installed():
    events = read_melbourne_events()
    schema.validate(events, "calendar")
    local = events.set_index("name")["start"].dt.tz_convert("Australia/Melbourne").dt.date.astype(str)
    assert set(local["White Night Melbourne"]) == {"2013-02-23", "2014-02-22", "2015-02-21"}
    assert set(local["AFL Grand Final parade"]) == {"2012-09-28", "2013-09-27", "2014-09-26"}
    assert len(local["New Year's Eve celebrations"]) == 4
    raw = pd.read_csv(resources.files("safecity") / "data" / "melbourne_events.csv")
    assert raw["source"].notna().all() and len(raw) == len(events)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "data/*.csv" in package_data["safecity"]


# =========================================================================== synthetic city


@pytest.fixture(scope="module")
def city():
    return sim.simulate_city(seed=0, days=28, zones=geo.builtin_zones())


@pytest.fixture(scope="module")
def fitted(city):
    history = city.observations[city.observations["ts"] < ORIGIN]
    return GatheringForecaster().fit(history, calendar=city.calendar, sensors=city.sensors)


def _today(calendar: pd.DataFrame) -> pd.Series:
    return calendar["start"].between(ORIGIN, ORIGIN + pd.Timedelta("24h")) & (calendar["kind"] == "event")


def test_an_event_in_the_calendar_raises_the_forecast_near_its_venue_only(city, fitted):
    today = _today(city.calendar)
    match = city.calendar[today & city.calendar["name"].str.contains("OM|Vélodrome")].iloc[0]
    with_event = fitted.predict(forecast_hours(ORIGIN), observations=city.observations)
    without = fitted.predict(forecast_hours(ORIGIN), observations=city.observations, calendar=city.calendar[~today])
    ratio = (with_event.set_index(["ts", "sensor_id"])["q50"]
             / without.set_index(["ts", "sensor_id"])["q50"]).unstack()

    sensors = city.sensors.set_index("sensor_id").loc[ratio.columns]
    d_match = geo.distance_m(sensors["lon"], sensors["lat"], match["lon"], match["lat"])
    venue = ratio.columns[d_match < 200]  # the camera and the counter at the stadium
    crowd = (ratio.index >= match["start"] - pd.Timedelta(hours=3)) & (ratio.index <= match["end"])
    assert len(venue) >= 2
    assert (ratio.loc[crowd, venue].max() >= 1.5).all()
    assert (ratio.loc[ratio.index < match["start"] - pd.Timedelta(hours=4), venue] == 1).all().all()
    events = city.calendar[today]
    d_any = np.min([geo.distance_m(sensors["lon"], sensors["lat"], e.lon, e.lat)
                    for e in events.itertuples()], axis=0)
    far = ratio.columns[d_any > 3000]
    assert len(far) > 5 and np.allclose(ratio[far], 1.0)


def test_public_holidays_are_learnt_by_the_second_stage_and_take_its_intervals(city):
    history = city.observations[city.observations["ts"] < ORIGIN]
    day = pd.Timestamp("2026-06-15", tz="Europe/Paris")  # a Monday of the history, made a holiday
    holiday = pd.DataFrame({"calendar_id": ["test-holiday"], "kind": ["public_holiday"], "name": ["test"],
                            "start": [day.tz_convert("UTC")], "end": [(day + pd.Timedelta(days=1)).tz_convert("UTC")],
                            "location": [None], "lon": [np.nan], "lat": [np.nan],
                            "expected_attendance": [np.nan]})
    calendar = pd.concat([city.calendar, holiday], ignore_index=True)
    staged = GatheringForecaster().fit(history, calendar=calendar, sensors=city.sensors)
    alone = GatheringForecaster(holiday_stage=False).fit(history, calendar=calendar, sensors=city.sensors)
    # The holiday's hours (of every sensor with a level) join the event hours of the second stage.
    assert staged.n_event_rows_ - alone.n_event_rows_ >= 24 * 10
    assert staged.event_model_ is not None
    # A forecast of a holiday is made by the second stage, with its intervals.
    next_day = pd.Timestamp("2026-06-27", tz="Europe/Paris")
    hours = forecast_hours(next_day, "24h")
    ahead = pd.concat([calendar, holiday.assign(calendar_id="test-holiday-2", start=next_day.tz_convert("UTC"),
                                                end=(next_day + pd.Timedelta(days=1)).tz_convert("UTC"))],
                      ignore_index=True)
    assert staged.forecast_points(hours, calendar=ahead).near_event.all()
    assert not alone.forecast_points(hours, calendar=ahead).near_event.all()
    usual, on_holiday = staged.predict(hours), staged.predict(hours, calendar=ahead)
    assert len(usual) == len(on_holiday) and not np.allclose(usual["q50"], on_holiday["q50"])


def test_the_event_model_learns_from_a_bounded_sample_of_event_hours(city, fitted, monkeypatch):
    """Holidays count at every sensor: a big city's event hours are sampled for the event model
    (``MAX_EVENT_ROWS``), unless every row is asked for (``max_samples=None``)."""
    from safecity.forecast import model

    history = city.observations[city.observations["ts"] < ORIGIN]
    every = fitted.n_event_rows_
    assert fitted.n_event_model_rows_ == every  # a small city: all of them
    monkeypatch.setattr(model, "MAX_EVENT_ROWS", every // 3)
    sampled = GatheringForecaster().fit(history, calendar=city.calendar, sensors=city.sensors)
    assert sampled.n_event_rows_ == every and sampled.n_event_model_rows_ == every // 3
    hours = forecast_hours(ORIGIN)
    assert np.isfinite(sampled.predict(hours)[["q10", "q50", "q90"]]).all().all()
    unbounded = GatheringForecaster(max_samples=None).fit(history, calendar=city.calendar, sensors=city.sensors)
    assert unbounded.n_event_model_rows_ == every


def test_a_gathering_alert_fires_at_the_event_with_its_interval_and_lead_time(city, fitted):
    today = _today(city.calendar)
    match = city.calendar[today & city.calendar["name"].str.contains("OM|Vélodrome")].iloc[0]
    forecast = fitted.predict(forecast_hours(ORIGIN), observations=city.observations)
    usual = fitted.predict(forecast_hours(ORIGIN), observations=city.observations, calendar=city.calendar[~today])
    # A capacity a fifth above each sensor's usual busiest hour of the day.
    capacity = 1.2 * usual.groupby("sensor_id")["q90"].max()
    alerts = gathering_alerts(forecast, capacity, lead_time="6h", sensors=city.sensors)
    schema.validate(alerts, "events")
    assert len(alerts) > 0 and set(alerts["kind"]) == {"gathering_forecast"}

    sensors = city.sensors.set_index("sensor_id")
    venue = sensors.index[geo.distance_m(sensors["lon"], sensors["lat"], match["lon"], match["lat"]) < 200]
    at_venue = alerts[alerts["sensor_id"].isin(venue)]
    assert len(at_venue) >= 1
    for row in at_venue.itertuples():
        details = json.loads(row.details)
        assert match["start"] - pd.Timedelta(hours=3) <= row.ts <= match["end"] + pd.Timedelta(hours=2)
        assert details["peak_time"] == row.ts.isoformat()
        assert details["interval"]["q10"] <= details["expected_peak"] <= details["interval"]["q90"]
        assert row.score == pytest.approx(details["interval"]["q90"] / details["threshold"], rel=1e-3)
        assert details["lead_time_h"] >= 6 and details["issued_at"] == ORIGIN.isoformat()
        assert row.lon == pytest.approx(sensors.loc[row.sensor_id, "lon"])
    # Every alert is near one of the day's events: a quiet street does not cry wolf.
    events = city.calendar[today]
    located = sensors.loc[alerts["sensor_id"]]
    d_any = np.min([geo.distance_m(located["lon"], located["lat"], e.lon, e.lat)
                    for e in events.itertuples()], axis=0)
    assert (d_any < 2200).all()

    # Asked too late (less than the lead time before the crowd), the alert is withheld.
    late = gathering_alerts(forecast, capacity, now=match["end"] - pd.Timedelta(hours=1),
                               lead_time="6h")
    assert late.empty


def test_quantiles_are_ordered_any_quantile_can_be_asked_and_the_horizon_is_respected(city, fitted):
    table = fitted.predict(forecast_hours(ORIGIN, "24h"), quantiles=(0.05, 0.25, 0.5, 0.75, 0.95),
                           observations=city.observations)
    cols = ["q5", "q25", "q50", "q75", "q95"]
    assert list(table.columns) == ["ts", "sensor_id", "metric", "origin", *cols]
    assert (np.diff(table[cols].to_numpy(), axis=1) >= 0).all()
    assert (table["q5"] < table["q95"]).mean() > 0.99  # intervals, not points
    assert table["ts"].min() == ORIGIN and table["ts"].max() == ORIGIN + pd.Timedelta("23h")
    assert (table["origin"] == ORIGIN).all()
    assert table.groupby("ts").size().nunique() == 1  # every sensor at every hour
    with pytest.raises(ValueError, match="longer than the model"):
        fitted.predict(forecast_hours(ORIGIN, "48h"))


def test_x_names_the_hours_and_sensors_to_forecast(city, fitted):
    """``predict(X)`` forecasts what X asks for: its hours, and its sensors when it names them."""
    every = fitted.predict(forecast_hours(ORIGIN, "24h"), observations=city.observations)
    two = ["cnt-001", "cnt-003"]
    some = fitted.predict(forecast_hours(ORIGIN, "6h", sensor_ids=two), observations=city.observations)
    assert set(some["sensor_id"]) == set(two) and len(some) == 2 * 6
    expected = every[every["sensor_id"].isin(two) & (every["ts"] < ORIGIN + pd.Timedelta("6h"))]
    pd.testing.assert_frame_equal(some, expected.reset_index(drop=True))
    with pytest.raises(ValueError, match="whole hours"):
        fitted.predict(pd.DataFrame({"ts": [ORIGIN + pd.Timedelta("30min")]}))


def test_hyperparameters_are_checked_in_fit_where_they_are_declared(city):
    history = city.observations[city.observations["ts"] < ORIGIN]
    for bad in ({"horizon": "8D"}, {"horizon": "soon"}, {"tz": "Europe/Marseille"}, {"school_zone": "D"},
                {"max_iter": 0}):
        with pytest.raises(ValueError, match=f"'{next(iter(bad))}' parameter"):
            GatheringForecaster(**bad).fit(history)


def test_a_forecast_uses_nothing_at_or_after_its_origin(city, fitted):
    obs = city.observations
    future = obs["ts"] >= ORIGIN
    tampered = obs.assign(value=np.where(future, obs["value"] * 10 + 1000, obs["value"]))
    a = fitted.predict(forecast_hours(ORIGIN), observations=obs)
    b = fitted.predict(forecast_hours(ORIGIN), observations=tampered)
    pd.testing.assert_frame_equal(a, b)


def test_the_estimator_follows_scikit_learn_conventions(city):
    est = GatheringForecaster(history_days=20, max_iter=50)
    params = est.get_params()
    with pytest.raises(NotFittedError):
        est.predict(forecast_hours(ORIGIN))
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    history = city.observations[city.observations["ts"] < ORIGIN]
    assert est.fit(history, calendar=city.calendar, sensors=city.sensors) is est
    assert est.get_params() == params  # fit leaves the hyperparameters alone
    learned = [k for k in vars(est) if k not in params]
    assert learned and all(k.endswith("_") for k in learned)
    assert not hasattr(twin, "model_")
    assert est.n_features_in_ == len(est.feature_names_)
    assert est.set_params(max_iter=20) is est and est.max_iter == 20
    # Fitting twice on the same data gives the same forecast (seeded).
    again = clone(est).set_params(max_iter=50).fit(history, calendar=city.calendar, sensors=city.sensors)
    pd.testing.assert_frame_equal(again.predict(forecast_hours(ORIGIN), observations=city.observations),
                                  clone(again).fit(history, calendar=city.calendar, sensors=city.sensors)
                                  .predict(forecast_hours(ORIGIN), observations=city.observations))


def test_missing_hours_stay_missing_and_stopped_sensors_are_not_forecast(city):
    obs = city.observations
    counts = obs[obs["metric"] == "people_count"]
    start = counts["ts"].min()
    stopped = (counts["sensor_id"] == "cnt-010") & (counts["ts"] >= start + pd.Timedelta(days=10))
    late = (counts["sensor_id"] == "cnt-011") & (counts["ts"] < start + pd.Timedelta(days=18))
    gap = (counts["sensor_id"] == "cnt-012") & counts["ts"].between(utc("2026-06-10 08:00"),
                                                                    utc("2026-06-10 10:59"))
    half_hour = (counts["sensor_id"] == "cnt-013") & counts["ts"].between(utc("2026-06-11 09:00"),
                                                                          utc("2026-06-11 09:29"))
    holed = counts[~(stopped | late | gap | half_hour)]

    wide = hourly_counts(holed)
    assert wide.loc[utc("2026-06-10 08:00"):utc("2026-06-10 10:00"), "cnt-012"].isna().all()
    assert np.isnan(wide.loc[utc("2026-06-11 09:00"), "cnt-013"])  # half an hour is not an hour
    hour = counts[(counts["sensor_id"] == "cnt-013") & (counts["ts"].dt.floor("h") == utc("2026-06-11 10:00"))]
    assert wide.loc[utc("2026-06-11 10:00"), "cnt-013"] == hour["value"].sum()

    model = GatheringForecaster(max_iter=50).fit(holed[holed["ts"] < ORIGIN], calendar=city.calendar,
                                                 sensors=city.sensors)
    table = model.predict(forecast_hours(ORIGIN), observations=holed)
    assert "cnt-010" not in set(table["sensor_id"])  # silent for sixteen days: not forecast
    assert "cnt-011" in set(table["sensor_id"])  # started ten days ago: forecast
    assert table[["q10", "q50", "q90"]].notna().all().all()


def test_aggregate_zones_sums_sensors_and_leaves_incomplete_hours_out(city):
    counts = city.observations[city.observations["metric"] == "people_count"]
    sensors = city.sensors
    zone = sensors.loc[sensors["sensor_id"] == "cnt-001", "zone"].iat[0]
    members = sensors.loc[(sensors["zone"] == zone) & sensors["sensor_id"].isin(counts["sensor_id"]),
                          "sensor_id"]
    assert len(members) >= 2
    dropped = (counts["sensor_id"] == members.iat[0]) & (counts["ts"].dt.floor("h") == utc("2026-06-03 12:00"))
    obs, zones = aggregate_zones(counts[~dropped], sensors)
    series = obs[obs["sensor_id"] == zone].set_index("ts")["value"]
    wide = hourly_counts(counts)
    assert series[utc("2026-06-03 11:00")] == pytest.approx(wide.loc[utc("2026-06-03 11:00"), members].sum())
    assert utc("2026-06-03 12:00") not in series.index
    assert zone in set(zones["sensor_id"]) and zones[["lon", "lat"]].notna().all().all()


# =========================================================================== baselines


def _hourly(values: np.ndarray, start: str, sensors=("a", "b")) -> pd.DataFrame:
    ts = pd.date_range(start, periods=len(values), freq="h", tz="UTC")
    return pd.DataFrame({"ts": np.repeat(ts, len(sensors)), "sensor_id": np.tile(sensors, len(ts)),
                         "metric": "people_count", "value": np.repeat(values, len(sensors))})


def test_seasonal_naive_is_the_same_local_hour_a_week_before_across_a_clock_change():
    # Clocks go forward in Paris on Sunday 29 March 2026: 09:00 local is 08:00 UTC
    # before and 07:00 UTC after. The value is 1 + the UTC hour of the week, so we see
    # which hour was taken: 09:00 local a week before (08:00 UTC), not 07:00 UTC.
    hours = pd.date_range("2026-03-02", "2026-03-30", freq="h", tz="UTC", inclusive="left")
    history = _hourly(1.0 + hours.day_of_week * 24 + hours.hour, "2026-03-02")
    origin = pd.Timestamp("2026-03-30", tz="Europe/Paris").tz_convert("UTC")
    table = seasonal_naive(history, origin, "24h")
    nine = table[(table["ts"] == utc("2026-03-30 07:00")) & (table["sensor_id"] == "a")]
    assert nine["q50"].iat[0] == 1 + 8  # Monday 08:00 UTC
    assert len(table) == 2 * 24
    assert (table["q10"] <= table["q50"]).all() and (table["q50"] <= table["q90"]).all()


def test_time_of_week_profile_is_the_median_of_that_local_hour_of_the_week():
    hours = pd.date_range("2026-01-05", periods=4 * 168, freq="h", tz="UTC")
    week = np.arange(len(hours)) // 168  # 0, 1, 2, 3: the week's number
    history = _hourly(week * 10.0 + 1, "2026-01-05")
    table = time_of_week_profile(history, "2026-02-02", "24h", tz="UTC")
    assert (table["q50"] == 16.0).all()  # median of 1, 11, 21, 31
    assert (table["q10"] < table["q50"]).all() and (table["q90"] > table["q50"]).all()


# =========================================================================== alerts


def _forecast(q90: list[float], sensor="z1", start="2026-07-01 00:00") -> pd.DataFrame:
    ts = pd.date_range(start, periods=len(q90), freq="h", tz="UTC")
    q90 = np.asarray(q90, float)
    return pd.DataFrame({"ts": ts, "sensor_id": sensor, "metric": "people_count",
                         "origin": utc(start), "q10": q90 * 0.5, "q50": q90 * 0.8, "q90": q90})


def test_gathering_alerts_one_per_run_above_threshold_after_the_lead_time():
    fc_table = pd.concat([
        _forecast([10, 10, 10, 10, 10, 10, 10, 60, 80, 70, 10, 10, 90, 10], "z1"),
        _forecast([10] * 14, "z2"),
        _forecast([200] * 14, "z3"),
    ], ignore_index=True)
    alerts = gathering_alerts(fc_table, {"z1": 50, "z2": 50}, lead_time="6h")
    assert alerts["sensor_id"].tolist() == ["z1", "z1"]  # z3 has no threshold, z2 stays below
    first = json.loads(alerts["details"].iat[0])
    assert alerts["ts"].iat[0] == utc("2026-07-01 08:00")  # the peak of the 07:00-10:00 run
    assert first["start"] == "2026-07-01T07:00:00+00:00" and first["end"] == "2026-07-01T10:00:00+00:00"
    assert first["expected_peak"] == 64.0 and first["interval"] == {"q10": 40.0, "q50": 64.0, "q90": 80.0}
    assert alerts["score"].iat[0] == pytest.approx(80 / 50) and first["lead_time_h"] == 8.0
    assert alerts["ts"].iat[1] == utc("2026-07-01 12:00")
    assert alerts["event_id"].is_unique

    later = gathering_alerts(fc_table, {"z1": 50}, lead_time="10h")
    assert later["ts"].tolist() == [utc("2026-07-01 12:00")]  # the 08:00 peak is too soon to plan
    assert len(gathering_alerts(fc_table, 150.0, lead_time="0h")) == 1  # one number for all: z3


# =========================================================================== command line


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory, city):
    counts = city.observations[(city.observations["metric"] == "people_count")
                               & city.observations["sensor_id"].isin(["cnt-001", "cnt-004", "cam-001"])]
    path = tmp_path_factory.mktemp("forecast") / "obs.csv"
    hourly_counts(counts).stack().rename("value").reset_index().assign(metric="people_count") \
        .to_csv(path, index=False)
    return path


def test_cli_backtest_prints_the_documented_json(small_csv):
    result = CliRunner().invoke(main, ["forecast", "backtest", "--observations", str(small_csv),
                                       "--horizon", "24h", "--folds", "2", "--test-days", "4"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"horizon", "folds", "origins", "test_start", "test_end", "n", "methods",
            "mae_ratio_to_seasonal_naive", "coverage_80", "event_days", "events"} <= set(report)
    assert set(report["methods"]) == {"forecaster", "seasonal_naive", "time_of_week_profile"}
    for scores in report["methods"].values():
        assert {"mae", "mape", "wape", "coverage_80", "n"} <= set(scores) and scores["n"] > 0
    assert report["origins"] == 4 and report["folds"] == 2


def test_cli_backtest_before_is_a_validation_run_that_never_reads_the_test_period(small_csv):
    args = ["forecast", "backtest", "--observations", str(small_csv), "--horizon", "24h",
            "--folds", "2", "--test-days", "4"]
    test = json.loads(CliRunner().invoke(main, args).stdout)
    result = CliRunner().invoke(main, args + ["--before", test["test_start"]])
    assert result.exit_code == 0, result.output
    validation = json.loads(result.stdout)
    # The same protocol on the days before: its last forecast ends where the test period starts.
    assert validation["origins"] == 4
    assert utc(validation["test_end"]) == utc(test["test_start"])
    bad = CliRunner().invoke(main, args + ["--before", "soon"])
    assert bad.exit_code != 0 and "--before" in bad.output
    early = CliRunner().invoke(main, args + ["--before", "1990-01-01"])
    assert early.exit_code != 0 and "--before 1990-01-01: no observation is before it" in early.output


def test_cli_predict_writes_the_forecast_and_alerts(small_csv, tmp_path):
    out, alerts = tmp_path / "forecast.csv", tmp_path / "alerts.csv"
    result = CliRunner().invoke(main, ["forecast", "predict", "--observations", str(small_csv),
                                       "--out", str(out), "--threshold", "1", "--alerts", str(alerts),
                                       "--lead-time", "0h"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    table = pd.read_csv(out)
    assert {"ts", "sensor_id", "q10", "q50", "q90"} <= set(table.columns)
    assert summary["rows"] == len(table) == 3 * 24 and summary["alerts"] > 0
    assert set(pd.read_csv(alerts)["kind"]) == {"gathering_forecast"}

    # Issued in the past, the forecast starts there and is fitted on what came before only.
    result = CliRunner().invoke(main, ["forecast", "predict", "--observations", str(small_csv),
                                       "--out", str(out), "--start", "2026-06-20T22:00Z"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["start"] == "2026-06-20T22:00:00+00:00"


def test_cli_bad_input_names_the_file_and_the_column(small_csv, tmp_path):
    bad = tmp_path / "no_value.csv"
    pd.read_csv(small_csv).drop(columns="value").to_csv(bad, index=False)
    result = CliRunner().invoke(main, ["forecast", "backtest", "--observations", str(bad)])
    assert result.exit_code != 0
    assert str(bad) in result.output and "'value'" in result.output

    calendar = tmp_path / "events.csv"
    calendar.write_text("name,start,location\nConcert,2026-06-20T20:00,\n")
    result = CliRunner().invoke(main, ["forecast", "backtest", "--observations", str(small_csv),
                                       "--calendar", str(calendar)])
    assert result.exit_code != 0
    assert str(calendar) in result.output and "'end'" in result.output
