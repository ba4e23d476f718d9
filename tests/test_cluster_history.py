"""The baseline and the forecaster's backtest on a real two-process Dask cluster equal one process's.

A ``distributed.LocalCluster`` of two single-threaded worker processes is
shared by the module. The history is partitioned by sensor; each worker must
hold its own sensors' rows only, and the thresholds, scores, alarm periods
(sensor and group) and backtest metrics must be those of one process.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from safecity.baseline.periods import alarm_periods
from safecity.baseline.replay import replay_live
from safecity.baseline.usual import UsualLevel
from safecity.cli import main
from safecity.cluster import history
from safecity.data.schema import validate

TZ = "Europe/Paris"
START = pd.Timestamp("2026-03-30 22:00", tz="UTC")  # local midnight, Tuesday 31 March (after summer time)
CUT = START + pd.Timedelta(days=28)
N_SENSORS = 30


@pytest.fixture
def one_thread():
    """One process computes with one thread, as a worker does (Dask sets OMP_NUM_THREADS=1 in its workers):
    the gradient boosting's OpenMP threads would otherwise fight over a loaded machine's cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _counts(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Hourly counts (long), sensors (three zones, positions) and a calendar with a placed event.

    Five weeks: four to fit, one to flag, with outages (missing rows), a sensor
    that stops before the cut, one that starts after it, an evening when most
    of the city is busier, a zone that goes quiet, one sensor's spike, and a
    duplicate row (summed).
    """
    rng = np.random.default_rng(seed)
    ts = pd.date_range(START, START + pd.Timedelta(days=35), freq="h", inclusive="left")
    hour = np.asarray(ts.tz_convert(TZ).hour)
    shape = 0.2 + np.exp(-0.5 * ((hour - 9) / 2) ** 2) + np.exp(-0.5 * ((hour - 18) / 2) ** 2)
    ids = [f"s-{i:03d}" for i in range(N_SENSORS)]
    level = rng.lognormal(3, 0.5, N_SENSORS)
    lam = shape[:, None] * level[None, :]
    test = ts >= CUT
    evening = test & (ts.tz_convert(TZ).day == 30) & (hour >= 19) & (hour <= 21)
    lam[evening, : int(N_SENSORS * 0.8)] *= 4
    quiet = test & (ts.tz_convert(TZ).day == 2) & (hour >= 8) & (hour <= 12)
    lam[np.ix_(quiet, np.arange(20, 30))] *= 0.1
    values = rng.poisson(lam).astype(float)
    values[np.nonzero(test)[0][30], 5] *= 6
    wide = pd.DataFrame(values, index=ts, columns=ids)
    wide.iloc[100:130, 3] = np.nan  # an outage
    wide.iloc[500:520, 17] = np.nan
    wide.loc[ts >= CUT, "s-007"] = np.nan  # stops before the cut
    wide.loc[ts < CUT, "s-029"] = np.nan  # starts after it
    long = wide.stack().rename("value").rename_axis(["ts", "sensor_id"]).reset_index()
    long = pd.concat([long, long.iloc[[40]].assign(value=3.0)], ignore_index=True)  # a bin in two pieces
    long = long.sample(frac=1, random_state=seed).reset_index(drop=True)
    sensors = pd.DataFrame({"sensor_id": ids, "lon": 5.37 + 0.01 * np.arange(N_SENSORS), "lat": 43.29,
                            "zone": [("north", "centre", "south")[i // 10] for i in range(N_SENSORS)]})
    calendar = validate(pd.DataFrame({
        "calendar_id": ["match"], "kind": ["event"], "name": ["Match at the stadium"],
        "start": [CUT + pd.Timedelta(days=3, hours=18)], "end": [CUT + pd.Timedelta(days=3, hours=21)],
        "location": ["stadium"], "lon": [5.40], "lat": [43.29], "expected_attendance": [40000.0]}), "calendar")
    return long, sensors, calendar


@pytest.fixture(scope="module")
def data():
    return _counts()


def _model(**kw) -> UsualLevel:
    return UsualLevel(tz=TZ, rate=0.5, country="FR", school_zone="B", max_calibration_sensors=12, **kw)


def test_baseline_on_two_workers_equals_one_process(client, data):
    long, sensors, calendar = data
    single = _model().fit(long[long["ts"] < CUT], calendar=calendar, sensors=sensors)
    expected = alarm_periods(single, replay_live(single, long[long["ts"] >= CUT]))
    assert single.calibrated_ and (expected["group"] == "city").any() and expected["group"].isna().any()

    import dask.dataframe as dd

    frame = history.by_sensor(dd.from_pandas(long, npartitions=3), npartitions=2)
    fitted = history.fit(client, frame, _model(), train_until=CUT, calendar=calendar, sensors=sensors)
    got = history.alarm_periods(client, fitted)

    model = fitted.model
    assert model.threshold_ == single.threshold_ and model.realised_rate_ == single.realised_rate_
    assert model.group_threshold_ == single.group_threshold_
    assert list(model.sensor_ids_) == list(single.sensor_ids_) and model.groups_ == single.groups_
    pd.testing.assert_frame_equal(got, expected, check_exact=True)

    # Every sensor's rows on one worker only, and both workers used: read from the workers' memory.
    def held(dask_worker):
        return sorted(s for v in dask_worker.data.values() if isinstance(v, history.PartFit) for s in v.ids)

    on_workers = client.run(held)
    assert len(on_workers) == 2 and all(on_workers.values())
    seen = [s for ids in on_workers.values() for s in ids]
    assert sorted(seen) == sorted(long["sensor_id"].unique())  # each sensor once: no worker holds another's
    assert {w: sorted(ids) for w, ids in fitted.workers.items()} == on_workers

    # What a worker keeps of its partitions is their scores: no per-sensor model arrays (bounded memory).
    def kept_state(dask_worker):
        return sorted({name for v in dask_worker.data.values() if isinstance(v, history.PartFit)
                       for name in history.SENSOR_STATE if hasattr(v.model, name)})

    assert client.run(kept_state) == {w: [] for w in on_workers}


def test_static_scores_and_the_whole_grid_match_one_process(client, data):
    long, sensors, calendar = data
    single = _model(update_every=None).fit(long[long["ts"] < CUT], calendar=calendar, sensors=sensors)
    expected = alarm_periods(single, single.departures(long[long["ts"] >= CUT]))

    import dask.dataframe as dd

    frame = history.by_sensor(dd.from_pandas(long, npartitions=2), npartitions=2)
    fitted = history.fit(client, frame, _model(update_every=None), train_until=CUT, calendar=calendar,
                         sensors=sensors, score="static")
    pd.testing.assert_frame_equal(history.alarm_periods(client, fitted), expected, check_exact=True)

    whole = _model().fit(long, calendar=calendar, sensors=sensors)
    z = whole.score_samples(long).to_numpy()
    on_cluster = history.fit(client, frame, _model(), calendar=calendar, sensors=sensors)
    summary = history.score_summary(client, on_cluster)
    assert on_cluster.model.threshold_ == whole.threshold_
    assert summary["alarm_bins"] == int((np.abs(z[np.isfinite(z)]) > whole.threshold_).sum())
    assert summary["max_abs_score"] == float(np.nanmax(np.abs(z)))


def test_cli_baseline_flag_on_a_cluster_writes_the_same_file(cluster, data, tmp_path):
    long, sensors, _ = data
    obs, sensors_path = tmp_path / "obs.parquet", tmp_path / "sensors.csv"
    long.to_parquet(obs, index=False)
    sensors.to_csv(sensors_path, index=False)
    args = ["baseline", "flag", "--observations", str(obs), "--train-until", CUT.isoformat(), "--tz", TZ,
            "--sensors", str(sensors_path), "--rate", "0.5"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    first = CliRunner().invoke(main, args + ["-o", str(one)])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, args + ["-o", str(two), "--scheduler", cluster.scheduler_address])
    assert second.exit_code == 0, second.output
    assert json.loads(one.read_text()) and one.read_text() == two.read_text()
    summary = [json.loads(r.stderr.strip().splitlines()[-1]) for r in (first, second)]
    assert summary[0] == summary[1] and summary[0]["group_anomalies"] >= 1


def _hourly_counts(n_sensors: int = 3, days: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ts = pd.date_range("2026-01-05", periods=24 * days, freq="h", tz="UTC")
    hour = np.asarray(ts.tz_convert(TZ).hour)
    rows = [pd.DataFrame({"ts": ts, "sensor_id": f"s-{i}", "metric": "people_count",
                          "value": rng.poisson((5 + 20 * np.exp(-0.5 * ((hour - 14) / 3) ** 2)) * (1 + i))
                          .astype(float)}) for i in range(n_sensors)]
    return validate(pd.concat(rows, ignore_index=True), "observations")


def test_forecast_backtest_folds_on_two_workers_equal_one_process(client, one_thread):
    from safecity.evaluation.forecasts import backtest
    from safecity.forecast.model import GatheringForecaster

    obs = _hourly_counts()
    est = GatheringForecaster(tz=TZ, country=None, school_zone=None, max_iter=30, calibration_days=7)
    one = backtest(obs, None, horizon="24h", folds=2, test_days=4, estimator=est)
    two = backtest(obs, None, horizon="24h", folds=2, test_days=4, estimator=est, client=client)
    one.pop("seconds"), two.pop("seconds")
    assert one == two and one["n"] == 3 * 4 * 24 and one["folds"] == 2
    assert set(one["methods"]) == {"forecaster", "seasonal_naive", "time_of_week_profile"}


def test_cli_forecast_backtest_on_a_cluster_prints_the_same_metrics(cluster, one_thread, tmp_path):
    obs = tmp_path / "obs.parquet"
    _hourly_counts(n_sensors=2, days=35).to_parquet(obs, index=False)
    args = ["forecast", "backtest", "--observations", str(obs), "--tz", TZ, "--country", "none",
            "--school-zone", "none", "--folds", "2", "--test-days", "2"]
    got = []
    for extra in ([], ["--scheduler", cluster.scheduler_address]):
        result = CliRunner().invoke(main, args + extra)
        assert result.exit_code == 0, result.output
        metrics = json.loads(result.stdout)
        metrics.pop("seconds")
        got.append(metrics)
    assert got[0] == got[1] and got[0]["n"] == 2 * 2 * 24


@pytest.mark.parametrize("t", [
    np.repeat(np.arange(0, 600, 60) * 10**9 + 1_780_000_000 * 10**9, 3),  # whole seconds: a bitmap
    np.array([5, 5, 3, 10**9 + 1], np.int64),  # sub-second times: hashed
    np.array([-3 * 10**9, 10**9, 10**9], np.int64),  # before 1970
    np.array([], np.int64),
])
def test_the_grid_s_distinct_times_are_numpy_s(t):
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(t)
    np.testing.assert_array_equal(history._distinct(shuffled), np.unique(t))


def test_sensor_blocks_read_from_parquet_are_exactly_their_sensors_rows(tmp_path):
    """Row groups pruned by their sensor_id statistics (a file sorted by sensor), or scanned (ids spread
    over every row group), over one file or a folder of files: each block gets exactly its sensors' rows."""
    rng = np.random.default_rng(1)
    ts = pd.date_range("2026-03-02", periods=48, freq="h", tz="UTC")
    ids = [f"s-{i:03d}" for i in range(40)]
    long = pd.DataFrame({"ts": np.tile(ts, len(ids)), "sensor_id": np.repeat(ids, len(ts)),
                         "value": rng.poisson(20, len(ts) * len(ids)).astype(float)})
    sorted_file = tmp_path / "sorted.parquet"
    long.to_parquet(sorted_file, index=False, row_group_size=len(ts) * 3)  # 3 sensors a row group
    spread_file = tmp_path / "spread.parquet"
    long.sample(frac=1, random_state=0).to_parquet(spread_file, index=False, row_group_size=500)
    folder = tmp_path / "folder"
    folder.mkdir()
    long[long["sensor_id"] < "s-020"].to_parquet(folder / "a.parquet", index=False, row_group_size=48)
    long[long["sensor_id"] >= "s-020"].to_parquet(folder / "b.parquet", index=False, row_group_size=48)

    def expected(block):
        rows = long[long["sensor_id"].isin(block)]
        return rows.sort_values(["sensor_id", "ts"]).reset_index(drop=True)

    blocks = history.sensor_blocks(ids + ["s-999-absent"], 6)
    for path in (sorted_file, spread_file, folder):
        frame = history.read_sensor_blocks(path, blocks)
        assert frame.npartitions == len(blocks)
        for k, block in enumerate(blocks):
            got = frame.partitions[k].compute(scheduler="sync")
            assert isinstance(got["sensor_id"].dtype, pd.CategoricalDtype)
            got = got.astype({"sensor_id": str}).sort_values(["sensor_id", "ts"]).reset_index(drop=True)
            pd.testing.assert_frame_equal(got, expected(block), check_dtype=False)
    assert history._read_block([], str(sorted_file)).empty
