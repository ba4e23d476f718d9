"""The count history the notebooks measure on: Melbourne's through the catalog, else the demo city."""
from safecity.config.city import DEFAULT_CITY, MELBOURNE
from safecity.data.catalog import open_catalog, read_if_present
from safecity.evaluation.history import count_history, demo_history, melbourne_history

from conftest import shared_data


def test_open_catalog_finds_the_project_catalog_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cat = open_catalog()
    assert {"melbourne_counts", "melbourne_calendar", "demo_observations"} <= set(cat)


def test_read_if_present_says_what_is_skipped_and_returns_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAFECITY_SHARED_DATA", str(tmp_path))
    assert read_if_present(open_catalog(), "sf_fire_2020") is None
    assert "skipped sf_fire_2020" in capsys.readouterr().out
    calendar = read_if_present(open_catalog(), "melbourne_calendar")  # ships with the package
    assert calendar is not None and len(calendar) > 0


def test_demo_history_is_people_counts_of_the_default_city():
    history = demo_history(seed=0, days=7)
    assert set(history.counts["metric"]) == {"people_count"}
    assert history.city == DEFAULT_CITY and not history.real
    assert set(history.counts["sensor_id"]) <= set(history.sensors["sensor_id"])


def test_count_history_falls_back_to_the_demo_city_and_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAFECITY_SHARED_DATA", str(tmp_path))
    history = count_history(open_catalog(), seed=0, days=7)
    assert not history.real and history.source == "demo city (seed 0)"
    assert "skipped the Melbourne counts" in capsys.readouterr().out


def test_melbourne_history_reads_counts_sensors_and_events_in_melbourne_time():
    shared_data("city/melbourne_pedestrians/pedestriancounts_melbourne.zip")
    history = melbourne_history(open_catalog())
    assert history.real and history.city == MELBOURNE
    assert history.counts["sensor_id"].nunique() == 39
    assert set(history.counts["sensor_id"]) <= set(history.sensors["sensor_id"])
    assert history.calendar["name"].str.contains("White Night").any()
