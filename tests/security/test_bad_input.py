"""Hostile and careless input files through every command that reads them: a clear error, never a traceback.

The broken files are kept in fixtures/bad_input/ (the deeply nested GeoJSON
and the big sparse CSV are generated here instead of committed). Each run
asserts a non-zero exit, a message naming the file, and no Python traceback.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from safecity.cli import main
from safecity.data.tables import TableFileError, read_table

FIXTURES = Path(__file__).parent / "fixtures" / "bad_input"
ROOT = Path(__file__).resolve().parents[2]

BAD_TABLES = ["empty.csv", "binary.csv", "latin1.csv", "unterminated_quote.csv", "ragged.csv",
              "nul_bytes.csv", "header_only_wrong.csv", "first_row_longer.csv", "truncated.parquet",
              "text_named.parquet"]
BAD_RULES = ["python_tag.yml", "syntax_error.yml", "wrong_types.yml", "binary.yml"]
BAD_CALENDARS = ["nan_coordinates.geojson", "not_json.geojson", "binary.ics", "binary.csv", "latin1_events.csv",
                 "deep.geojson"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Valid companions for the files under test: observations, events, calls, units, a road grid."""
    d = tmp_path_factory.mktemp("good")
    ts = pd.date_range("2026-06-01", periods=24 * 21, freq="h", tz="UTC")
    pd.DataFrame({"ts": ts, "sensor_id": "cnt-1", "metric": "people_count",
                  "value": 10.0 + (ts.hour % 12)}).to_csv(d / "obs.csv", index=False)
    pd.DataFrame({"event_id": ["e1"], "ts": ["2026-06-01T10:00:00Z"], "kind": ["panic"], "sensor_id": ["s1"],
                  "lon": [5.37], "lat": [43.29], "score": [1.0], "source": ["test"], "details": [None]}
                 ).to_csv(d / "events.csv", index=False)
    pd.DataFrame({"ts": ["2026-06-01T10:00:00Z"], "lon": [5.371], "lat": [43.291], "kind": ["police"]}
                 ).to_csv(d / "calls.csv", index=False)
    pd.DataFrame({"unit_id": ["p1"], "kind": ["police"], "lon": [5.37], "lat": [43.29]}
                 ).to_csv(d / "units.csv", index=False)
    n = 4  # a 4 x 4 two-way street grid
    ids = np.arange(n * n).reshape(n, n)
    nodes = pd.DataFrame({"node_id": ids.ravel(), "lon": 5.37 + 0.0025 * np.tile(np.arange(n), n),
                          "lat": 43.29 + 0.0025 * np.repeat(np.arange(n), n)})
    pairs = [(ids[j, i], ids[j, i + 1]) for j in range(n) for i in range(n - 1)]
    pairs += [(ids[j, i], ids[j + 1, i]) for j in range(n - 1) for i in range(n)]
    one = pd.DataFrame(pairs, columns=["u", "v"])
    edges = pd.concat([one, one.rename(columns={"u": "v", "v": "u"})], ignore_index=True)
    edges = edges.assign(length_m=200.0, road_class="residential", speed_kmh=30.0, travel_time_s=24.0)
    (d / "net").mkdir()
    nodes.to_parquet(d / "net" / "nodes.parquet")
    edges.to_parquet(d / "net" / "edges.parquet")
    return d


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """The fixtures folder, plus a GeoJSON nested deeper than Python's recursion limit."""
    d = tmp_path_factory.mktemp("bad")
    for f in FIXTURES.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    (d / "deep.geojson").write_text("[" * 200_000 + "]" * 200_000)
    return d


def assert_clear_error(result, path) -> None:
    """Non-zero exit, the file named, and no traceback (CliRunner keeps an escaped exception aside)."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"traceback: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output
    assert str(path) in result.output, result.output


def table_commands(good, tmp):
    """Every command that reads a table file, as a function of the file under test."""
    obs, net = good / "obs.csv", good / "net"
    return {
        "validate": lambda p: ["validate", "observations", p],
        "store ingest": lambda p: ["store", "ingest", "events", p, "--data-dir", tmp / "store"],
        "forecast backtest": lambda p: ["forecast", "backtest", "--observations", p],
        "forecast predict": lambda p: ["forecast", "predict", "--observations", p, "--out", tmp / "f.csv"],
        "forecast --sensors": lambda p: ["forecast", "predict", "--observations", obs, "--sensors", p,
                                         "--out", tmp / "f.csv"],
        "forecast --capacity": lambda p: ["forecast", "predict", "--observations", obs, "--capacity", p,
                                          "--out", tmp / "f.csv"],
        "baseline flag": lambda p: ["baseline", "flag", "--observations", p, "--train-until", "2026-06-10"],
        "baseline --sensors": lambda p: ["baseline", "flag", "--observations", obs, "--train-until",
                                         "2026-06-10", "--sensors", p],
        "fuse": lambda p: ["fuse", "--events", p],
        "dispatch --calls": lambda p: ["dispatch", "simulate", "--network", net, "--calls", p,
                                       "--units", good / "units.csv"],
        "dispatch --units": lambda p: ["dispatch", "simulate", "--network", net, "--calls",
                                       good / "calls.csv", "--units", p],
    }


COMMANDS = ["validate", "store ingest", "forecast backtest", "forecast predict", "forecast --sensors",
            "forecast --capacity", "baseline flag", "baseline --sensors", "fuse", "dispatch --calls",
            "dispatch --units"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("name", BAD_TABLES)
def test_a_broken_table_file_is_a_clear_error_in_every_table_command(name, command, good, bad, tmp_path):
    args = table_commands(good, tmp_path)[command](bad / name)
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert_clear_error(result, bad / name)
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.parquet"))


@pytest.mark.parametrize("name", BAD_TABLES)
def test_read_table_raises_only_table_file_error_naming_the_file(name, bad):
    with pytest.raises(TableFileError) as err:
        read_table(bad / name, required=["ts", "sensor_id", "metric", "value"])
    assert str(bad / name) in str(err.value)


@pytest.mark.parametrize("name, line, words", [
    ("latin1.csv", 2, "UTF-8"), ("nul_bytes.csv", 2, "NUL"), ("ragged.csv", None, "line 3"),
    ("header_only_wrong.csv", 1, "missing column 'ts'"), ("empty.csv", None, "empty")])
def test_read_table_names_the_line_or_the_column(name, line, words, bad):
    with pytest.raises(TableFileError) as err:
        read_table(bad / name, required=["ts", "sensor_id", "metric", "value"])
    assert err.value.line == line and words in str(err.value)


@pytest.mark.parametrize("name", BAD_RULES)
def test_broken_fusion_rules_are_a_clear_error(name, good, bad):
    result = CliRunner().invoke(main, ["fuse", "--events", str(good / "events.csv"), "--rules", str(bad / name)])
    assert_clear_error(result, bad / name)
    assert not Path("/tmp/safecity-pwned").exists()


def test_fusion_rules_name_the_field_of_the_wrong_type(bad):
    from safecity.incidents.fusion import FusionRules

    with pytest.raises(ValueError, match="window_s: expected a finite number, got 'soon'"):
        FusionRules.from_yaml(bad / "wrong_types.yml")
    with pytest.raises(ValueError, match=r"python_tag.yml:1: not valid fusion rules YAML"):
        FusionRules.from_yaml(bad / "python_tag.yml")


@pytest.mark.parametrize("name", BAD_CALENDARS)
def test_a_broken_calendar_is_a_clear_error(name, good, bad):
    result = CliRunner().invoke(main, ["forecast", "backtest", "--observations", str(good / "obs.csv"),
                                       "--calendar", str(bad / name)])
    assert_clear_error(result, bad / name)


def test_nan_coordinates_are_refused_naming_the_feature(bad):
    from safecity.data.calendars import CalendarError, read_roadworks

    with pytest.raises(CalendarError, match=r"features\[0\]\.geometry: coordinate \[nan, nan\] is not a number"):
        read_roadworks(bad / "nan_coordinates.geojson")


@pytest.mark.parametrize("command", ["simulate", "inputs"])
def test_a_junk_pbf_is_a_clear_error(command, good, bad, tmp_path):
    args = {"simulate": ["dispatch", "simulate", "--network", bad / "junk.osm.pbf", "--calls",
                         good / "calls.csv", "--units", good / "units.csv"],
            "inputs": ["dispatch", "inputs", "--network", bad / "junk.osm.pbf", "--calls-out",
                       tmp_path / "c.csv", "--units-out", tmp_path / "u.csv"]}[command]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert_clear_error(result, bad / "junk.osm.pbf")


@pytest.mark.parametrize("option, value, words", [
    ("--tz", "Mars/Olympus_Mons", "unknown time zone"),
    ("--lead-time", "abc", "not a duration"),
    ("--horizon", "soon", "not a duration"),
    ("--out", "no-such-folder/f.csv", "does not exist"),
    ("--alerts", "no-such-folder/a.csv", "does not exist"),
])
def test_bad_forecast_arguments_are_refused_while_parsing(option, value, words, good, tmp_path):
    args = ["forecast", "predict", "--observations", str(good / "obs.csv"), "--out", str(tmp_path / "f.csv"),
            "--threshold", "5"]
    value = str(tmp_path / value) if "folder" in value else value
    result = CliRunner().invoke(main, args + [option, value])
    # exit code 2 is click's usage error: raised while parsing, so before any reading or fitting
    assert result.exit_code == 2 and words in result.output and option in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_non_numeric_capacity_is_refused_naming_the_row(good, tmp_path):
    capacity = tmp_path / "capacity.csv"
    pd.DataFrame({"sensor_id": ["cnt-1", "cnt-2"], "capacity": [100, "lots"]}).to_csv(capacity, index=False)
    result = CliRunner().invoke(main, ["forecast", "predict", "--observations", str(good / "obs.csv"),
                                       "--capacity", str(capacity), "--out", str(tmp_path / "f.csv")])
    assert_clear_error(result, capacity)
    assert "column 'capacity'" in result.output and "rows 1" in result.output
    assert not (tmp_path / "f.csv").exists()


@pytest.mark.parametrize("option", ["-o", "--out"])
def test_other_outputs_into_a_missing_folder_are_refused_while_parsing(option, good, tmp_path):
    out = tmp_path / "missing" / "x.csv"
    runs = {"-o": ["fuse", "--events", good / "events.csv", "-o", out],
            "--out": ["dispatch", "simulate", "--network", good / "net", "--calls", good / "calls.csv",
                      "--units", good / "units.csv", "--out", out]}
    result = CliRunner().invoke(main, [str(a) for a in runs[option]])
    assert result.exit_code == 2 and "does not exist" in result.output, result.output


@pytest.mark.parametrize("calls_kind, units_kind, words", [
    ("Police", "police", "unknown call kind(s) 'Police'"),
    ("police", "cop", "unknown unit kind(s) 'cop'"),
    ("fire", "police", "no call could be answered"),
])
def test_dispatch_with_unknown_or_unmatched_kinds_fails_naming_them(calls_kind, units_kind, words, good,
                                                                    tmp_path):
    calls, units = tmp_path / "calls.csv", tmp_path / "units.csv"
    pd.read_csv(good / "calls.csv").assign(kind=calls_kind).to_csv(calls, index=False)
    pd.read_csv(good / "units.csv").assign(kind=units_kind).to_csv(units, index=False)
    result = CliRunner().invoke(main, ["dispatch", "simulate", "--network", str(good / "net"), "--calls",
                                       str(calls), "--units", str(units), "--boot", "10"])
    assert result.exit_code == 1 and words in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_vad_score_on_unreadable_frames_fails_naming_the_source(tmp_path):
    import cv2

    train = tmp_path / "train" / "clip1"
    train.mkdir(parents=True)
    for i in range(8):
        img = np.full((48, 64), 90, np.uint8)
        img[10:30, 4 + 4 * i:12 + 4 * i] = 200  # a moving block
        cv2.imwrite(str(train / f"{i:03d}.png"), img)
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(3):
        (junk / f"{i:03d}.jpg").write_bytes(os.urandom(300))
    result = CliRunner().invoke(main, ["vad", "score", "--train", str(tmp_path / "train"), "--window", "16",
                                       "--source", str(junk)])
    assert_clear_error(result, junk)
    assert "no frame could be read" in result.output and "000.jpg" in result.output


@pytest.mark.parametrize("args", [
    ["validate", "observations", "{bad}/binary.csv"],
    ["fuse", "--events", "{good}/events.csv", "--rules", "{bad}/python_tag.yml"],
    ["dispatch", "simulate", "--network", "{bad}/junk.osm.pbf", "--calls", "{good}/calls.csv",
     "--units", "{good}/units.csv"],
], ids=["binary-csv", "python-tag", "junk-pbf"])
def test_a_real_process_prints_no_traceback(args, good, bad):
    argv = [a.format(good=good, bad=bad) for a in args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "safecity.cli", *argv], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "Error: " in proc.stderr and argv[-1 if "validate" in argv else argv.index("--network") + 1
                                            if "dispatch" in argv else -1] in proc.stderr


# --------------------------------------------------------------------------- memory (issue 16 item 11)

PEAK_RSS = """
import resource, sys
from safecity.data.tables import TableFileError, read_table
try:
    read_table(sys.argv[1], required=["ts", "sensor_id", "metric", "value"])
    print("read")
except TableFileError as err:
    print(err)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


def peak(path) -> tuple[str, int]:
    """The message and the peak resident memory (bytes) of reading ``path`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path)], capture_output=True, text=True,
                         env=env, check=True, timeout=600).stdout.splitlines()
    return out[0], int(out[-1]) * 1024


@pytest.mark.parametrize("header", [b"ts,sensor_id,metric\n", b"ts,sensor_id,metric,value\n"],
                         ids=["missing-column", "all-columns"])
def test_a_big_sparse_csv_is_refused_with_bounded_memory(header, tmp_path):
    """200 MB of NUL bytes after a header: refused naming the column (or the NUL line), memory bounded."""
    path = tmp_path / "sparse.csv"
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(200 * 1024 * 1024)  # sparse: no disk used
    message, rss = peak(path)
    expected = "missing column 'value'" if header.count(b",") == 2 else "NUL"
    assert str(path) in message and expected in message, message
    baseline = peak(FIXTURES / "empty.csv")[1]  # the interpreter, pandas and pyarrow alone
    assert rss - baseline < 64 * 1024 * 1024, (rss, baseline)


def test_a_large_csv_body_is_read_in_chunks(tmp_path, monkeypatch):
    """A body longer than one chunk comes back whole and in order."""
    import safecity.data.tables as tables

    monkeypatch.setattr(tables, "CHUNK_ROWS", 1000)
    path = tmp_path / "obs.csv"
    n = 5500
    pd.DataFrame({"ts": pd.date_range("2026-06-01", periods=n, freq="min", tz="UTC").astype(str),
                  "sensor_id": "c", "metric": "people_count", "value": np.arange(n)}).to_csv(path, index=False)
    df = read_table(path, ["ts", "value"])
    assert len(df) == n and df["value"].tolist() == list(range(n))
