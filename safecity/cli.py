"""The ``safecity`` command line: thin wrappers that read files, call the package, write files.

Every subcommand has ``--help``; long work shows a progress bar on standard
error so that standard output stays clean for JSON or CSV.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="safecity")
def main() -> None:
    """safecity: city-operations analytics, private by design."""


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="demo-data",
              show_default=True, help="Data directory to write (a safecity store).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same city.")
@click.option("--cameras", type=click.IntRange(0), default=8, show_default=True)
@click.option("--counters", type=click.IntRange(0), default=24, show_default=True)
@click.option("--days", type=click.IntRange(1), default=7, show_default=True)
@click.option("--units", type=click.IntRange(0), default=12, show_default=True)
@click.option("--start", default="2026-06-01", show_default=True, help="First day (UTC).")
@click.option("--freq", default="5min", show_default=True, help="Observation bin (pandas offset).")
@click.option("--clips/--no-clips", default=True, show_default=True,
              help="Also render the scripted camera clips.")
def simulate(out_dir, seed, cameras, counters, days, units, start, freq, clips) -> None:
    """Generate a deterministic synthetic Marseille with ground truth."""
    from tqdm import tqdm

    from . import simulate as sim

    steps = ["simulating the city", "writing the store"] + (["rendering clips"] if clips else [])
    with tqdm(total=len(steps), desc="simulate", file=sys.stderr, unit="step") as bar:
        bar.set_postfix_str(steps[0])
        city = sim.simulate_city(seed=seed, n_cameras=cameras, n_counters=counters, days=days,
                                 n_units=units, start=start, freq=freq)
        bar.update()
        bar.set_postfix_str(steps[1])
        sim.write_city(city, out_dir)
        bar.update()
        if clips:
            bar.set_postfix_str(steps[2])
            sim.write_clips(Path(out_dir) / "clips", seed=seed)
            bar.update()
    click.echo(json.dumps({"out": str(out_dir), "sensors": len(city.sensors),
                           "observations": len(city.observations), "events": len(city.events),
                           "unit_positions": len(city.units)}))


@main.command()
@click.argument("table", type=click.Choice(["sensors", "observations", "events", "incidents",
                                            "units", "calendar"]))
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def validate(table, path) -> None:
    """Check a CSV or Parquet file against the data model's TABLE schema."""
    from . import schema

    df = _read_table_file(path)
    try:
        schema.validate(df, table)
    except schema.SchemaError as err:
        raise click.ClickException(f"{path}: {err}") from None
    click.echo(f"{path}: {len(df)} rows, valid '{table}' table")


@main.group()
def store() -> None:
    """Inspect and maintain a data directory."""


@store.command("ingest")
@click.argument("table", type=click.Choice(["sensors", "observations", "events", "incidents",
                                            "units", "calendar"]))
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--data-dir", type=click.Path(file_okay=False), required=True)
def store_ingest(table, path, data_dir) -> None:
    """Validate PATH and store it as TABLE (idempotent: twice stores once)."""
    from . import schema
    from .store import Store

    try:
        added = Store(data_dir).append(table, _read_table_file(path))
    except schema.SchemaError as err:
        raise click.ClickException(f"{path}: {err} (nothing was stored)") from None
    click.echo(json.dumps({"table": table, "new_rows": added}))


@store.command("retention")
@click.option("--data-dir", type=click.Path(file_okay=False), required=True)
@click.option("--now", default=None, help="Reference time (default: now).")
def store_retention(data_dir, now) -> None:
    """Delete what is older than each table's retention period, and audit it."""
    from .store import Store

    click.echo(json.dumps(Store(data_dir).enforce_retention(now=now)))


def _read_table_file(path: str):
    import pandas as pd

    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(path)
    raise click.ClickException(f"{path}: expected a .csv or .parquet file")


if __name__ == "__main__":
    main()
