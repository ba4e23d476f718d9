"""The gathering forecaster fitted and forecasting on a real two-process Dask cluster equals one process's.

The history is partitioned by sensor; each worker must hold its own sensors
only, and the fitted model must forecast exactly (bit for bit) what the model
one process fits on the same rows forecasts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from safecity.cluster import forecasts, history
from safecity.data.schema import validate
from safecity.forecast.model import GatheringForecaster
from safecity.forecast.table import forecast_hours

TZ = "Europe/Paris"
START = pd.Timestamp("2026-03-02 23:00", tz="UTC")  # local midnight, Tuesday 3 March (a clock change in the data)
DAYS = 45
N_SENSORS = 9


@pytest.fixture(autouse=True)
def one_thread():
    """One process computes with one thread, as a worker does."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Hourly counts of sensors in three places, with outages, a sensor that starts late and one that
    stops, placed events (one near a few sensors, one everywhere) every few days, and a duplicate row."""
    rng = np.random.default_rng(1)
    ts = pd.date_range(START, periods=24 * DAYS, freq="h")
    hour = np.asarray(ts.tz_convert(TZ).hour)
    shape = 0.2 + np.exp(-0.5 * ((hour - 9) / 2) ** 2) + np.exp(-0.5 * ((hour - 18) / 2) ** 2)
    ids = [f"s-{i:02d}" for i in range(N_SENSORS)]
    lon = 5.37 + 0.004 * np.arange(N_SENSORS)
    level = rng.lognormal(3, 0.6, N_SENSORS)
    starts = [START + pd.Timedelta(days=d, hours=18) for d in range(3, DAYS, 4)]
    lam = shape[:, None] * level[None, :]
    for s in starts:  # a crowd near the first sensors at each match
        on = (ts >= s - pd.Timedelta(hours=2)) & (ts < s + pd.Timedelta(hours=3))
        lam[np.ix_(on, np.arange(3))] *= 3
    wide = pd.DataFrame(rng.poisson(lam).astype(float), index=ts, columns=ids)
    wide.iloc[200:260, 4] = np.nan  # an outage
    wide.iloc[: 24 * 20, 7] = np.nan  # starts late: no 28-day lag for a while
    wide.iloc[-24 * 6:, 8] = np.nan  # stops before the end
    long = wide.stack().dropna().rename("value").rename_axis(["ts", "sensor_id"]).reset_index()
    long = pd.concat([long, long.iloc[[500]].assign(value=2.0)], ignore_index=True)  # an hour in two rows
    long = long.sample(frac=1, random_state=1).reset_index(drop=True).assign(metric="people_count")
    sensors = pd.DataFrame({"sensor_id": ids, "lon": lon, "lat": 43.29})
    events = pd.DataFrame({
        "calendar_id": [f"match-{i}" for i in range(len(starts))], "kind": "event",
        "name": "Match", "start": starts, "end": [s + pd.Timedelta(hours=2) for s in starts],
        "location": "stadium", "lon": 5.37, "lat": 43.29, "expected_attendance": 30000.0})
    fair = pd.DataFrame({"calendar_id": ["fair"], "kind": ["event"], "name": ["City fair"],
                         "start": [START + pd.Timedelta(days=30, hours=8)],
                         "end": [START + pd.Timedelta(days=30, hours=20)], "location": ["everywhere"],
                         "lon": [np.nan], "lat": [np.nan], "expected_attendance": [np.nan]})
    calendar = validate(pd.concat([events, fair], ignore_index=True), "calendar")
    return validate(long[["ts", "sensor_id", "metric", "value"]], "observations"), sensors, calendar


def _estimator(**kw) -> GatheringForecaster:
    return GatheringForecaster(tz=TZ, country="FR", school_zone="B", max_iter=25, max_samples=1000,
                               history_days=20, calibration_days=7, **kw)


def _frame(obs: pd.DataFrame, npartitions: int = 3):
    import dask.dataframe as dd

    return history.by_sensor(dd.from_pandas(obs, npartitions=2), npartitions=npartitions)


def test_the_forecaster_fitted_on_two_workers_forecasts_exactly_what_one_process_does(client, data):
    obs, sensors, calendar = data
    cut = START + pd.Timedelta(days=38)
    single = _estimator().fit(obs[obs["ts"] < cut], calendar=calendar, sensors=sensors)
    # Events modelled; ordinary hours drawn from more candidates than kept, to fit and to calibrate.
    assert single.event_model_ is not None and single.n_train_ == 1000 + single.n_event_rows_
    assert single.n_calibration_ > 1000

    frame = _frame(obs)
    fitted = forecasts.fit(client, frame, _estimator(), calendar=calendar, sensors=sensors, until=cut)
    model = forecasts.to_model(client, fitted)
    assert list(model.sensor_ids_) == list(single.sensor_ids_) and model.end_ == single.end_
    assert (model.n_train_, model.n_calibration_, model.n_event_rows_) == \
        (single.n_train_, single.n_calibration_, single.n_event_rows_)
    np.testing.assert_array_equal(model.profile_, single.profile_)
    pd.testing.assert_frame_equal(model.history_, single.history_, check_exact=True)
    for name in ("residual_table_", "event_residual_table_", "residual_edges_", "unseen_features_"):
        np.testing.assert_array_equal(getattr(model, name), getattr(single, name))

    origins = [cut, cut + pd.Timedelta(days=2, hours=6)]
    asked = [forecast_hours(o, "24h") for o in origins]
    on_cluster = forecasts.predict(client, fitted, frame, asked)
    for X, got in zip(asked, on_cluster):
        expected = single.predict(X, observations=obs)
        assert len(expected) > 100
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        pd.testing.assert_frame_equal(model.predict(X, observations=obs), expected, check_exact=True)


def test_each_worker_holds_only_its_own_sensors(client, data):
    """The backtest's layout: one block of sensors sent to each worker; its rows, fitted share and
    forecasts stay there, and what the workers hold is read from their memory."""
    obs, sensors, calendar = data
    frame = forecasts.scatter_by_sensor(client, obs, "people_count")
    fitted = forecasts.fit(client, frame, _estimator(), calendar=calendar, sensors=sensors)

    def held(dask_worker):
        rows = {s for v in dask_worker.data.values() if isinstance(v, pd.DataFrame) for s in v["sensor_id"]}
        fitted = sorted(s for v in dask_worker.data.values() if isinstance(v, forecasts.PartModel) for s in v.ids)
        return sorted(rows), fitted

    on_workers = client.run(held)
    assert len(on_workers) == 2 and all(f for _, f in on_workers.values())
    for rows, fitted_ids in on_workers.values():
        assert rows == fitted_ids  # a worker's rows are those of the sensors it fitted
    seen = [s for _, ids in on_workers.values() for s in ids]
    assert sorted(seen) == sorted(obs["sensor_id"].unique())  # each sensor once: no worker holds another's
    assert {w: sorted(ids) for w, ids in fitted.workers.items()} == {w: f for w, (_, f) in on_workers.items()}

    # Forecasting keeps to the same workers, and gives what the whole model gives.
    X = forecast_hours(START + pd.Timedelta(days=DAYS - 1), "24h")
    got = forecasts.predict(client, fitted, frame, [X])[0]
    assert client.run(held) == on_workers
    pd.testing.assert_frame_equal(got, forecasts.to_model(client, fitted).predict(X, observations=obs),
                                  check_exact=True)
