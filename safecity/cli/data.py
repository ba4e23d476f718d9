"""Commands on the data: simulate a city, validate tables, the store, the catalog."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from safecity.cli.root import main
from safecity.cli.options import _write_table_file, _read_table_file


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
              help="Also render the scripted camera clips, and write cameras.yml (the cameras "
                   "playing them, calibrated on the ground).")
def simulate(out_dir, seed, cameras, counters, days, units, start, freq, clips) -> None:
    """Generate a deterministic synthetic Marseille with ground truth."""
    from tqdm import tqdm

    from safecity.data import citydir
    from safecity.sim import city as sim

    steps = ["simulating the city", "writing the store"] + (["rendering clips"] if clips else [])
    with tqdm(total=len(steps), desc="simulate", file=sys.stderr, unit="step") as bar:
        bar.set_postfix_str(steps[0])
        city = sim.simulate_city(seed=seed, n_cameras=cameras, n_counters=counters, days=days,
                                 n_units=units, start=start, freq=freq)
        bar.update()
        bar.set_postfix_str(steps[1])
        citydir.write_city(city, out_dir)
        bar.update()
        if clips:
            bar.set_postfix_str(steps[2])
            sim.write_clips(Path(out_dir) / "clips", seed=seed)
            # the cameras play these clips, so their configuration (and its checks) needs them
            # (an absolute folder: a relative one would be read again from the city's own folder)
            installation = sim.camera_installation(city.sensors, city.nodes,
                                                   Path(out_dir).resolve() / "clips")
            if installation is not None:
                citydir.write_cameras(installation, out_dir)
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
    from safecity.data import schema

    df = _read_table_file(path, schema.columns(table))
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
    """Validate PATH and store it as TABLE (idempotent: twice stores once).

    Units go through the status transition rules and are audited, as a dispatch is.
    """
    from filelock import Timeout

    from safecity.data import schema
    from safecity.data.store import os_user
    from safecity.data.store import Store
    from safecity.dispatch.units import TransitionError, UnknownUnitError, ingest_positions

    df = _read_table_file(path, schema.columns(table))
    try:
        store = Store(data_dir)
        if table == "units":
            added = ingest_positions(store, df, actor=os_user(), register=True)
        else:
            added = store.append(table, df)
    except (schema.SchemaError, TransitionError, UnknownUnitError, ValueError) as err:
        raise click.ClickException(f"{path}: {err} (nothing was stored)") from None
    except Timeout:
        raise click.ClickException(f"{data_dir}: another writer held the store's lock too long; "
                                   "nothing was stored, try again") from None
    click.echo(json.dumps({"table": table, "new_rows": added}))


@store.command("retention")
@click.option("--data-dir", type=click.Path(file_okay=False), required=True)
@click.option("--now", default=None,
              help="Reference time, ISO 8601 (default: the clock); not later than the clock. "
                   "The audit log's retention always follows the clock.")
def store_retention(data_dir, now) -> None:
    """Delete what is older than each table's retention period, and audit it (as the OS user)."""
    from safecity.data.store import os_user
    from safecity.data.store import Store, parse_time

    try:
        now = None if now is None else parse_time(now, "--now")
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    try:
        deleted = Store(data_dir).enforce_retention(now=now, actor=os_user())
    except ValueError as err:  # a --now in the future
        raise click.ClickException(f"--now: {err}") from None
    click.echo(json.dumps(deleted))


@main.group("catalog")
def catalog_group() -> None:
    """List and export the entries of the intake catalog (catalog.yml)."""


def _open_catalog(path):
    import intake

    if not Path(path).is_file():
        raise click.ClickException(f"{path}: no catalog there (use --catalog)")
    return intake.open_catalog(str(path))


@catalog_group.command("list")
@click.option("--catalog", "catalog_path", default="catalog.yml", show_default=True)
def catalog_list(catalog_path) -> None:
    """Print each entry's name and description."""
    cat = _open_catalog(catalog_path)
    for name in cat:
        click.echo(f"{name}: {cat[name].describe().get('description', '')}")


@catalog_group.command("export")
@click.argument("entry")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="File to write (.parquet or .csv).")
@click.option("--catalog", "catalog_path", default="catalog.yml", show_default=True)
def catalog_export(entry, out_path, catalog_path) -> None:
    """Read catalog ENTRY and write it as a table file for the other commands."""
    cat = _open_catalog(catalog_path)
    if entry not in cat:
        raise click.ClickException(f"{catalog_path}: no entry '{entry}' (see 'safecity catalog list')")
    try:
        df = cat[entry].read()
    except FileNotFoundError as err:
        raise click.ClickException(str(err)) from None
    _write_table_file(df, out_path)
    click.echo(json.dumps({"entry": entry, "rows": len(df), "out": out_path}))
