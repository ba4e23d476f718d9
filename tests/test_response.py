"""Response times: measures per interval, exclusions counted, summaries on real SF data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import shared_data
from safecity.data.catalog import read_sf_fire_responses
from safecity.dispatch.response import MEASURES, excluded_counts, median_ci, response_times, summarise

T0 = pd.Timestamp("2020-04-08 06:00", tz="UTC")


def _responses():
    s = pd.Timedelta(seconds=1)
    return pd.DataFrame({
        "unit_type": ["ENGINE", "ENGINE", "MEDIC", "MEDIC"], "priority": ["3", "3", "2", "3"],
        "received": [T0] * 4,
        "dispatched": [T0 + 60 * s, T0 + 90 * s, T0 + 120 * s, T0 - 5 * s],  # last: negative
        "response": [T0 + 120 * s, T0 + 150 * s, pd.NaT, T0 + 60 * s],
        "on_scene": [T0 + 300 * s, T0 + 400 * s, pd.NaT, T0 + 5 * 3600 * s],  # last: implausible
    })


def test_measures_and_exclusions_per_measure():
    times = response_times(_responses())
    assert times.loc[0, ["dispatch_delay_s", "turnout_s", "travel_s", "total_s"]].tolist() \
        == [60, 60, 180, 300]
    # a cancelled unit (no response, no on_scene) keeps its dispatch delay
    assert times.loc[2, "dispatch_delay_s"] == 120 and np.isnan(times.loc[2, "travel_s"])
    ex = excluded_counts(times)
    assert ex.loc["dispatch_delay_s", "negative"] == 1
    assert ex.loc["travel_s", "missing"] == 1 and ex.loc["travel_s", "implausible"] == 1
    assert ex.loc["total_s", "implausible"] == 1


def test_summary_shape_and_ci():
    table = summarise(_responses(), n_boot=200)
    assert set(table["measure"]) <= set(MEASURES)
    engine = table[(table["unit_type"] == "ENGINE") & (table["measure"] == "total_s")].iloc[0]
    assert engine["n"] == 2 and engine["median"] == 350
    assert engine["median_lo"] <= engine["median"] <= engine["median_hi"]


def test_median_ci_is_reproducible():
    values = np.random.default_rng(1).exponential(300, 500)
    assert median_ci(values) == median_ci(values)
    lo, hi = median_ci(values)
    assert lo < np.median(values) < hi


@pytest.fixture(scope="module")
def sf():
    return read_sf_fire_responses(shared_data("city/sf_fire/sffd_calls_jnhamid_2020.csv"))


def test_sf_fire_plausible_times(sf):
    times = response_times(sf)
    table = summarise(times)
    total = table[table["measure"] == "total_s"].set_index(["unit_type", "priority"])
    engine = total.loc[("ENGINE", "3")]
    assert 3 * 60 < engine["median"] < 15 * 60
    assert engine["n"] > 1000
    assert (total["median_lo"] <= total["median"]).all()
    assert (total["median"] <= total["median_hi"]).all()
    delay = table[table["measure"] == "dispatch_delay_s"].set_index(["unit_type", "priority"])
    assert 30 < delay.loc[("ENGINE", "3"), "median"] < 5 * 60
    # travel is the part that differs most by unit type: ambulances come from further away
    travel = table[table["measure"] == "travel_s"].set_index(["unit_type", "priority"])
    assert travel.loc[("MEDIC", "3"), "median"] > travel.loc[("ENGINE", "3"), "median"]


def test_sf_fire_exclusions_reported(sf):
    ex = excluded_counts(response_times(sf))
    # units cancelled before arriving have no on-scene time: many, but a minority
    assert 0 < ex.loc["total_s", "missing"] < len(sf) / 2
    assert ex.loc["dispatch_delay_s", "missing"] == 0
    assert ex.to_numpy().sum() > 0
