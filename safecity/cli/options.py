"""Options and file helpers shared by the commands."""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import click



def _write_table_file(df, path: str) -> None:
    """Write atomically: a reader never sees half a file."""
    import os

    suffix = Path(path).suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise click.ClickException(f"{path}: expected a .csv or .parquet file name")
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    try:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"{path}: cannot write: {err.strerror or err}") from None


def _read_table_file(path: str, required=()):
    """``tables.read_table`` with its error as a ClickException; ``required`` columns are checked first."""
    from safecity.data.tables import TableFileError, read_table

    try:
        return read_table(path, required)
    except TableFileError as err:
        raise click.ClickException(str(err)) from None


def _check_tz(ctx, param, value):
    """Click callback: an unknown time zone is refused while parsing, before any reading or fitting."""
    import pandas as pd

    if value is None:
        return None
    try:
        pd.Timestamp("2026-01-01").tz_localize(value)
    except Exception:  # pytz, zoneinfo and dateutil raise different types
        raise click.BadParameter(f"unknown time zone {value!r} (like Europe/Paris or UTC)") from None
    return value


def _check_duration(ctx, param, value):
    """Click callback: a pandas duration (24h, 3D), checked while parsing."""
    import pandas as pd

    try:
        pd.Timedelta(value)
    except (ValueError, TypeError):
        raise click.BadParameter(f"not a duration: {value!r} (like 6h or 3D)") from None
    return value


def _check_out(ctx, param, value):
    """Click callback: an output file whose folder does not exist is refused before the long work."""
    if value is not None and not Path(value).resolve().parent.is_dir():
        raise click.BadParameter(f"{value}: the folder {Path(value).parent} does not exist")
    return value


# --------------------------------------------------------------------------- the city


def _forecast_data_options(command):
    """The data every forecast command reads: observations, calendars, sensors, metric, horizon."""
    options = [
        click.option("--observations", "observations_path", required=True,
                     type=click.Path(exists=True, dir_okay=False),
                     help="Observations table, CSV or Parquet (ts, sensor_id, metric, value)."),
        click.option("--calendar", "calendar_paths", multiple=True,
                     type=click.Path(exists=True, dir_okay=False),
                     help="Calendar file (.csv, .ics, .geojson); repeat for several."),
        click.option("--sensors", "sensors_path", type=click.Path(exists=True, dir_okay=False),
                     help="Sensors table (sensor_id, lon, lat), to place events near sensors."),
        click.option("--metric", default="people_count", show_default=True),
        click.option("--horizon", default="24h", show_default=True, callback=_check_duration,
                     help="How far ahead (pandas duration: 24h, 3D, 7D)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_city_file(ctx, param, value):
    """Click callback: a ``city.yml`` is read and validated while parsing."""
    from safecity.config.city import CityConfigError, load_city

    if value is None:
        return None
    try:
        return load_city(value)
    except CityConfigError as err:
        raise click.BadParameter(str(err)) from None


def _city_options(command):
    """The city's time zone and holidays: ``--city city.yml``, each field overridden by its own flag.

    The command receives ``tz``, ``country``, ``subdiv`` and ``school_zone``
    resolved in that order: the explicit flag, else the ``--city`` file, else
    ``DEFAULT_CITY``. A country or school zone the city does not keep is
    passed as ``"none"``, as a user would write it.
    """
    from safecity.config.city import DEFAULT_CITY as city

    @functools.wraps(command)
    def resolved(*args, city_config=None, tz=None, country=None, subdiv=None, school_zone=None,
                 **kwargs):
        chosen = city_config or city
        return command(*args, tz=tz or chosen.tz,
                       country=country if country is not None else chosen.country or "none",
                       subdiv=subdiv if subdiv is not None else chosen.subdiv,
                       school_zone=school_zone if school_zone is not None else chosen.school_zone or "none",
                       **kwargs)

    options = [
        click.option("--city", "city_config", type=click.Path(exists=True, dir_okay=False),
                     callback=_load_city_file,
                     help="The city's city.yml (tz, country, subdiv, school_zone); the flags below "
                          "override its fields."),
        click.option("--tz", default=None, callback=_check_tz,
                     help=f"The city's time zone.  [default: --city's, else {city.tz}]"),
        click.option("--country", default=None,
                     help="Public holidays of this country ('none': none).  "
                          f"[default: --city's, else {city.country}]"),
        click.option("--subdiv", default=None,
                     help="Holiday subdivision (state, region), e.g. VIC.  [default: --city's]"),
        click.option("--school-zone", default=None,
                     help="French school-holiday zone ('none': none).  "
                          f"[default: --city's, else {city.school_zone}]"),
    ]
    for option in reversed(options):
        resolved = option(resolved)
    return resolved


def _check_scheduler(ctx, param, value):
    if value is None:
        return None
    from safecity.cluster.scheduler import parse_scheduler

    try:
        return parse_scheduler(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@contextlib.contextmanager
def _connected(scheduler, **kwargs):
    """``cluster.scheduler.connect``, its refusal a one-line error naming the scheduler."""
    from safecity.cluster.scheduler import connect

    try:
        context = connect(scheduler, **kwargs)
        client = context.__enter__()
    except ConnectionError as err:
        raise click.ClickException(str(err)) from None
    with contextlib.ExitStack() as stack:
        stack.push(context)
        yield client


def _scheduler_option(f):
    """``--scheduler``: run on a Dask cluster instead of in this process (the default)."""
    return click.option(
        "--scheduler", default=None, callback=_check_scheduler, metavar="tcp://HOST:PORT|tls://HOST:PORT|local:N",
        help="Run on a Dask cluster: the address of a running `dask scheduler` (tls:// between machines, "
             "see docs/cluster.md), or local:N for "
             "N worker processes on this machine. Default: this process alone.")(f)
