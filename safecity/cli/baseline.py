"""``safecity baseline``: flag departures from each sensor's usual level."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from safecity.cli.root import main
from safecity.cli.options import _write_table_file, _read_table_file, _check_out, _city_options, _connected, _scheduler_option


@main.group()
def baseline() -> None:
    """Learn each sensor's usual level by time of week and flag what departs from it."""


@baseline.command("flag")
@click.option("--observations", "observations_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV or Parquet with a time, a sensor and a value column (names: --ts-col, ...).")
@click.option("--train-until", required=True,
              help="Fit on the data before this date or time, flag what comes after (ISO; "
                   "without an offset it is local time in --tz).")
@click.option("--rate", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Target alarms per sensor per day on normal data; sets the threshold.")
@click.option("--group-rate", type=click.FloatRange(0, min_open=True), default=None,
              help="Target group anomalies per group per day (default: --rate).")
@click.option("--ts-col", default="ts", show_default=True, help="Column of bin start times.")
@click.option("--sensor-col", default="sensor_id", show_default=True, help="Column of sensor ids.")
@click.option("--value-col", default="value", show_default=True, help="Column of values (counts).")
@click.option("--metric", default=None,
              help="Keep the rows of this metric (when the file has a metric column with several).")
@_city_options
@click.option("--calendar", "calendar_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Calendar file (.csv, .ics, .geojson); repeat for several.")
@click.option("--sensors", "sensors_path", type=click.Path(exists=True, dir_okay=False),
              help="Sensors table (sensor_id, lon, lat and --group-col): positions and groups.")
@click.option("--group-col", default="zone", show_default=True,
              help="Column of --sensors naming each sensor's group (the city is always one).")
@click.option("--static", is_flag=True,
              help="Score with the fitted model only (default: it learns each day after scoring it, as live).")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), callback=_check_out,
              help="File to write, .csv or .json (or .parquet); default: CSV on standard output.")
@_scheduler_option
def baseline_flag(observations_path, train_until, rate, group_rate, ts_col, sensor_col, value_col, metric,
                  tz, country, subdiv, school_zone, calendar_paths, sensors_path, group_col, static,
                  out_path, scheduler) -> None:
    """Fit the usual levels on the data before --train-until and write the flagged periods after it.

    One row per alarm period: sensor_id (empty for a group anomaly), group
    (the city or a zone, for a group anomaly), start, end (UTC), direction
    (high or low), observed and expected (mean per bin over the period; for a
    group, summed over its sensors), low and high (the usual band at the
    threshold), score (a sensor's peak standardised departure, a group's peak
    share of departing sensors; negative when low), n_sensors, explanation,
    calendar (known happenings then and there), sensors and attached (JSON
    lists: a group's departing sensors and the sensor alarms it explains).
    The threshold, its realised rate on the calibration days and counts go
    to standard error. With --scheduler, the observations are read by the
    cluster's workers, partitioned by sensor, and fitted and scored there
    (safecity.cluster.history): the same table.
    """
    import pandas as pd
    from tqdm import tqdm

    from safecity.baseline.periods import alarm_periods
    from safecity.baseline.replay import replay_live
    from safecity.baseline.usual import UsualLevel

    if out_path and Path(out_path).suffix.lower() not in (".csv", ".json", ".parquet"):
        raise click.ClickException(f"{out_path}: expected a .csv, .json or .parquet file to write")
    none = {"", "none", "no"}
    with tqdm(total=3, desc="baseline", unit="step", file=sys.stderr) as bar:
        bar.set_postfix_str("reading")
        calendar = sensors = None
        if calendar_paths:
            from safecity.data.calendars import CalendarError, read_calendars

            try:
                calendar = read_calendars(calendar_paths, tz=tz)
            except CalendarError as err:
                raise click.ClickException(str(err)) from None
        if sensors_path:
            sensors = _read_table_file(sensors_path, ("sensor_id",))
            if "sensor_id" not in sensors.columns:
                raise click.ClickException(f"{sensors_path}: missing column 'sensor_id' "
                                           f"(the file has {', '.join(map(str, sensors.columns))})")
        try:
            cut = pd.Timestamp(train_until)
        except ValueError:
            raise click.ClickException(f"--train-until: not a date or time: {train_until!r}") from None
        cut = cut.tz_localize(tz) if cut.tzinfo is None else cut
        model = UsualLevel(tz=tz, rate=rate, group_rate=group_rate, group_col=group_col, metric=None,
                           country=None if str(country).lower() in none else country, subdiv=subdiv,
                           school_zone=None if str(school_zone).lower() in none else school_zone)
        if scheduler is not None:
            model, periods = _flag_on_cluster(scheduler, model, observations_path, cut, (ts_col, sensor_col,
                                              value_col, metric), calendar, sensors, static, bar)
        else:
            obs = _baseline_observations(observations_path, ts_col, sensor_col, value_col, metric)
            train, test = obs[obs["ts"] < cut], obs[obs["ts"] >= cut]
            if train.empty:
                raise click.ClickException(f"{observations_path}: no rows before --train-until {cut.isoformat()}")
            bar.update()
            bar.set_postfix_str("fitting")
            try:
                model.fit(train, calendar=calendar, sensors=sensors)
                bar.update()
                bar.set_postfix_str("flagging")
                if len(test):  # live: each day is scored, then learnt (partial_fit), as the live model runs
                    periods = alarm_periods(model, model.departures(test) if static else replay_live(model, test))
                else:
                    periods = None
            except ValueError as err:
                raise click.ClickException(f"{observations_path}: {err}") from None
        bar.update()
    if periods is None:
        from safecity.baseline.periods import empty_periods

        periods = empty_periods()
    columns = ["sensor_id", "group", "start", "end", "direction", "observed", "expected", "low", "high",
               "score", "n_sensors", "explanation", "calendar", "sensors", "attached"]
    table = periods[columns].copy()
    for c in ("observed", "expected", "low", "high"):
        table[c] = table[c].round(2)
    table["score"] = table["score"].round(3)
    click.echo(json.dumps({"threshold": round(model.threshold_, 3), "rate": rate,
                           "realised_rate_on_calibration": None if not model.calibrated_
                           else round(model.realised_rate_, 4),
                           "group_thresholds": {k: round(v, 3) for k, v in model.group_threshold_.items()},
                           "sensors": len(model.sensor_ids_), "periods": len(table),
                           "group_anomalies": int(table["group"].notna().sum())}), err=True)
    if out_path is not None and Path(out_path).suffix.lower() == ".parquet":
        _write_table_file(table, out_path)
        return
    for c in ("start", "end"):
        table[c] = table[c].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if out_path is None:
        click.echo(table.to_csv(index=False), nl=False)
    elif Path(out_path).suffix.lower() == ".json":
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        Path(out_path).write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    else:
        _write_table_file(table, out_path)


def _flag_on_cluster(scheduler, model, path, cut, columns, calendar, sensors, static, bar):
    """``baseline flag`` on a Dask cluster: the workers read the file, partitioned by sensor; (model, periods)."""
    import dask.dataframe as dd

    from safecity.cluster import history

    ts_col, sensor_col, value_col, metric = columns
    suffix = Path(path).suffix.lower()
    with history.numpy_workers(), _connected(scheduler) as client:
        try:
            raw = dd.read_parquet(path) if suffix == ".parquet" else dd.read_csv(path, dtype={sensor_col: str, value_col: float})
        except Exception as err:  # noqa: BLE001 - the reader's own message, with the file's name
            raise click.ClickException(f"{path}: {err}") from None
        obs = raw.map_partitions(_observations_frame, path, ts_col, sensor_col, value_col, metric, False,
                                 meta={"ts": "datetime64[ns, UTC]", "sensor_id": object, "value": float})
        bar.update()
        bar.set_postfix_str("fitting on the cluster")
        try:
            fitted = history.fit(client, history.by_sensor(obs), model, train_until=cut, calendar=calendar,
                                 sensors=sensors, score="static" if static else "replay")
            bar.update()
            bar.set_postfix_str("flagging")
            periods = history.alarm_periods(client, fitted) if fitted.grid.test is not None else None
        except ValueError as err:
            raise click.ClickException(f"{path}: {err}") from None
    return fitted.model, periods


def _baseline_observations(path, ts_col, sensor_col, value_col, metric):
    """ts (UTC), sensor_id, value from a CSV or Parquet file; errors name the file and the column."""
    raw = _read_table_file(path, (ts_col, sensor_col, value_col))
    return _observations_frame(raw, path, ts_col, sensor_col, value_col, metric)


def _observations_frame(raw, path, ts_col, sensor_col, value_col, metric, whole=True):
    """ts (UTC), sensor_id, value from a table read (all of it, or a partition); errors name the file and column."""
    import pandas as pd

    missing = [c for c in (ts_col, sensor_col, value_col) if c not in raw.columns]
    if missing:
        raise click.ClickException(
            f"{path}: missing column {', '.join(repr(c) for c in missing)} (the file has "
            f"{', '.join(map(str, raw.columns))}; name the columns with --ts-col, --sensor-col, --value-col)")
    if "metric" in raw.columns and metric is not None:
        raw = raw[raw["metric"] == metric]
        if raw.empty and whole:
            raise click.ClickException(f"{path}: no rows with metric {metric!r}")
    elif "metric" in raw.columns and raw["metric"].nunique() > 1:
        metrics = ", ".join(map(str, raw["metric"].unique()[:5]))
        raise click.ClickException(f"{path}: column 'metric' has several metrics ({metrics}); "
                                   "choose one with --metric")
    ts = pd.to_datetime(raw[ts_col], utc=True, errors="coerce", format="mixed")
    value = pd.to_numeric(raw[value_col], errors="coerce")
    for column, parsed, what in ((ts_col, ts, "a time"), (value_col, value, "a number")):
        bad = raw.index[parsed.isna() & raw[column].notna()]
        if len(bad):
            raise click.ClickException(f"{path}: column {column!r} is not {what} at rows "
                                       f"{', '.join(str(i) for i in bad[:5].tolist())} "
                                       f"({raw[column].loc[bad[0]]!r})")
    keep = ts.notna() & value.notna()
    return pd.DataFrame({"ts": ts[keep], "sensor_id": raw.loc[keep, sensor_col].astype(str),
                         "value": value[keep].astype(float)})


# --------------------------------------------------------------------------- fuse


