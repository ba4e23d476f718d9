"""Storage under hostile or careless use: concurrent writers, a clock given on the
command line, wrong data that used to be stored silently, crash leftovers.

Every test runs the real thing: real files, real ``safecity`` processes.
"""
from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from safecity.data import schema
from safecity.data.store import os_user
from safecity.data.store import Store

CLI = [sys.executable, "-c", "import sys; from safecity.cli import main; sys.exit(main())"]


def _cli(*args, check=True):
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _start(*args):
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _obs(start, n, sensors=("cam-1",), metric="people_count"):
    ts = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    return pd.DataFrame({
        "ts": np.repeat(ts, len(sensors)), "sensor_id": list(sensors) * n, "metric": metric,
        # the value depends on the key only: overlapping batches agree where they overlap
        "value": np.repeat((ts.hour * 60 + ts.minute).to_numpy() % 50, len(sensors)).astype(float),
    })


def _sensors(ids):
    return pd.DataFrame({"sensor_id": list(ids), "kind": "counter", "lon": 5.37, "lat": 43.29,
                         "zone": None, "metadata": None})


# --------------------------------------------------------------------------- 4. concurrent writers

@pytest.mark.slow
def test_concurrent_ingest_processes_store_each_key_once(tmp_path):
    """Six `safecity store ingest` at once, each overlapping the others: no key twice.

    Each batch is one large day, so that every writer's read-keys-then-write
    of that day is long enough for the others to run into it.
    """
    data, files = tmp_path / "data", []
    for i in range(6):  # sensors s(20i) .. s(20i+149): neighbours share 130 sensors
        path = tmp_path / f"obs{i}.parquet"
        _obs("2026-06-01", 1440, sensors=[f"s{k}" for k in range(20 * i, 20 * i + 150)]
             ).to_parquet(path)
        files.append(path)
    procs = [_start("store", "ingest", "observations", f, "--data-dir", data) for f in files]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    stored = Store(data).read("observations")
    expected = pd.concat([pd.read_parquet(f) for f in files]).drop_duplicates(["ts", "sensor_id"])
    assert stored.duplicated(["ts", "sensor_id", "metric"]).sum() == 0
    assert len(stored) == len(expected)
    # and each process reported exactly the rows it added
    assert sum(json.loads(o[0])["new_rows"] for o in outs) == len(expected)


@pytest.mark.slow
def test_concurrent_sensor_upserts_lose_no_sensor(tmp_path):
    """Eight processes each add one sensor to a large sensors table: all eight are kept."""
    data = tmp_path / "data"
    Store(data).append("sensors", _sensors(f"base-{i}" for i in range(200_000)))
    files = []
    for i in range(8):
        path = tmp_path / f"sensor{i}.csv"
        _sensors([f"new-{i}"]).to_csv(path, index=False)
        files.append(path)
    procs = [_start("store", "ingest", "sensors", f, "--data-dir", data) for f in files]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ids = set(Store(data).read("sensors")["sensor_id"])
    assert {f"new-{i}" for i in range(8)} <= ids
    assert len(ids) == 200_008


def test_writers_share_one_lock_file_in_the_data_dir(tmp_path):
    """A writer that cannot get the lock waits: the lock is what serialises writers."""
    from filelock import FileLock, Timeout

    store = Store(tmp_path, lock_timeout=0.5)
    with FileLock(str(store.lock_path)):
        with pytest.raises(Timeout):
            store.append("observations", _obs("2026-06-01", 10))
    assert store.read("observations").empty
    assert store.append("observations", _obs("2026-06-01", 10)) == 10


# --------------------------------------------------------------------------- 5. retention and audit

def _audit_rows(store):
    return store.read("audit_log")


def test_retention_refuses_a_now_in_the_future(tmp_path):
    store = Store(tmp_path)
    store.append("observations", _obs("2026-06-01", 100))
    store.state.audit("operator:alice", "dispatch", "P1")
    proc = _cli("store", "retention", "--data-dir", tmp_path, "--now", "2100-01-01", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--now" in proc.stderr and "future" in proc.stderr
    assert len(store.read("observations")) == 100
    assert _audit_rows(store)["action"].tolist() == ["dispatch"]
    with pytest.raises(ValueError, match="future"):
        store.enforce_retention(now="2100-01-01")


@pytest.mark.parametrize("now", ["yesterday-ish", "2026-13-45", "", "1e400"])
def test_retention_unparsable_now_is_a_clear_error(tmp_path, now):
    proc = _cli("store", "retention", "--data-dir", tmp_path, "--now", now, check=False)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stderr
    assert "--now" in proc.stderr and repr(now) in proc.stderr


def test_retention_audit_record_carries_real_time_and_survives_past_now(tmp_path):
    store = Store(tmp_path)
    before = pd.Timestamp.now(tz="UTC")
    _cli("store", "retention", "--data-dir", tmp_path, "--now", "1900-01-01")
    log = _audit_rows(store)
    assert len(log) == 1
    record = log.iloc[0]
    assert record["ts"] >= before.floor("s")  # the real clock, not 1900
    assert json.loads(record["details"])["now"].startswith("1900-01-01")
    assert record["actor"] == os_user() == getpass.getuser()
    _cli("store", "retention", "--data-dir", tmp_path, "--now", "1900-01-01")
    assert len(_audit_rows(store)) == 2  # the first record was not deleted by the second run


def test_audit_log_retention_follows_the_real_clock_only(tmp_path):
    store = Store(tmp_path)  # the audit log is kept 3 years
    real = pd.Timestamp.now(tz="UTC")
    store.state.audit("op", "recent", ts=real - pd.Timedelta(days=100))
    store.state.audit("op", "old", ts=real - pd.Timedelta(days=4 * 365))
    # a past --now must not keep what the real clock says is due, nor delete more
    store.enforce_retention(now="2000-01-01")
    actions = _audit_rows(store)["action"].tolist()
    assert "recent" in actions and "old" not in actions and "enforce_retention" in actions


def test_audit_log_retention_cannot_be_shortened_below_the_default(tmp_path):
    with pytest.raises(ValueError, match="audit_log"):
        Store(tmp_path, retention_days={"audit_log": 1})


# --------------------------------------------------------------------------- 8. wrong data

@pytest.mark.parametrize("value", [1717200000, 1717200000.0, 1717200000123])
def test_epoch_numbers_in_a_timestamp_column_are_refused(value):
    df = _obs("2026-06-01", 3)
    df["ts"] = df["ts"].astype(object)
    df.loc[1, "ts"] = value
    with pytest.raises(schema.SchemaError, match=r"column 'ts'.*rows 1 \(") as err:
        schema.validate(df, "observations")
    assert "number" in str(err.value)
    whole = _obs("2026-06-01", 2).assign(ts=[value, value])  # a numeric column
    with pytest.raises(schema.SchemaError, match=r"column 'ts'.*rows 0 .*1 \("):
        schema.validate(whole, "observations")


def test_epoch_csv_refused_by_the_cli_naming_row_and_field(tmp_path):
    path = tmp_path / "epoch.csv"
    path.write_text("ts,sensor_id,metric,value\n1717200000,cam-1,people_count,3\n")
    proc = _cli("store", "ingest", "observations", path, "--data-dir", tmp_path / "d", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "column 'ts'" in proc.stderr and "rows 0" in proc.stderr
    assert not (tmp_path / "d" / "history" / "observations").exists()
    proc = _cli("validate", "observations", path, check=False)
    assert proc.returncode == 1 and "column 'ts'" in proc.stderr


@pytest.mark.parametrize("metric,value", [("people_count", -3.0), ("density", -0.1),
                                          ("occupancy", -0.2), ("occupancy", 1.5),
                                          ("mean_speed", -1.0), ("flow_dir_3", -2.0)])
def test_out_of_range_metric_values_are_refused(metric, value):
    df = _obs("2026-06-01", 4, metric=metric)
    df.loc[2, "value"] = value
    with pytest.raises(schema.SchemaError, match=rf"'{metric}'.*rows 2 \({value}\)"):
        schema.validate(df, "observations")


def test_other_metrics_may_be_negative():
    df = _obs("2026-06-01", 4, metric="temperature_c").assign(value=-5.0)
    assert len(schema.validate(df, "observations")) == 4


def test_conflicting_rows_in_one_batch_are_refused_naming_the_key(tmp_path):
    store = Store(tmp_path)
    batch = _obs("2026-06-01", 5)
    clash = pd.concat([batch, batch.iloc[[3]].assign(value=99.0)], ignore_index=True)
    with pytest.raises(schema.SchemaError, match="cam-1.*people_count"):
        store.append("observations", clash)
    assert store.read("observations").empty
    # the same row twice is not a conflict
    assert store.append("observations", pd.concat([batch, batch.iloc[[3]]])) == 5


def test_conflicting_rows_against_stored_are_refused_and_nothing_stored(tmp_path):
    store = Store(tmp_path)
    first = _obs("2026-06-01 23:00", 120)  # two days
    assert store.append("observations", first) == 120
    later = _obs("2026-06-02 00:30", 120)  # overlaps day 2 with the same values ...
    later.loc[10, "value"] = 1234.0        # ... except one row
    with pytest.raises(schema.SchemaError, match=r"1 key\(s\).*stored: ts=2026-06-02 00:40"):
        store.append("observations", later)
    assert len(store.read("observations")) == 120
    assert store.append("observations", first) == 0  # an identical re-send stays idempotent


def test_conflicting_unit_reports_are_refused(tmp_path):
    store = Store(tmp_path)
    reports = pd.DataFrame({"unit_id": ["P1"], "kind": ["police"], "status": ["available"],
                            "lon": [5.37], "lat": [43.29],
                            "ts": pd.to_datetime(["2026-06-01 10:00"], utc=True), "station": ["S1"]})
    store.append("units", reports)
    with pytest.raises(schema.SchemaError, match="P1"):
        store.append("units", reports.assign(lon=5.99))
    assert store.read("units")["lon"].tolist() == [5.37]


def _units_csv(path, rows):
    pd.DataFrame(rows, columns=["unit_id", "kind", "status", "lon", "lat", "ts", "station"]
                 ).to_csv(path, index=False)


def test_cli_units_ingest_applies_transition_rules_and_audits(tmp_path):
    data = tmp_path / "data"
    first = tmp_path / "u1.csv"
    _units_csv(first, [("P1", "police", "available", 5.37, 43.29, "2026-06-01T10:00Z", "S1"),
                       ("P1", "police", "dispatched", 5.37, 43.29, "2026-06-01T10:05Z", "S1")])
    _cli("store", "ingest", "units", first, "--data-dir", data)
    store = Store(data)
    log = store.read("audit_log")
    assert log["action"].tolist() == ["register_unit", "set_status"]
    assert set(log["actor"]) == {os_user()}
    assert json.loads(log.iloc[1]["details"]) == {"from": "available", "to": "dispatched"}
    # dispatched -> out_of_service is not allowed: refused, nothing changes
    bad = tmp_path / "u2.csv"
    _units_csv(bad, [("P1", "police", "out_of_service", 5.40, 43.30, "2026-06-01T10:10Z", "S1")])
    proc = _cli("store", "ingest", "units", bad, "--data-dir", data, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "P1" in proc.stderr and "dispatched" in proc.stderr and "out_of_service" in proc.stderr
    assert store.read("unit_status").set_index("unit_id").at["P1", "status"] == "dispatched"
    assert len(store.read("units")) == 2 and len(store.read("audit_log")) == 2
    # re-sending the first file is idempotent and audits nothing new
    _cli("store", "ingest", "units", first, "--data-dir", data)
    assert len(store.read("units")) == 2 and len(store.read("audit_log")) == 2


# --------------------------------------------------------------------------- 12. leftovers, actor

def test_stale_temp_files_and_half_deleted_days_are_cleaned_on_write(tmp_path):
    store = Store(tmp_path)
    store.append("observations", _obs("2026-06-01", 10))
    day = store.history.root / "observations" / "date=2026-06-01"
    stale = day / ".tmp-deadbeef.parquet"
    stale.write_bytes(b"PAR1 half a file")
    fresh = day / ".tmp-cafe.parquet"  # may be a live writer of an older version: kept
    fresh.write_bytes(b"PAR1")
    trash = store.history.root / "observations" / ".deleting-date=2026-05-01-abc123"
    trash.mkdir()
    (trash / "part-x.parquet").write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(trash, (old, old))
    again = Store(tmp_path)
    assert again.append("observations", _obs("2026-06-03", 10)) == 10
    assert not stale.exists() and not trash.exists()
    assert fresh.exists()
    assert len(again.read("observations")) == 20


WRITER = """
import sys, numpy as np, pandas as pd
from safecity.data.store import Store
store = Store(sys.argv[1])
for i in range(1000):
    ts = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(np.arange(300_000) % 1440, unit="min")
    store.append("observations", pd.DataFrame({"ts": ts, "sensor_id": [f"s{i}-{k // 1440}" for k in range(300_000)],
                                               "metric": "people_count", "value": float(i)}))
    print(i, flush=True)
"""


@pytest.mark.slow
def test_temp_file_of_a_killed_writer_is_removed_later(tmp_path):
    """SIGKILL a writer until it leaves a temporary file; a later writer removes it."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    day = tmp_path / "data" / "history" / "observations" / "date=2026-01-01"
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "data")],
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()
        deadline = time.monotonic() + 60  # kill it while a temporary file is there
        while not list(day.glob(".tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.001)
        proc.kill()
        proc.wait()
        if list(day.glob(".tmp-*")):
            break
    leftovers = list(day.glob(".tmp-*"))
    assert leftovers, "the writer never left a temporary file"
    old = time.time() - 3600
    for f in leftovers:
        os.utime(f, (old, old))
    store = Store(tmp_path / "data")
    before = len(store.read("observations"))
    assert store.append("observations", _obs("2026-01-02", 10)) == 10
    assert not list(day.glob(".tmp-*"))
    assert len(store.read("observations")) == before + 10


def test_a_frame_indexed_by_text_gets_a_schema_error_not_a_crash():
    """Found by the fuzzer: row labels that are not numbers made the error message itself crash."""
    import pandas as pd
    import pytest

    from safecity.data import schema

    df = pd.DataFrame({"sensor_id": ["s1"], "kind": ["tank"], "lon": [5.4], "lat": [43.3],
                       "zone": ["z"], "metadata": ["{}"]}, index=["first"])
    with pytest.raises(schema.SchemaError, match="kind.*'first'"):
        schema.validate(df, "sensors")


def test_naive_datetime_columns_are_still_timestamps_even_when_empty():
    """A frame built in Python with datetime64 (naive) times, empty or not, is taken as UTC, not
    checked for epoch numbers (the check crashed on an empty datetime column: no units simulated)."""
    import pandas as pd

    from safecity.data import schema

    for times in ([], ["2026-06-01T10:00"]):
        df = pd.DataFrame({"ts": pd.to_datetime(times), "sensor_id": ["s1"] * len(times),
                           "metric": ["people_count"] * len(times), "value": [1.0] * len(times)})
        out = schema.validate(df, "observations")
        assert len(out) == len(times) and str(out["ts"].dt.tz) == "UTC"
