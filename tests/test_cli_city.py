"""``--city city.yml`` on the commands that need the city's time: read, validated, overridden by flags."""
import pandas as pd
import pytest
from click.testing import CliRunner

from safecity.cli.root import main
from safecity.config.city import MELBOURNE
from safecity.data import citydir


@pytest.fixture
def late_counts(tmp_path):
    """Counts that all come after the training cut, so the command names the cut it used."""
    path = tmp_path / "obs.csv"
    ts = pd.date_range("2026-02-01", periods=48, freq="h", tz="UTC")
    pd.DataFrame({"ts": ts, "sensor_id": "s1", "value": 10.0}).to_csv(path, index=False)
    return path


def _cut(args, late_counts) -> str:
    """The training cut ``baseline flag`` resolved from a local --train-until."""
    result = CliRunner().invoke(main, ["baseline", "flag", "--observations", str(late_counts),
                                       "--train-until", "2026-01-15", *args])
    assert result.exit_code != 0 and "no rows before --train-until" in result.output, result.output
    return result.output.split("--train-until ")[1].split()[0]


def test_city_file_sets_the_time_zone_and_flags_override_it(late_counts, tmp_path):
    citydir.write_config(MELBOURNE, tmp_path)
    melbourne = str(tmp_path / "city.yml")
    assert _cut([], late_counts) == "2026-01-15T00:00:00+01:00"  # DEFAULT_CITY: Paris in winter
    assert _cut(["--city", melbourne], late_counts) == "2026-01-15T00:00:00+11:00"
    assert _cut(["--city", melbourne, "--tz", "UTC"], late_counts) == "2026-01-15T00:00:00+00:00"


def test_a_bad_city_file_is_refused_with_its_name_and_field(late_counts, tmp_path):
    bad = tmp_path / "city.yml"
    bad.write_text("name: Nowhere\ntz: Mars/Olympus\n")
    result = CliRunner().invoke(main, ["forecast", "backtest", "--observations", str(late_counts),
                                       "--city", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output and "tz" in result.output and "Mars/Olympus" in result.output
