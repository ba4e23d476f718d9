"""``safecity ledger``: the alarm ledger of a served city, from its operators' verdicts."""
from __future__ import annotations

import json

import click

from safecity.cli.options import _check_tz, _load_city_file
from safecity.cli.root import main


@main.group()
def ledger() -> None:
    """The alarm ledger: how often each detector is right, from the operators' verdicts."""


def _local_time(value: str | None, tz: str, name: str):
    """An ISO time; one without a zone is the city's local time."""
    import pandas as pd

    if value is None:
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = None
    if ts is None or pd.isna(ts):
        raise click.BadParameter(f"{value!r} is not an ISO date or time (e.g. 2026-06-01 or "
                                 "2026-06-01T10:00+02:00)", param_hint=name)
    return ts.tz_localize(tz) if ts.tzinfo is None else ts


@ledger.command("report")
@click.option("--data-dir", "data_dir", required=True, type=click.Path(file_okay=False),
              help="The served city's --state-dir: its state store (verdicts) and live history.")
@click.option("--state", default=None,
              help="The state store, if not the directory's state.sqlite: a postgresql:// URL.")
@click.option("--city", "city_config", type=click.Path(exists=True, dir_okay=False),
              callback=_load_city_file, help="The city's city.yml, for its time zone.")
@click.option("--tz", default=None, callback=_check_tz,
              help="The city's time zone, for the hours of day.  [default: --city's, else Europe/Paris]")
@click.option("--since", default=None, help="Alarms raised from this ISO time (local if no zone).")
@click.option("--until", default=None, help="Alarms raised before this ISO time (local if no zone).")
def ledger_report_command(data_dir, state, city_config, tz, since, until) -> None:
    """Print the ledger (precision per detector, camera and hour; false alarms per camera-hour) as JSON."""
    from safecity.config.city import DEFAULT_CITY
    from safecity.evaluation.ledger import ledger_report, read_ledger

    tz = tz or (city_config or DEFAULT_CITY).tz
    start, end = _local_time(since, tz, "--since"), _local_time(until, tz, "--until")
    try:
        result = read_ledger(data_dir, tz, state=state, since=start, until=end)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(ledger_report(result), indent=1))
