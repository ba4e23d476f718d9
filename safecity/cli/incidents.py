"""``safecity fuse``: fuse events into incidents."""
from __future__ import annotations

import json
from pathlib import Path

import click

from safecity.cli.options import _check_out, _read_table_file, _write_table_file
from safecity.cli.root import main


@main.command()
@click.option("--events", "events_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Events table (CSV or Parquet, the data model's events columns).")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Fusion rules (YAML); unspecified parts keep the defaults.")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None, callback=_check_out,
              help="Incidents file (.csv, .parquet or .json); CSV on standard output if absent.")
def fuse(events_path, rules_path, out_path) -> None:
    """Group events close in time and space into incidents."""
    from safecity.incidents import fusion
    from safecity.data import schema

    try:
        rules = fusion.FusionRules.from_yaml(rules_path) if rules_path else None
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    try:
        events = schema.validate(_read_table_file(events_path, schema.columns("events")), "events")
    except schema.SchemaError as err:
        raise click.ClickException(f"{events_path}: {err}") from None
    incidents, membership = fusion.fuse(events, rules)
    click.echo(json.dumps({"events": len(events), "incidents": len(incidents),
                           "duplicates": int(membership["duplicate_of"].notna().sum())}), err=True)
    if out_path is not None and Path(out_path).suffix.lower() == ".json":
        table = incidents.assign(ts=incidents["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        Path(out_path).write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    elif out_path is not None:
        _write_table_file(incidents, out_path)
    else:
        click.echo(incidents.to_csv(index=False), nl=False)


# --------------------------------------------------------------------------- dispatch simulation
