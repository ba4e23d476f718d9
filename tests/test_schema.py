"""The data model's validation names the table, the column and the offending rows."""
import pandas as pd
import pytest

from safecity.data import schema


def _observations(**overrides):
    df = pd.DataFrame({
        "ts": pd.date_range("2026-06-01", periods=4, freq="5min", tz="UTC"),
        "sensor_id": ["cam-1"] * 4, "metric": ["people_count"] * 4, "value": [1.0, 2, 3, 4],
    })
    return df.assign(**overrides)


def test_valid_table_is_coerced_and_ordered():
    df = _observations(ts=["2026-06-01T00:00Z"] * 4)[["value", "metric", "sensor_id", "ts"]]
    out = schema.validate(df, "observations")
    assert list(out.columns) == schema.columns("observations")
    assert str(out["ts"].dtype) == "datetime64[ns, UTC]"


def test_error_names_table_column_and_rows():
    df = _observations(value=[1.0, float("inf"), 3.0, float("nan")])
    with pytest.raises(schema.SchemaError) as err:
        schema.validate(df, "observations")
    msg = str(err.value)
    assert "table 'observations'" in msg
    assert "column 'value'" in msg
    assert "rows 1 (inf)" in msg
    assert err.value.table == "observations"


def test_bad_category_and_range_each_reported():
    sensors = pd.DataFrame({
        "sensor_id": ["a", "b", "c"], "kind": ["camera", "tank", "counter"],
        "lon": [5.37, 5.38, 500.0], "lat": [43.29, 43.3, 43.3],
        "zone": [None, "13201", None], "metadata": [None, None, "{}"],
    })
    with pytest.raises(schema.SchemaError) as err:
        schema.validate(sensors, "sensors")
    msg = str(err.value)
    assert "column 'kind'" in msg and "rows 1 ('tank')" in msg
    assert "column 'lon'" in msg and "rows 2 (500.0)" in msg


def test_missing_column_named():
    with pytest.raises(schema.SchemaError, match="column 'metric': missing"):
        schema.validate(_observations().drop(columns="metric"), "observations")


def test_unparseable_timestamp_named():
    with pytest.raises(schema.SchemaError, match=r"column .ts. is not a timestamp at rows 2 \('yesterday'\)"):
        schema.validate(_observations(ts=["2026-06-01", "2026-06-01", "yesterday", "2026-06-02"]),
                        "observations")


def test_duplicate_ids_refused():
    events = pd.DataFrame({
        "event_id": ["e1", "e1"], "ts": ["2026-06-01T10:00Z"] * 2, "kind": ["gunshot", "panic"],
        "sensor_id": [None, None], "lon": [5.4, 5.4], "lat": [43.3, 43.3], "score": [0.9, 1.0],
        "source": ["sim", "sim"], "details": [None, None],
    })
    with pytest.raises(schema.SchemaError, match="column 'event_id'"):
        schema.validate(events, "events")


def test_calendar_end_before_start():
    cal = pd.DataFrame({
        "calendar_id": ["c1", "c2"], "kind": ["event", "roadworks"], "name": ["concert", "works"],
        "start": ["2026-06-02T20:00Z", "2026-06-01"], "end": ["2026-06-02T23:00Z", "2026-05-30"],
        "location": ["Orange Vélodrome", None], "lon": [5.3958, None], "lat": [43.2698, None],
        "expected_attendance": [60000, None],
    })
    with pytest.raises(schema.SchemaError, match=r"'end' is before 'start' at rows \[1\]"):
        schema.validate(cal, "calendar")


def test_every_table_has_an_empty_form():
    for table in schema.TABLES:
        assert schema.empty(table).empty
        assert list(schema.empty(table).columns) == schema.columns(table)


def test_unknown_table():
    with pytest.raises(KeyError, match="unknown table 'cameras'"):
        schema.validate(pd.DataFrame(), "cameras")


def test_taxonomy_has_the_legal_event_types():
    legal = {"abandoned_object", "wrong_way", "forbidden_zone", "person_on_ground",
             "crowd_movement", "excessive_density", "fire", "weapon"}
    assert legal <= set(schema.EVENT_KINDS)
