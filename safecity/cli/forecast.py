"""``safecity forecast``: backtest and predict mass gatherings."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from safecity.cli.root import main
from safecity.cli.options import _write_table_file, _read_table_file, _check_duration, _check_out, _city_options, _forecast_data_options, _connected, _scheduler_option


@main.group()
def forecast() -> None:
    """Forecast hourly counts with intervals, backtest the forecaster, warn of gatherings."""


def _forecast_inputs(observations_path, calendar_paths, sensors_path, tz):
    """Read and check the observations, calendars and sensors; errors name the file and column."""
    from safecity.data import schema

    obs = _read_table_file(observations_path, ("ts", "sensor_id", "metric", "value"))
    missing = [c for c in ("ts", "sensor_id", "metric", "value") if c not in obs.columns]
    if missing:
        raise click.ClickException(
            f"{observations_path}: missing column {', '.join(repr(c) for c in missing)} "
            f"(observations need ts, sensor_id, metric, value; the file has {', '.join(map(str, obs.columns))})")
    try:
        obs = schema.validate(obs, "observations")
    except schema.SchemaError as err:
        raise click.ClickException(f"{observations_path}: {err}") from None
    calendar = None
    if calendar_paths:
        from safecity.data.calendars import CalendarError, read_calendars

        try:
            calendar = read_calendars(calendar_paths, tz=tz)
        except CalendarError as err:
            raise click.ClickException(str(err)) from None
    sensors = None
    if sensors_path:
        sensors = _read_table_file(sensors_path, ("sensor_id", "lon", "lat"))
        missing = [c for c in ("sensor_id", "lon", "lat") if c not in sensors.columns]
        if missing:
            raise click.ClickException(
                f"{sensors_path}: missing column {', '.join(repr(c) for c in missing)} "
                f"(sensors need sensor_id, lon, lat)")
    return obs, calendar, sensors


def _local_time(value: str, tz: str, option: str):
    """An ISO time as a UTC timestamp; a naive one is local to ``tz``."""
    import pandas as pd

    try:
        t = pd.Timestamp(value)
    except ValueError:
        raise click.ClickException(f"{option}: not a time: {value!r} (like 2014-08-15)") from None
    return (t.tz_localize(tz) if t.tzinfo is None else t).tz_convert("UTC")


def _forecaster(horizon, tz, country, subdiv, school_zone, metric):
    import pandas as pd

    from safecity.forecast.model import GatheringForecaster

    try:
        pd.Timedelta(horizon)
    except ValueError:
        raise click.ClickException(f"--horizon: not a duration: {horizon!r} (like 24h or 3D)") from None

    none = {"", "none", "no"}
    return GatheringForecaster(
        horizon=horizon, tz=tz, metric=metric,
        country=None if str(country).lower() in none else country, subdiv=subdiv,
        school_zone=None if str(school_zone).lower() in none else school_zone)


@forecast.command("backtest")
@_forecast_data_options
@_city_options
@click.option("--folds", type=click.IntRange(1), default=6, show_default=True,
              help="Contiguous blocks of the test period; the model is refitted at each.")
@click.option("--test-days", type=click.IntRange(1), default=183, show_default=True,
              help="Length of the test period: the last N days of the data.")
@click.option("--before", default=None,
              help="Drop the observations at or after this time (ISO; naive is in --tz) first: a "
                   "validation run that never sees a later, reported test period.")
@_scheduler_option
def forecast_backtest(observations_path, calendar_paths, sensors_path, metric, horizon, tz, country,
                      subdiv, school_zone, folds, test_days, before, scheduler) -> None:
    """Rolling-origin backtest: forecaster vs seasonal naive vs time-of-week profile, as JSON.

    Keys: horizon, folds, origins, tz, test_start, test_end, n, methods (per
    method: mae, mape, wape, coverage_80, n), mae_ratio_to_seasonal_naive,
    coverage_80 (the forecaster's), event_days (days, n, methods), events
    (per calendar event: name, start, days, n, mae per method), seconds.
    MAPE leaves out hours with a zero count. With --scheduler the forecaster
    is fitted and forecasts on the cluster, each worker holding its sensors'
    rows only: the same metrics (seconds aside).
    """
    from tqdm import tqdm

    from safecity.evaluation.forecasts import backtest

    obs, calendar, sensors = _forecast_inputs(observations_path, calendar_paths, sensors_path, tz)
    if before is not None:
        cut = _local_time(before, tz, "--before")
        if not (obs["ts"] < cut).any():
            raise click.ClickException(f"--before {before}: no observation is before it "
                                       f"(the first is at {obs['ts'].min()})")
        obs = obs[obs["ts"] < cut]
    estimator = _forecaster(horizon, tz, country, subdiv, school_zone, metric)
    import contextlib


    with tqdm(total=folds, desc="backtest", unit="fold", file=sys.stderr) as bar, \
            (_connected(scheduler) if scheduler is not None else contextlib.nullcontext()) as client:
        try:
            result = backtest(obs, calendar, horizon=horizon, folds=folds, test_days=test_days,
                              estimator=estimator, sensors=sensors, progress=lambda i: bar.update(1),
                              client=client)
        except ValueError as err:
            raise click.ClickException(f"{observations_path}: {err}") from None
    click.echo(json.dumps(result, indent=1))


@forecast.command("predict")
@_forecast_data_options
@_city_options
@click.option("--start", default=None,
              help="First hour to forecast, ISO time (default: the hour after the last observation).")
@click.option("--quantiles", default="0.1,0.5,0.9", show_default=True, help="Comma-separated.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), callback=_check_out,
              help="Forecast table to write (.csv or .parquet).")
@click.option("--threshold", type=float, default=None,
              help="Alert where the upper quantile exceeds this count (every sensor).")
@click.option("--capacity", "capacity_path", type=click.Path(exists=True, dir_okay=False),
              help="CSV or Parquet with sensor_id and capacity: a threshold per sensor or zone.")
@click.option("--lead-time", default="6h", show_default=True, callback=_check_duration,
              help="Alert only for hours at least this long after the start.")
@click.option("--alerts", "alerts_path", type=click.Path(dir_okay=False), callback=_check_out,
              help="Events table of gathering_forecast alerts to write (.csv or .parquet).")
def forecast_predict(observations_path, calendar_paths, sensors_path, metric, horizon, tz, country,
                     subdiv, school_zone, start, quantiles, out_path, threshold, capacity_path,
                     lead_time, alerts_path) -> None:
    """Fit on the observations (before --start) and write the forecast table (and alerts).

    The table has ts, sensor_id, metric, origin and one column per quantile
    (q10, q50, q90). With --threshold or --capacity, hours at least
    --lead-time after the start where the highest quantile exceeds it become
    gathering_forecast events (one per sensor and run of hours), written to
    --alerts. Times without an offset are UTC.
    """
    import pandas as pd
    from tqdm import tqdm

    from safecity.forecast.alerts import gathering_alerts
    from safecity.forecast.table import forecast_hours

    for path in (out_path, alerts_path):
        if path and Path(path).suffix.lower() not in (".csv", ".parquet"):
            raise click.ClickException(f"{path}: expected a .csv or .parquet file to write")

    try:
        qs = tuple(float(q) for q in quantiles.split(","))
    except ValueError:
        raise click.ClickException(
            f"--quantiles: expected numbers like 0.1,0.5,0.9, got {quantiles!r}") from None
    obs, calendar, sensors = _forecast_inputs(observations_path, calendar_paths, sensors_path, tz)
    limits = threshold
    if capacity_path:
        table = _read_table_file(capacity_path, ("sensor_id", "capacity"))
        missing = [c for c in ("sensor_id", "capacity") if c not in table.columns]
        if missing:
            raise click.ClickException(f"{capacity_path}: missing column "
                                       f"{', '.join(repr(c) for c in missing)} (needs sensor_id, capacity)")
        capacity = pd.to_numeric(table["capacity"], errors="coerce")
        bad = table.index[~(capacity.abs() < float("inf")) | (capacity < 0)]
        if len(bad):
            raise click.ClickException(
                f"{capacity_path}: column 'capacity' is not a count >= 0 at rows "
                f"{', '.join(str(i) for i in bad[:5].tolist())} ({table['capacity'].loc[bad[0]]!r})")
        limits = pd.Series(capacity.to_numpy(float), index=table["sensor_id"].astype(str), name="capacity")
    if start is not None:  # a forecast issued at --start knows nothing after it
        try:
            issued = pd.Timestamp(start)
        except ValueError:
            raise click.ClickException(f"--start: not a time: {start!r}") from None
        issued = issued.tz_localize("UTC") if issued.tzinfo is None else issued.tz_convert("UTC")
        obs = obs[obs["ts"] < issued]
    model = _forecaster(horizon, tz, country, subdiv, school_zone, metric)
    with tqdm(total=2, desc="forecast", unit="step", file=sys.stderr) as bar:
        try:
            model.fit(obs, calendar=calendar, sensors=sensors)
            bar.update()
            hours = forecast_hours(model.end_ if start is None else start, horizon)
            table = model.predict(hours, quantiles=qs)
            bar.update()
        except ValueError as err:
            raise click.ClickException(f"{observations_path}: {err}") from None
    _write_table_file(table, out_path)
    summary = {"out": str(out_path), "rows": len(table), "sensors": int(table["sensor_id"].nunique()),
               "start": table["ts"].min().isoformat() if len(table) else None,
               "end": (table["ts"].max() + pd.Timedelta(hours=1)).isoformat() if len(table) else None}
    if limits is not None:
        upper = f"q{100 * max(qs):g}"
        alerts = gathering_alerts(table, limits, lead_time=lead_time, upper=upper, sensors=sensors)
        summary["alerts"] = len(alerts)
        if alerts_path:
            _write_table_file(alerts, alerts_path)
            summary["alerts_out"] = str(alerts_path)
    click.echo(json.dumps(summary))


# --------------------------------------------------------------------------- video anomaly detection
