"""The PostgreSQL state store, against a real server: same answers as SQLite, shared safely.

Both backends run tests/test_store.py's and tests/test_units.py's state tests
(the ``state_backend`` fixture); here, what only a server shows: two processes
on one database, writers serialised across processes, a transaction killed
midway, threads on one connection, a lost connection, and passwords kept out
of every message.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pandas as pd
import psycopg
import pytest

from safecity.data.postgres import PostgresState, StateUnavailableError
from safecity.data.store import SQLiteState, Store, open_state
from safecity.dispatch.units import dispatch, ingest_positions, set_status
from servers import free_port, postgres_schema

T0 = pd.Timestamp("2026-06-01 08:00", tz="UTC")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _units():
    return pd.DataFrame({
        "unit_id": ["E1", "M2", "P3"], "kind": ["fire", "ambulance", "police"],
        "status": ["available"] * 3, "lon": [5.37, 5.38, 5.39], "lat": [43.29, 43.30, 43.31],
        "ts": [T0] * 3, "station": ["S1", None, "S3"],
    })


def _incidents(ids=("I2", "I1"), status="open"):
    n = len(ids)
    return pd.DataFrame({
        "incident_id": list(ids), "ts": [T0 + pd.Timedelta(minutes=k) for k in range(n)],
        "kind": ["fire"] * n, "priority": list(range(1, n + 1)), "confidence": [0.9] * n,
        "status": [status] * n, "lon": [5.37] + [None] * (n - 1),
        "lat": [43.29] + [None] * (n - 1), "summary": ["smoke <b>heavy</b>"] * n,
        "event_ids": ['["e1", "e2"]'] * n,
    })


def _script(body: str) -> list[str]:
    """A child Python process; the state's URL comes by environment, never on a command line."""
    return [sys.executable, "-c", textwrap.dedent(body)]


def _env(url: str) -> dict:
    return {**os.environ, "PYTHONPATH": ROOT, "SAFECITY_TEST_STATE": url}


@pytest.fixture
def pg(postgres_url):
    """A URL on an empty schema of its own, and a way to open states on it (closed afterwards)."""
    opened = []

    def open_(**kwargs):
        opened.append(PostgresState(url, **kwargs))
        return opened[-1]
    with postgres_schema(postgres_url) as url:
        yield url, open_
        for state in opened:
            state.close()


def _story(store: Store) -> None:
    """The same operations on any backend: register, move, dispatch, audit, expire."""
    store.append("units", _units())
    store.append("incidents", _incidents())
    ingest_positions(store, pd.DataFrame({
        "unit_id": ["M2", "M2", "E1"], "lon": [5.381, 5.382, 5.371],
        "lat": [43.301, 43.302, 43.291],
        "ts": [T0 + pd.Timedelta(seconds=s) for s in (10, 20, 15)],
        "status": [None, "out_of_service", None]}))
    dispatch(store, "E1", "I1", actor="op1", ts=T0 + pd.Timedelta(minutes=5))
    set_status(store, "E1", "en_route", actor="op1", ts=T0 + pd.Timedelta(minutes=6))
    store.state.audit("operator:alice", "note", "I2", {"b": [1, 2], "a": "é"},
                      ts="2026-06-01T10:00:00.123456Z")
    late = _units().iloc[[2]].assign(ts=T0 - pd.Timedelta(hours=1), status="out_of_service")
    store.append("units", late)  # older than the state: history only
    store.state.delete_before("incidents", T0 + pd.Timedelta(seconds=30))  # drops I2


def test_both_backends_read_the_same(tmp_path, pg):
    url, _ = pg
    sqlite = Store(tmp_path / "a", state=open_state(None, tmp_path / "a"))
    postgres = Store(tmp_path / "b", state=open_state(url, tmp_path / "b"))
    for table in ("incidents", "unit_status", "audit_log"):  # empty ones too
        pd.testing.assert_frame_equal(sqlite.read(table), postgres.read(table))
    _story(sqlite)
    _story(postgres)
    for table in ("incidents", "unit_status", "audit_log"):
        left, right = sqlite.read(table), postgres.read(table)
        pd.testing.assert_frame_equal(left, right, obj=table)
        assert str(right["ts"].dt.tz) == "UTC"
    status = postgres.read("unit_status").set_index("unit_id")["status"].to_dict()
    assert status == {"E1": "en_route", "M2": "out_of_service", "P3": "available"}
    assert postgres.read("incidents")["incident_id"].tolist() == ["I1"]
    assert postgres.read("incidents").at[0, "status"] == "dispatched"
    assert postgres.read("audit_log")["action"].tolist() == ["set_status", "dispatch", "set_status",
                                                              "note"]
    sqlite.state.close()
    postgres.state.close()


def test_open_state_picks_the_backend(tmp_path, postgres_url):
    for spec in (None, "sqlite", " SQLite "):
        state = open_state(spec, tmp_path)
        assert isinstance(state, SQLiteState) and state.path == tmp_path / "state.sqlite"
        state.close()
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        state = open_state(url, tmp_path)
        assert isinstance(state, PostgresState)
        state.close()
    for bad in ("mysql://bob:hunter2@db.example/city", "", "state.sqlite"):
        with pytest.raises(ValueError, match="neither 'sqlite' nor a postgresql:// URL") as err:
            open_state(bad, tmp_path)
        assert "hunter2" not in str(err.value)
    with pytest.raises(ValueError, match=r"'mysql://\*\*\*@db.example/city'"):
        open_state("mysql://bob:hunter2@db.example/city", tmp_path)


def test_unreachable_server_is_named_without_its_password():
    port = free_port()  # nothing listens there
    url = f"postgresql://alice:s3cr3t-pw@127.0.0.1:{port}/city?sslmode=disable"
    with pytest.raises(StateUnavailableError) as err:
        open_state(url, "/nonexistent")
    message = str(err.value)
    assert f"postgresql://***@127.0.0.1:{port}/city" in message
    assert "s3cr3t-pw" not in message and "alice" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    # libpq quotes a URL it cannot parse: the password is hidden there too
    with pytest.raises(StateUnavailableError, match="IPv6") as err:
        PostgresState("postgresql://bob:s3cr3t-pw@[::1/city")
    assert "s3cr3t-pw" not in str(err.value)


def test_wrong_password_and_repr_hide_the_password(postgres_url):
    password = postgres_url.split(":")[2].split("@")[0]
    wrong = postgres_url.replace(password, "not-the-password")
    with pytest.raises(StateUnavailableError, match="password authentication failed") as err:
        PostgresState(wrong)
    assert "not-the-password" not in str(err.value) and password not in str(err.value)
    state = PostgresState(postgres_url)
    try:
        assert password not in repr(state) and password not in state.address
        assert repr(state).startswith("PostgresState('postgresql://***@127.0.0.1:")
    finally:
        state.close()


CHILD_WRITER = """
    import json, os, pandas as pd
    from safecity.data.postgres import PostgresState
    state = PostgresState(os.environ["SAFECITY_TEST_STATE"])
    seen = state.read("incidents")["incident_id"].tolist()
    inc = state.read("incidents").assign(incident_id="from-child", status="closed")
    state.upsert("incidents", inc)
    state.audit("child", "closed", "from-child")
    print(json.dumps(seen))
"""


def test_two_processes_see_each_others_writes(pg):
    url, open_ = pg
    mine = open_()
    mine.upsert("incidents", _incidents(["from-parent"]))
    out = subprocess.run(_script(CHILD_WRITER), env=_env(url), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["from-parent"]  # the child saw the parent's write
    # the parent's connection, open all along, sees the child's writes
    incidents = mine.read("incidents").set_index("incident_id")["status"].to_dict()
    assert incidents == {"from-child": "closed", "from-parent": "open"}
    assert mine.read("audit_log")[["actor", "action"]].values.tolist() == [["child", "closed"]]


CHILD_DISPATCHER = """
    import os, sys
    from safecity.data.postgres import PostgresState
    from safecity.data.store import Store
    from safecity.dispatch.units import TransitionError, set_status
    store = Store(sys.argv[1], state=PostgresState(os.environ["SAFECITY_TEST_STATE"]))
    store.state.read("unit_status")
    print("ready", flush=True)
    sys.stdin.readline()  # all start together
    try:
        set_status(store, "E1", "dispatched", actor="op" + sys.argv[2])
        print("dispatched", flush=True)
    except TransitionError:
        print("refused", flush=True)
"""


def test_writers_in_several_processes_are_serialised(tmp_path, pg):
    """Check-then-write (a dispatch) in 4 processes at once: one unit is dispatched once."""
    url, open_ = pg
    Store(tmp_path / "parent", state=open_()).append("units", _units())
    procs = [subprocess.Popen(_script(CHILD_DISPATCHER) + [str(tmp_path / f"c{k}"), str(k)],
                              env=_env(url), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for k in range(4)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outcomes = sorted(p.communicate(timeout=300)[0].strip() for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert outcomes == ["dispatched", "refused", "refused", "refused"]
    state = open_()
    assert state.read("unit_status").set_index("unit_id").at["E1", "status"] == "dispatched"
    assert state.read("audit_log")["action"].tolist() == ["set_status"]


def test_failed_transaction_leaves_nothing(pg):
    _, open_ = pg
    writer, reader = open_(), open_()
    writer.upsert("unit_status", _units())
    before = [reader.read(t) for t in ("incidents", "unit_status", "audit_log")]

    with pytest.raises(RuntimeError):  # an error of ours between two changes
        with writer.transaction():
            writer.upsert("incidents", _incidents())
            writer.upsert("unit_status", _units().assign(status="dispatched",
                                                         ts=T0 + pd.Timedelta(minutes=1)))
            writer.audit("op1", "dispatch", "E1")
            raise RuntimeError("crash between two changes")
    with pytest.raises(psycopg.errors.DivisionByZero):  # an error of the server's
        with writer.transaction() as conn:
            writer.audit("op1", "first")
            conn.execute("SELECT 1 / 0")
    for state in (reader, writer):
        for old, table in zip(before, ("incidents", "unit_status", "audit_log")):
            pd.testing.assert_frame_equal(old, state.read(table))

    # a nested block that fails is undone; the enclosing one goes on and commits
    with writer.transaction():
        writer.audit("op1", "kept")
        with pytest.raises(psycopg.errors.DivisionByZero):
            with writer.transaction() as conn:
                writer.audit("op1", "undone")
                conn.execute("SELECT 1 / 0")
        writer.audit("op1", "kept too")
    assert reader.read("audit_log")["action"].tolist() == ["kept", "kept too"]


CHILD_KILLED = """
    import os, sys, pandas as pd
    from safecity.data.postgres import PostgresState
    state = PostgresState(os.environ["SAFECITY_TEST_STATE"])
    with state.transaction():
        state.audit("child", "never committed")
        print("inside", flush=True)
        sys.stdin.readline()  # killed here
"""


def test_writer_killed_inside_a_transaction_leaves_nothing_and_no_lock(pg):
    url, open_ = pg
    other = open_(lock_timeout=60)
    proc = subprocess.Popen(_script(CHILD_KILLED), env=_env(url), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "inside"
        assert other.read("audit_log").empty  # not committed: not seen
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    other.audit("parent", "after the kill")  # the dead writer's lock is released
    assert other.read("audit_log")["action"].tolist() == ["after the kill"]


def test_threads_on_one_connection_keep_transactions_whole(pg):
    _, open_ = pg
    state = open_()
    errors = []

    def work(k: int) -> None:
        try:
            for i in range(20):
                with state.transaction():
                    state.audit(f"thread{k}", "first", str(i))
                    state.read("audit_log")  # a read inside the transaction, then the pair's end
                    state.audit(f"thread{k}", "second", str(i))
        except Exception as exc:  # reported below, a thread's error is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    log = state.read("audit_log")
    assert len(log) == 4 * 20 * 2
    firsts = log.index[log["action"] == "first"]
    pairs = log.loc[firsts + 1]
    assert (pairs["action"].to_numpy() == "second").all()
    assert (pairs["actor"].to_numpy() == log.loc[firsts, "actor"].to_numpy()).all()
    assert (pairs["target"].to_numpy() == log.loc[firsts, "target"].to_numpy()).all()


def test_lost_connection_is_replaced_on_the_next_call(pg, postgres_url):
    _, open_ = pg
    state = open_()
    state.audit("op1", "before")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (state._conn.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        state.read("audit_log")  # the server is gone from under this call
    state.audit("op1", "after")  # a new connection
    assert state.read("audit_log")["action"].tolist() == ["before", "after"]
    state.close()
    with pytest.raises(RuntimeError, match="closed"):
        state.read("audit_log")
