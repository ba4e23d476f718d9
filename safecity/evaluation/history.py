"""The hourly count history estimators are fitted and measured on: Melbourne's, else the demo city's.

The baselines, forecasts and evaluation notebooks start from the same history;
reading it here keeps one copy of which catalog entries, which calendar and
which city (time zone, holidays) go together. The demo city stands in when the
real counts are absent, so every notebook still runs end to end.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from safecity.config.city import DEFAULT_CITY, MELBOURNE, CityConfig


@dataclass(frozen=True)
class CountHistory:
    """People counts (an ``observations`` table) with the sensors, calendar and city they belong to."""

    counts: pd.DataFrame
    sensors: pd.DataFrame
    calendar: pd.DataFrame
    city: CityConfig
    source: str  # what the counts are, for titles and captions
    real: bool   # False for the synthetic demo city


def melbourne_history(catalog) -> CountHistory:
    """Melbourne's pedestrian counts, counters and known mass events, from the catalog.

    Raises ``FileNotFoundError`` when the counts are absent here.
    """
    return CountHistory(counts=catalog["melbourne_counts"].read(),
                        sensors=catalog["melbourne_sensors"].read(),
                        calendar=catalog["melbourne_calendar"].read(),
                        city=MELBOURNE, source="Melbourne pedestrian counts", real=True)


def demo_history(seed: int = 0, days: int = 56) -> CountHistory:
    """The synthetic Marseille's people counts over ``days`` days."""
    from safecity.sim.city import simulate_city

    city = simulate_city(seed=seed, days=days)
    counts = city.observations[city.observations["metric"] == "people_count"]
    return CountHistory(counts=counts, sensors=city.sensors, calendar=city.calendar,
                        city=DEFAULT_CITY, source=f"demo city (seed {seed})", real=False)


def count_history(catalog, seed: int = 0, days: int = 56) -> CountHistory:
    """Melbourne's history when its counts are here, else the demo city's (the reason is printed)."""
    try:
        return melbourne_history(catalog)
    except FileNotFoundError as err:
        print(f"skipped the Melbourne counts: {err}\nThe demo city (seed {seed}, {days} days) stands in.")
        return demo_history(seed=seed, days=days)
