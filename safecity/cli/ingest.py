"""Feeding a live city: sources' tokens (``safecity ingest token``) and bridges."""
from __future__ import annotations

import click

from safecity.cli.root import main


@main.group()
def ingest() -> None:
    """Live sources: their tokens for the ingest API, and bridges from other systems."""


@ingest.command("token")
@click.option("--file", "tokens_file", required=True, type=click.Path(dir_okay=False),
              help="The token file 'safecity serve --live --ingest-tokens' reads (mode 600).")
@click.option("--name", required=True, help="The source's name (a camera group, a detector network...).")
@click.option("--tables", required=True,
              help="What it may write, comma-separated: events, observations, units, police-log, cameras.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Rows per second it may send; beyond, the server answers 429 "
                   "(default: the server's, 5,000).")
def ingest_token(tokens_file, name, tables, rate) -> None:
    """Create a source's token: printed once, on the last line; only its hash is kept.

    Giving an existing name again replaces its token (the old one stops working
    when the server restarts).
    """
    from safecity.ingest.tokens import create_token

    try:
        token = create_token(tokens_file, name, tables, rate)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{tokens_file}: token for '{name}' (may write {tables}); it is not stored, "
               "keep it now:", err=True)
    click.echo(token)
