"""The city safecity runs for: its time zone and the calendars that shape its usual week.

One ``CityConfig`` answers every question about local time and holidays, so that
a usual week, a forecast and a dashboard all speak the city's time. It is read
from a ``city.yml``::

    name: Melbourne
    tz: Australia/Melbourne
    country: AU        # public holidays (python-holidays country code), or null
    subdiv: VIC        # holiday subdivision (state, region), or null
    school_zone: null  # French school-holiday zone A, B or C, or null

``DEFAULT_CITY`` (Marseille) is what every estimator and command uses when no
city is given.
"""
from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


class CityConfigError(ValueError):
    """A city file that cannot be used; the message names the file and the field."""


class CityConfig(BaseModel):
    """Where the city is in time: its zone, and which holidays it keeps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "Marseille"
    tz: str = "Europe/Paris"
    country: str | None = "FR"
    subdiv: str | None = None
    school_zone: str | None = "B"

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (like Europe/Paris or UTC)") from None
        return value

    @field_validator("school_zone")
    @classmethod
    def _french_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in ("A", "B", "C"):
            raise ValueError(f"school_zone is A, B, C or null, got {value!r}")
        return value


#: The city used when none is given: the demo's Marseille.
DEFAULT_CITY = CityConfig()

#: Melbourne, whose pedestrian counts are the real history the forecasts are measured on.
MELBOURNE = CityConfig(name="Melbourne", tz="Australia/Melbourne", country="AU", subdiv="VIC",
                       school_zone=None)


def load_city(path: str | os.PathLike) -> CityConfig:
    """Read and validate a ``city.yml``; every mistake is named with the file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CityConfigError(f"{path}: cannot read the city file: {exc}") from None
    if not isinstance(raw, dict):
        raise CityConfigError(f"{path}: a city file is a mapping of fields, got {type(raw).__name__}")
    try:
        return CityConfig(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'city'}: {e['msg']}" for e in exc.errors())
        raise CityConfigError(f"{path}: {problems}") from None
