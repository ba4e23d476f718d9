"""The ``safecity`` command line: thin wrappers that read files, call the package, write files.

Every subcommand has ``--help``; long work shows a progress bar on standard
error so that standard output stays clean for JSON or CSV.
"""
from __future__ import annotations


import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="safecity")
def main() -> None:
    """safecity: city-operations analytics, private by design."""
