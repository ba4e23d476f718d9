"""Storage: atomic, idempotent, validated writes; retention; operational state."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from safecity.data import schema
from safecity.data.store import Store


def _obs(start, n, sensor="cam-1", value0=0.0):
    return pd.DataFrame({
        "ts": pd.date_range(start, periods=n, freq="1min", tz="UTC"),
        "sensor_id": sensor, "metric": "people_count",
        "value": value0 + np.arange(n, dtype=float),
    })


def _units():
    return pd.DataFrame({
        "unit_id": ["P1", "P1", "F1"], "kind": ["police", "police", "fire"],
        "status": ["available", "dispatched", "available"],
        "lon": [5.37, 5.38, 5.40], "lat": [43.29, 43.30, 43.31],
        "ts": pd.to_datetime(["2026-06-01 10:00", "2026-06-01 10:05", "2026-06-01 10:00"], utc=True),
        "station": ["S1", "S1", None],
    })


def test_same_batch_twice_is_stored_once(tmp_path):
    store = Store(tmp_path)
    batch = _obs("2026-06-01 22:00", 240)  # spans two day partitions
    assert store.append("observations", batch) == 240
    assert store.append("observations", batch) == 0
    assert store.append("observations", batch.iloc[50:120]) == 0
    back = store.read("observations")
    assert len(back) == 240
    pd.testing.assert_frame_equal(back.sort_values("ts").reset_index(drop=True),
                                  schema.validate(batch, "observations"), check_dtype=False)
    assert len(store.history.days("observations")) == 2


def test_overlapping_batch_adds_only_new_rows(tmp_path):
    store = Store(tmp_path)
    store.append("observations", _obs("2026-06-01", 100))
    # the overlap carries the same values (a different value would be a conflict, refused)
    assert store.append("observations", _obs("2026-06-01 01:00", 100, value0=60.0)) == 60
    assert len(store.read("observations")) == 160


def test_read_time_window(tmp_path):
    store = Store(tmp_path)
    store.append("observations", _obs("2026-06-01", 3 * 1440))
    window = store.read("observations", "2026-06-02 06:00", "2026-06-02 07:00")
    assert len(window) == 60
    assert window["ts"].min() == pd.Timestamp("2026-06-02 06:00", tz="UTC")


def test_invalid_batch_stores_nothing(tmp_path):
    store = Store(tmp_path)
    store.append("observations", _obs("2026-06-01", 10))
    bad = _obs("2026-06-01 01:00", 10)
    bad.loc[3, "value"] = np.inf
    with pytest.raises(schema.SchemaError, match="rows 3"):
        store.append("observations", bad)
    assert len(store.read("observations")) == 10


def test_reference_tables_upsert(tmp_path):
    store = Store(tmp_path)
    sensors = pd.DataFrame({"sensor_id": ["a", "b"], "kind": ["camera", "counter"],
                            "lon": [5.37, 5.38], "lat": [43.29, 43.3], "zone": [None, "z"],
                            "metadata": [None, None]})
    assert store.append("sensors", sensors) == 2
    assert store.append("sensors", sensors) == 0
    moved = sensors.iloc[[1]].assign(lon=5.5)
    store.append("sensors", moved)
    back = store.read("sensors").set_index("sensor_id")
    assert len(back) == 2 and back.loc["b", "lon"] == 5.5


def test_units_history_and_current_status(tmp_path, state_backend):
    store = Store(tmp_path, state=state_backend(tmp_path))
    store.append("units", _units())
    store.append("units", _units())
    assert len(store.read("units")) == 3
    status = store.read("unit_status").set_index("unit_id")
    assert status.loc["P1", "status"] == "dispatched"
    # an older report arriving late must not roll the current state back
    late = _units().iloc[[0]].assign(ts=pd.Timestamp("2026-06-01 09:00", tz="UTC"))
    store.append("units", late)
    assert store.read("unit_status").set_index("unit_id").loc["P1", "status"] == "dispatched"


def test_incidents_upsert_and_audit(tmp_path, state_backend):
    store = Store(tmp_path, state=state_backend(tmp_path))
    inc = pd.DataFrame({"incident_id": ["i1"], "ts": ["2026-06-01T10:00Z"], "kind": ["gunshot"],
                        "priority": [1], "confidence": [0.9], "status": ["open"], "lon": [5.4],
                        "lat": [43.3], "summary": ["<b>3 shots</b>"], "event_ids": ['["e1"]']})
    assert store.append("incidents", inc) == 1
    store.append("incidents", inc)
    assert len(store.read("incidents")) == 1
    store.append("incidents", inc.assign(status="closed"))
    assert store.read("incidents").loc[0, "status"] == "closed"
    assert store.read("incidents").loc[0, "summary"] == "<b>3 shots</b>"  # stored as text
    store.state.audit("operator:alice", "dispatch", "P1", {"incident": "i1"})
    log = store.read("audit_log")
    assert log.iloc[-1][["actor", "action", "target"]].tolist() == ["operator:alice", "dispatch", "P1"]


def test_state_transaction_rolls_back(tmp_path, state_backend):
    store = Store(tmp_path, state=state_backend(tmp_path))
    with pytest.raises(RuntimeError):
        with store.state.transaction():
            store.state.audit("a", "first")
            raise RuntimeError("crash between two changes")
    assert store.read("audit_log").empty


def test_retention_deletes_old_days_and_is_audited(tmp_path, state_backend):
    store = Store(tmp_path, retention_days={"observations": 2, "units": 1},
                  state=state_backend(tmp_path))
    store.append("observations", _obs("2026-06-01", 5 * 1440))
    store.append("units", _units())
    deleted = store.enforce_retention(now="2026-06-05 12:00")
    assert deleted["observations"] == 2 and deleted["units"] == 1
    assert store.read("observations")["ts"].min() == pd.Timestamp("2026-06-03", tz="UTC")
    assert store.read("units").empty
    log = store.read("audit_log")
    assert log.iloc[-1]["action"] == "enforce_retention"


WRITER = textwrap.dedent("""
    import sys, numpy as np, pandas as pd
    from safecity.data.store import Store
    store, n = Store(sys.argv[1]), int(sys.argv[2])
    for i in range(1000):
        day = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=i % 5)
        ts = day + pd.to_timedelta(np.arange(n) % 1440, unit="min")
        store.append("observations", pd.DataFrame({
            "ts": ts, "sensor_id": ["s%d-%d" % (i, k // 1440) for k in range(n)],
            "metric": "people_count", "value": np.full(n, float(i))}))
        print(i, flush=True)
""")


def test_write_killed_midway_leaves_previous_state_readable(tmp_path):
    """SIGKILL the writer at random moments: every batch is stored whole or not at all."""
    n = 200_000
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(0)
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "data"), str(n)],
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # at least one batch done
        time.sleep(rng.uniform(0.0, 1.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        back = Store(tmp_path / "data").read("observations")
        counts = back.groupby("value").size()
        assert len(back) > 0
        assert (counts == n).all(), "a batch was stored partly"
    # re-running a batch after the crash is harmless
    store = Store(tmp_path / "data")
    before = len(store.read("observations"))
    redo = store.read("observations").query("value == 0")
    assert store.append("observations", redo) == 0
    assert len(store.read("observations")) == before


def test_state_opened_from_many_threads_and_processes_at_once(tmp_path):
    """Several camera threads (and processes) may first touch the state together: one opens it."""
    import threading
    from concurrent.futures import ProcessPoolExecutor

    store = Store(tmp_path / "store")
    barrier = threading.Barrier(8)
    opened, errors = [], []

    def first_use():
        barrier.wait()
        try:
            opened.append(store.state)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len({id(s) for s in opened}) == 1
    other = tmp_path / "other"
    with ProcessPoolExecutor(4) as pool:
        counts = list(pool.map(_open_state_and_count, [other] * 8))
    assert counts == [0] * 8


def _open_state_and_count(data_dir):
    return len(Store(data_dir).state.read("incidents"))
