"""Unit statuses: allowed transitions, refused ones change nothing, dispatch, AVL ingestion."""
from __future__ import annotations

import pandas as pd
import pytest

from safecity.data import schema
from safecity.data.store import Store
from safecity.dispatch.units import (TRANSITIONS, TransitionError, UnknownUnitError, check_transition,
                            dispatch, ingest_positions, set_status)

T0 = pd.Timestamp("2026-06-01 08:00", tz="UTC")


def _units(status="available"):
    return pd.DataFrame({
        "unit_id": ["E1", "M2"], "kind": ["fire", "ambulance"], "status": [status, status],
        "lon": [5.37, 5.38], "lat": [43.29, 43.30], "ts": [T0, T0], "station": ["S1", "S2"],
    })


def _incident(status="open"):
    return pd.DataFrame({
        "incident_id": ["I1"], "ts": [T0], "kind": "fire", "priority": [2],
        "confidence": [0.9], "status": [status], "lon": [5.37], "lat": [43.29],
        "summary": ["smoke"], "event_ids": ["[]"],
    })


@pytest.fixture
def store(tmp_path, state_backend):
    """A store with two units and an open incident, its state in SQLite or PostgreSQL."""
    s = Store(tmp_path / "data", state=state_backend(tmp_path / "data"))
    s.append("units", _units())
    s.append("incidents", _incident())
    return s


def _snapshot(store):
    return (store.read("unit_status"), store.read("audit_log"), store.read("units"),
            store.read("incidents"))


def _assert_unchanged(store, before):
    for old, new in zip(before, _snapshot(store)):
        pd.testing.assert_frame_equal(old, new)


def test_transitions_cover_every_status():
    assert set(TRANSITIONS) == set(schema.UNIT_STATUSES)
    for allowed in TRANSITIONS.values():
        assert set(allowed) <= set(schema.UNIT_STATUSES)


def test_full_cycle_audits_every_change(store):
    path = ["dispatched", "en_route", "on_scene", "returning", "available"]
    for i, status in enumerate(path):
        set_status(store, "E1", status, actor="op1", ts=T0 + pd.Timedelta(minutes=i + 1))
    state = store.read("unit_status").set_index("unit_id")
    assert state.at["E1", "status"] == "available"
    assert state.at["M2", "status"] == "available"
    assert (state.at["E1", "lon"], state.at["E1", "lat"]) == (5.37, 43.29)  # position kept
    audit = store.read("audit_log")
    assert len(audit) == len(path)
    assert (audit["actor"] == "op1").all() and (audit["target"] == "E1").all()
    assert audit["details"].str.contains('"to": "on_scene"').any()


@pytest.mark.parametrize("start, path, refused", [
    ("available", [], "on_scene"),
    ("out_of_service", [], "dispatched"),
    ("available", ["dispatched"], "returning"),
])
def test_impossible_transition_changes_nothing(tmp_path, state_backend, start, path, refused):
    store = Store(tmp_path / "data", state=state_backend(tmp_path / "data"))
    store.append("units", _units(start))
    for status in path:
        set_status(store, "E1", status, actor="op1")
    before = _snapshot(store)
    current = path[-1] if path else start
    with pytest.raises(TransitionError) as err:
        set_status(store, "E1", refused, actor="op1")
    message = str(err.value)
    assert "E1" in message and f"'{current}'" in message and f"'{refused}'" in message
    assert err.value.allowed == TRANSITIONS[current]
    _assert_unchanged(store, before)


def test_check_transition_rules():
    check_transition("returning", "dispatched")
    with pytest.raises(TransitionError, match="may go to: available"):
        check_transition("out_of_service", "dispatched")
    with pytest.raises(TransitionError):
        check_transition("available", "available")
    with pytest.raises(ValueError, match="unknown unit status"):
        check_transition("available", "asleep")


def test_exception_inside_transaction_rolls_back(store):
    before = _snapshot(store)
    with pytest.raises(RuntimeError):
        with store.state.transaction():
            set_status(store, "E1", "dispatched", actor="op1")
            raise RuntimeError("crash after the change")
    _assert_unchanged(store, before)


def test_dispatch_marks_unit_and_incident(store):
    dispatch(store, "E1", "I1", actor="op1")
    assert store.read("unit_status").set_index("unit_id").at["E1", "status"] == "dispatched"
    assert store.read("incidents").set_index("incident_id").at["I1", "status"] == "dispatched"
    audit = store.read("audit_log")
    assert audit["action"].tolist() == ["dispatch"]
    assert '"incident_id": "I1"' in audit["details"].iloc[0]


def test_refused_dispatch_changes_neither(store):
    set_status(store, "E1", "out_of_service", actor="op1")
    before = _snapshot(store)
    with pytest.raises(TransitionError):
        dispatch(store, "E1", "I1", actor="op1")
    with pytest.raises(KeyError, match="unknown incident"):
        dispatch(store, "M2", "nope", actor="op1")
    with pytest.raises(UnknownUnitError):
        dispatch(store, "X9", "I1", actor="op1")
    _assert_unchanged(store, before)


def _avl():
    return pd.DataFrame({
        "unit_id": ["E1", "E1", "M2", "E1"],
        "lon": [5.371, 5.372, 5.381, 5.373], "lat": [43.291, 43.292, 43.301, 43.293],
        "ts": [T0 + pd.Timedelta(seconds=s) for s in (10, 20, 10, 30)],
        "status": [None, "dispatched", None, "en_route"],
    })


def test_avl_twice_stores_once(store):
    first = ingest_positions(store, _avl())
    before = _snapshot(store)
    second = ingest_positions(store, _avl())
    assert (first, second) == (4, 0)
    _assert_unchanged(store, before)
    state = store.read("unit_status").set_index("unit_id")
    assert state.at["E1", "status"] == "en_route"
    assert (state.at["E1", "lon"], state.at["M2", "lon"]) == (5.373, 5.381)
    assert len(store.read("audit_log")) == 2  # two status changes arrived by AVL
    assert len(store.read("units")) == 2 + 4


def test_avl_unknown_unit_refused(store):
    before = _snapshot(store)
    avl = _avl()
    avl.loc[2, "unit_id"] = "GHOST"
    with pytest.raises(UnknownUnitError, match=r"'GHOST' \(row 2\)"):
        ingest_positions(store, avl)
    _assert_unchanged(store, before)


def test_avl_impossible_status_refused(store):
    before = _snapshot(store)
    avl = _avl()
    avl.loc[1, "status"] = "on_scene"  # available -> on_scene
    with pytest.raises(TransitionError, match="AVL row 1"):
        ingest_positions(store, avl)
    _assert_unchanged(store, before)
