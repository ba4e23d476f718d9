"""Shared test helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """The real-data folder: ``$SAFECITY_SHARED_DATA``, else ``../shared/data`` beside the repo."""
    env = os.environ.get("SAFECITY_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def shared_data(relpath: str = "") -> Path:
    """The path of ``relpath`` in the real-data folder, or skip the test when it is absent.

    With ``SAFECITY_REQUIRE_DATA=1`` (CI) an absent data set fails the test
    instead, so that CI never passes by skipping what it is meant to check.
    """
    path = shared_data_root() / relpath
    if path.exists():
        return path
    message = f"real data not found at {path}"
    if os.environ.get("SAFECITY_REQUIRE_DATA") == "1":
        pytest.fail(f"{message} (SAFECITY_REQUIRE_DATA=1)", pytrace=False)
    pytest.skip(message)
