"""The ``safecity`` command line: one module of thin commands per domain.

``root.main`` is the click group; importing each domain module registers its commands.
"""
from safecity.cli import app, baseline, data, dispatch, forecast, incidents, ingest, ledger, video  # noqa: F401  (registers)
from safecity.cli.root import main

__all__ = ["main"]
