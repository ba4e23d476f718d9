"""Fuzzing every table reader with Hypothesis: the only exceptions allowed are our clear error types.

CI runs a modest, derandomised campaign (reproducible); a bigger one is
``SAFECITY_FUZZ_EXAMPLES=5000 pytest tests/security/test_fuzz.py -s``. Each
test prints how many inputs it tried (run with ``-s`` to see them) and fails
on the first input that ends in any other exception (a traceback in the CLI).
"""
from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safecity.data import schema
from safecity.data.tables import TableFileError, read_table

EXAMPLES = int(os.environ.get("SAFECITY_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
CLEAR = (TableFileError, schema.SchemaError, click.ClickException)

tried: dict[str, int] = {}


def count(reader: str) -> None:
    tried[reader] = tried.get(reader, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    for reader, n in sorted(tried.items()):
        print(f"\nfuzz {reader}: {n} inputs, 0 tracebacks")


# --------------------------------------------------------------------------- (a) bytes -> read_table -> validate

def _cell():
    return st.one_of(st.text(max_size=12), st.integers(-10**20, 10**20).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr),
                     st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)).map(str),
                     st.sampled_from(["", "NaN", "null", "1e309", "-0", "2026-06-01T10:00:00Z", "police",
                                      "people_count", "\"", ",", "\n", "\r", "\ufeff", "\x00"]))


@st.composite
def csv_bytes(draw, table: str) -> bytes:
    """Random bytes, or a CSV with (some of) the table's header and random cells, or a mangled one."""
    kind = draw(st.sampled_from(["bytes", "table", "mangled"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2048))
    cols = schema.columns(table)
    header = draw(st.lists(st.sampled_from(cols + ["extra", ""]), min_size=1, max_size=len(cols) + 2)) \
        if draw(st.booleans()) else cols
    rows = draw(st.lists(st.lists(_cell(), min_size=0, max_size=len(header) + 1), max_size=8))
    text = "\n".join([",".join(header)] + [",".join(r) for r in rows])
    data = text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"])), "replace")
    if kind == "mangled" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + draw(st.binary(max_size=16)) + data[at + draw(st.integers(0, 8)):]
    return data


def _valid_parquet(table: str) -> bytes:
    buf = io.BytesIO()
    frame = schema.empty(table)
    pd.concat([frame, frame]).to_parquet(buf)
    return buf.getvalue()


@st.composite
def parquet_bytes(draw, table: str) -> bytes:
    """Random bytes, or a valid Parquet file truncated or with bytes overwritten."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    data = bytearray(_valid_parquet(table))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data[:draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)


def _through_reader(data: bytes, suffix: str, table: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"input{suffix}"
        path.write_bytes(data)
        try:
            schema.validate(read_table(path, schema.columns(table)), table)
        except TableFileError as err:
            assert str(path) in str(err)
        except CLEAR:
            pass


@pytest.mark.parametrize("suffix,strategy", [(".csv", csv_bytes), (".parquet", parquet_bytes)])
@pytest.mark.parametrize("table", schema.TABLES)
def test_fuzz_file_bytes_through_read_table_and_validate(table, suffix, strategy):
    name = f"read_table {suffix} -> validate {table}"

    @FUZZ
    @given(strategy(table))
    def run(data):
        count(name)
        _through_reader(data, suffix, table)

    run()
    assert tried[name] >= min(EXAMPLES, 50)


# --------------------------------------------------------------------------- (b) frames -> validate -> Store.append

def _column(n: int):
    """A column of n values of one random type, or of mixed types."""
    any_value = st.one_of(
        st.none(), st.just(np.nan), st.text(max_size=10), st.integers(-2**63, 2**63 - 1),
        st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
        st.datetimes(dt.datetime(1677, 9, 22), dt.datetime(2262, 4, 11)),
        st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31), timezones=st.just(dt.timezone.utc)),
        st.sampled_from(["police", "camera", "open", "event", "people_count", "2026-06-01T10:00:00Z", "5.37"]))
    one_type = st.sampled_from([
        st.text(max_size=10), st.integers(-10**6, 10**6), st.floats(-1e6, 1e6), st.none(),
        st.dates(dt.date(1970, 1, 1), dt.date(2100, 1, 1)),
        st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(dt.timezone.utc)),
    ]).flatmap(lambda s: st.lists(s, min_size=n, max_size=n))
    return st.one_of(one_type, st.lists(any_value, min_size=n, max_size=n))


@st.composite
def frames(draw, table: str) -> pd.DataFrame:
    n = draw(st.integers(0, 6))
    cols = schema.columns(table)
    keep = [c for c in cols if draw(st.integers(0, 9)) > 0]  # now and then a column is missing
    data = {c: draw(_column(n)) for c in keep}
    if draw(st.booleans()):
        data["extra"] = draw(_column(n))
    return pd.DataFrame(data, index=range(n)).astype(object) if data else pd.DataFrame(index=range(n))


def _stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix == ".parquet")


@pytest.mark.parametrize("table", schema.TABLES)
def test_fuzz_frames_through_validate_and_store_append(table):
    from safecity.data.store import Store

    @FUZZ
    @given(frames(table))
    def run(df):
        count(f"validate + Store.append {table}")
        try:
            schema.validate(df.copy(), table)
        except schema.SchemaError:
            pass
        with tempfile.TemporaryDirectory() as d:
            store = Store(d)
            try:
                store.append(table, df.copy())
            except schema.SchemaError:
                assert _stored_files(Path(d)) == [], "a refused batch left files behind"
                if table in ("incidents", "verdicts"):
                    assert store.read(table).empty, f"a refused batch left {table} behind"
            finally:
                store.state.close()

    run()
    assert tried[f"validate + Store.append {table}"] >= min(EXAMPLES, 50)


# --------------------------------------------------------------------------- (c) calendars and fusion rules

@st.composite
def calendar_text(draw, suffix: str) -> bytes:
    """Random bytes, or text shaped like the format with random fields."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=2048))
    field = st.one_of(_cell(), st.sampled_from(["2026-06-01", "2026-06-02T10:00", "Stade", "NaN"]))
    if suffix == ".csv":
        header = draw(st.lists(st.sampled_from(["name", "start", "end", "location", "lon", "lat", "kind",
                                                "calendar_id", "expected_attendance", "x"]),
                               min_size=1, max_size=8))
        rows = draw(st.lists(st.lists(field, max_size=len(header) + 1), max_size=6))
        text = "\n".join([",".join(header)] + [",".join(r) for r in rows])
    elif suffix == ".ics":
        props = draw(st.lists(st.tuples(st.sampled_from(
            ["DTSTART", "DTEND", "SUMMARY", "UID", "GEO", "LOCATION", "DURATION", "RRULE", "DTSTART;TZID=Mars/X",
             "X-EXPECTED-ATTENDANCE", "STATUS", "BEGIN", "END"]), field), max_size=8))
        body = "\n".join(f"{k}:{v}" for k, v in props)
        text = f"BEGIN:VCALENDAR\nBEGIN:VEVENT\n{body}\nEND:VEVENT\nEND:VCALENDAR\n"
    else:
        import json

        json_value = st.recursive(
            st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=8)),
            lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
            max_leaves=20)
        coords = st.one_of(json_value, st.lists(st.floats(), min_size=2, max_size=3),
                           st.lists(st.lists(st.floats(), min_size=2, max_size=2), min_size=0, max_size=5))
        feature = st.fixed_dictionaries({
            "type": st.just("Feature"),
            "properties": st.one_of(json_value, st.fixed_dictionaries(
                {"name": field, "start": field, "end": field}, optional={"lon": field, "lat": field})),
            "geometry": st.one_of(st.none(), json_value, st.fixed_dictionaries({
                "type": st.sampled_from(["Point", "LineString", "Polygon", "MultiPoint", "GeometryCollection", "X"]),
                "coordinates": coords})),
        })
        doc = st.one_of(json_value, st.fixed_dictionaries(
            {"type": st.just("FeatureCollection"), "features": st.lists(feature, max_size=4)}))
        text = json.dumps(draw(doc), allow_nan=True)
    return text.encode("utf-8")


@pytest.mark.parametrize("suffix", [".csv", ".ics", ".geojson"])
def test_fuzz_calendar_readers(suffix):
    from safecity.data.calendars import CalendarError, read_calendar

    @FUZZ
    @given(calendar_text(suffix), st.sampled_from([None, "roadworks"]))
    def run(data, kind):
        count(f"calendar {suffix}")
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / f"cal{suffix}"
            path.write_bytes(data)
            try:
                read_calendar(path, kind=kind if suffix == ".csv" else None)
            except CalendarError as err:
                assert str(path) in str(err)

    run()
    assert tried[f"calendar {suffix}"] >= min(EXAMPLES, 50)


@st.composite
def rules_yaml(draw) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=1024))
    import yaml

    value = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=8)),
                         lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                st.dictionaries(st.text(max_size=6), kids, max_size=3)),
                         max_leaves=12)
    keys = st.sampled_from(["window_s", "radius_m", "pairs", "priority", "default_priority", "needs",
                            "source_confidence", "default_confidence", "dedup_s", "other"])
    pairs = st.lists(st.fixed_dictionaries({"kinds": st.one_of(value, st.lists(st.text(max_size=5), max_size=3))},
                                           optional={"window_s": value, "radius_m": value}), max_size=3)
    doc = st.one_of(value, st.dictionaries(keys, st.one_of(value, pairs), max_size=6))
    text = yaml.safe_dump(draw(doc), allow_unicode=True)
    if draw(st.booleans()):  # and now and then a tag, an anchor bomb or broken syntax
        text += draw(st.sampled_from(["\nx: !!python/object/apply:os.system ['true']\n", "\n: [\n",
                                      "\na: &a [1]\nb: *a\n", "\t\n- - -\n", "%YAML 9.9\n"]))
    return text.encode("utf-8")


def test_fuzz_fusion_rules_loader():
    from safecity.incidents.fusion import FusionRules

    @FUZZ
    @given(rules_yaml())
    def run(data):
        count("fusion rules YAML")
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "rules.yml"
            path.write_bytes(data)
            try:
                FusionRules.from_yaml(path)
            except ValueError as err:
                assert str(path) in str(err)

    run()
    assert tried["fusion rules YAML"] >= min(EXAMPLES, 50)
