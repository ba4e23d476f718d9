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

    from . import schema
    from .access import os_user
    from .store import Store
    from .units import TransitionError, UnknownUnitError, ingest_positions

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
    from .access import os_user
    from .store import Store, parse_time

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
    from .tables import TableFileError, read_table

    try:
        return read_table(path, required)
    except TableFileError as err:
        raise click.ClickException(str(err)) from None


def _check_tz(ctx, param, value):
    """Click callback: an unknown time zone is refused while parsing, before any reading or fitting."""
    import pandas as pd

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


# --------------------------------------------------------------------------- forecast


@main.group()
def forecast() -> None:
    """Forecast hourly counts with intervals, backtest the forecaster, warn of gatherings."""


def _city_options(command):
    """The options every forecast command shares: the data and the city's time zone and holidays."""
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
        click.option("--tz", default="Europe/Paris", show_default=True, callback=_check_tz,
                     help="The city's time zone."),
        click.option("--country", default="FR", show_default=True,
                     help="Public holidays of this country ('none': none)."),
        click.option("--subdiv", default=None, help="Holiday subdivision (state, region), e.g. VIC."),
        click.option("--school-zone", default="B", show_default=True,
                     help="French school-holiday zone ('none': none)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _forecast_inputs(observations_path, calendar_paths, sensors_path, tz):
    """Read and check the observations, calendars and sensors; errors name the file and column."""
    from . import schema

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
        from .calendar import CalendarError, read_calendars

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


def _forecaster(horizon, tz, country, subdiv, school_zone, metric):
    import pandas as pd

    from .forecast import GatheringForecaster

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
@_city_options
@click.option("--folds", type=click.IntRange(1), default=6, show_default=True,
              help="Contiguous blocks of the test period; the model is refitted at each.")
@click.option("--test-days", type=click.IntRange(1), default=183, show_default=True,
              help="Length of the test period: the last N days of the data.")
def forecast_backtest(observations_path, calendar_paths, sensors_path, metric, horizon, tz, country,
                      subdiv, school_zone, folds, test_days) -> None:
    """Rolling-origin backtest: forecaster vs seasonal naive vs time-of-week profile, as JSON.

    Keys: horizon, folds, origins, tz, test_start, test_end, n, methods (per
    method: mae, mape, wape, coverage_80, n), mae_ratio_to_seasonal_naive,
    coverage_80 (the forecaster's), event_days (days, n, methods), events
    (per calendar event: name, start, days, n, mae per method), seconds.
    MAPE leaves out hours with a zero count.
    """
    from tqdm import tqdm

    from .forecast import backtest

    obs, calendar, sensors = _forecast_inputs(observations_path, calendar_paths, sensors_path, tz)
    estimator = _forecaster(horizon, tz, country, subdiv, school_zone, metric)
    with tqdm(total=folds, desc="backtest", unit="fold", file=sys.stderr) as bar:
        try:
            result = backtest(obs, calendar, horizon=horizon, folds=folds, test_days=test_days,
                              estimator=estimator, sensors=sensors, progress=lambda i: bar.update(1))
        except ValueError as err:
            raise click.ClickException(f"{observations_path}: {err}") from None
    click.echo(json.dumps(result, indent=1))


@forecast.command("predict")
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

    from .forecast import gathering_alerts

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
            model.fit(obs, calendar, sensors)
            bar.update()
            table = model.predict(start, horizon, quantiles=qs)
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


@main.group()
def vad() -> None:
    """Frame-level video anomaly detection for a fixed camera, trained on normal footage."""


def _vad_options(command):
    """The detector's hyperparameters and the training footage, shared by every vad command."""
    options = [
        click.option("--train", "train_dir", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Normal footage: one sub-folder of frames (or a video file) per clip, "
                          "or a single folder of frames."),
        click.option("--window", type=click.IntRange(1), default=None,
                     help="Box window in pixels (about a person's height). Default: learned from --train."),
        click.option("--margin", type=click.IntRange(0), default=8, show_default=True,
                     help="Image border ignored, pixels."),
        click.option("--smoothing", type=click.FloatRange(0), default=5.0, show_default=True,
                     help="Temporal smoothing, frames (Gaussian sigma, or EMA span with --causal)."),
        click.option("--causal/--centred", default=False, show_default=True,
                     help="Smooth with past frames only (as live) or centred on each frame."),
        click.option("--finest-scale", type=click.IntRange(0, 6), default=1, show_default=True,
                     help="DIS optical flow finest level (1: half resolution, 2: quarter)."),
        click.option("--false-alarm-rate", type=click.FloatRange(0, 1, max_open=True), default=0.001,
                     show_default=True, help="Share of training frames allowed above the alarm threshold."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _vad_clips(folder) -> list:
    """The clips of a folder: its sub-folders and video files in name order, else the folder itself."""
    from .vad import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    items = sorted(p for p in Path(folder).iterdir() if not p.name.startswith("."))
    clips = [p for p in items if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES]
    if clips:
        return clips
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in items):
        return [Path(folder)]  # a folder of frames is one clip
    raise click.ClickException(f"{folder}: no clip (expected one sub-folder of frames, or a video, per clip)")


def _vad_detector(window, margin, smoothing, causal, finest_scale, false_alarm_rate):
    from .vad import FlowMomentumDetector

    return FlowMomentumDetector(window=window, margin=margin, smoothing=smoothing, causal=causal,
                                finest_scale=finest_scale, false_alarm_rate=false_alarm_rate)


@vad.command("eval")
@_vad_options
@click.option("--test", "test_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Labelled test clips: one sub-folder of frames per clip, named as the labels' video.")
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV with columns video, frame_file, abnormal (0/1), one row per test frame.")
def vad_eval(train_dir, window, margin, smoothing, causal, finest_scale, false_alarm_rate, test_dir,
             labels_path) -> None:
    """Fit on --train, score --test; frame-level ROC AUC and speed vs the flow baseline, as JSON.

    Keys: auc (pooled over all test frames), fps (frames per second on one
    core, decoding included), baseline_auc and baseline_fps (99.9th percentile
    of flow magnitude, smoothed, measured in the same run), per_clip_auc,
    baseline_per_clip_auc, threshold (learned on --train), fpr_at_threshold,
    tpr_at_threshold, frames, window (learned or given), window_estimate, ...
    """
    from tqdm import tqdm

    from .vad import LabelsError, evaluate

    detector = _vad_detector(window, margin, smoothing, causal, finest_scale, false_alarm_rate)
    train, test = _vad_clips(train_dir), _vad_clips(test_dir)
    total = len(train) * (2 if window is None else 1) + 2 * len(test)
    with tqdm(total=total, desc="vad eval", unit="clip", file=sys.stderr) as bar:
        def progress(stage):
            bar.set_postfix_str(stage, refresh=False)
            bar.update()

        try:
            result = evaluate(train, test, labels_path, detector=detector, progress=progress)
        except (LabelsError, ValueError, FileNotFoundError) as err:
            raise click.ClickException(str(err)) from None
    click.echo(json.dumps(result, indent=1))


@vad.command("score")
@_vad_options
@click.option("--source", required=True, type=click.Path(exists=True),
              help="Footage to score: a folder of frames or a video file.")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), callback=_check_out,
              help="CSV to write (default: standard output).")
def vad_score(train_dir, window, margin, smoothing, causal, finest_scale, false_alarm_rate, source,
              out_path) -> None:
    """Fit on --train and write one row per frame of --source: frame, name, score, alarm.

    score is in pixels per frame (higher: more anomalous); alarm is 1 above the
    threshold learned on the training clips. With -o, a JSON summary goes to
    standard output.
    """
    import pandas as pd
    from tqdm import tqdm

    from .vad import FrameSource

    detector = _vad_detector(window, margin, smoothing, causal, finest_scale, false_alarm_rate)
    train = _vad_clips(train_dir)
    frames = FrameSource(source)
    try:
        readable = next(iter(frames), None) is not None  # before the fit: an empty score is no answer
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if not readable:
        skipped = f" ({len(frames.skipped)} files do not decode: {', '.join(frames.skipped[:5])})" \
            if frames.skipped else ""
        raise click.ClickException(f"{source}: no frame could be read{skipped}")
    with tqdm(total=len(train) * (2 if window is None else 1) + 1, desc="vad score", unit="clip",
              file=sys.stderr) as bar:
        def progress(stage):
            bar.set_postfix_str(stage, refresh=False)
            bar.update()

        try:
            detector.fit(train, progress=progress)
            scores = detector.score_samples(frames)
        except ValueError as err:
            raise click.ClickException(str(err)) from None
        progress("score")
    table = pd.DataFrame({"frame": range(len(scores)), "name": frames.names, "score": scores.round(5),
                          "alarm": (scores > detector.threshold_).astype(int)})
    if out_path is None:
        click.echo(table.to_csv(index=False), nl=False)
        return
    _write_table_file(table, out_path)
    click.echo(json.dumps({"out": str(out_path), "frames": len(table),
                           "alarm_frames": int(table["alarm"].sum()), "skipped": frames.skipped,
                           "threshold": round(detector.threshold_, 4), "window": detector.window_}))


# --------------------------------------------------------------------------- baseline


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
@click.option("--tz", default="Europe/Paris", show_default=True, callback=_check_tz, help="The city's time zone.")
@click.option("--country", default="FR", show_default=True, help="Public holidays of this country ('none': none).")
@click.option("--subdiv", default=None, help="Holiday subdivision (state, region), e.g. VIC.")
@click.option("--school-zone", default="B", show_default=True, help="French school-holiday zone ('none': none).")
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
def baseline_flag(observations_path, train_until, rate, group_rate, ts_col, sensor_col, value_col, metric,
                  tz, country, subdiv, school_zone, calendar_paths, sensors_path, group_col, static,
                  out_path) -> None:
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
    to standard error.
    """
    import pandas as pd
    from tqdm import tqdm

    from .baseline import UsualLevel

    if out_path and Path(out_path).suffix.lower() not in (".csv", ".json", ".parquet"):
        raise click.ClickException(f"{out_path}: expected a .csv, .json or .parquet file to write")
    none = {"", "none", "no"}
    with tqdm(total=3, desc="baseline", unit="step", file=sys.stderr) as bar:
        bar.set_postfix_str("reading")
        obs = _baseline_observations(observations_path, ts_col, sensor_col, value_col, metric)
        calendar = sensors = None
        if calendar_paths:
            from .calendar import CalendarError, read_calendars

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
        train, test = obs[obs["ts"] < cut], obs[obs["ts"] >= cut]
        if train.empty:
            raise click.ClickException(f"{observations_path}: no rows before --train-until {cut.isoformat()}")
        bar.update()
        bar.set_postfix_str("fitting")
        model = UsualLevel(tz=tz, rate=rate, group_rate=group_rate, group_col=group_col, metric=None,
                           country=None if str(country).lower() in none else country, subdiv=subdiv,
                           school_zone=None if str(school_zone).lower() in none else school_zone)
        try:
            model.fit(train, calendar=calendar, sensors=sensors)
            bar.update()
            bar.set_postfix_str("flagging")
            periods = model.flag(test, update=not static) if len(test) else None
        except ValueError as err:
            raise click.ClickException(f"{observations_path}: {err}") from None
        bar.update()
    if periods is None:
        from .baseline import empty_periods

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


def _baseline_observations(path, ts_col, sensor_col, value_col, metric):
    """ts (UTC), sensor_id, value from a CSV or Parquet file; errors name the file and the column."""
    import pandas as pd

    raw = _read_table_file(path, (ts_col, sensor_col, value_col))
    missing = [c for c in (ts_col, sensor_col, value_col) if c not in raw.columns]
    if missing:
        raise click.ClickException(
            f"{path}: missing column {', '.join(repr(c) for c in missing)} (the file has "
            f"{', '.join(map(str, raw.columns))}; name the columns with --ts-col, --sensor-col, --value-col)")
    if "metric" in raw.columns and metric is not None:
        raw = raw[raw["metric"] == metric]
        if raw.empty:
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


@main.command()
@click.option("--events", "events_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Events table (CSV or Parquet, the data model's events columns).")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Fusion rules (YAML); unspecified parts keep the defaults.")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False), default=None, callback=_check_out,
              help="Incidents file (.csv, .parquet or .json); CSV on standard output if absent.")
def fuse(events_path, rules_path, out_path) -> None:
    """Group events close in time and space into incidents."""
    from . import fusion, schema

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


@main.group("dispatch")
def dispatch_group() -> None:
    """Dispatch: compare policies on the same calls with a response-time simulation."""


def _load_network(path):
    """A RoadNetwork from an .osm.pbf extract or a directory with nodes.parquet and edges.parquet."""
    import pandas as pd

    from .network import RoadNetwork

    p = Path(path)
    if p.is_dir():
        p = p / "network" if (p / "network" / "nodes.parquet").exists() else p
        if not (p / "nodes.parquet").exists() or not (p / "edges.parquet").exists():
            raise click.ClickException(f"{path}: no nodes.parquet and edges.parquet there")
        nodes, edges = _read_table_file(p / "nodes.parquet"), _read_table_file(p / "edges.parquet")
        try:
            return RoadNetwork.from_tables(nodes, edges)
        except (ValueError, KeyError, TypeError) as err:
            raise click.ClickException(f"{p}: not a road network (nodes.parquet, edges.parquet): {err}") from None
    if p.name.lower().endswith(".pbf"):
        try:
            return RoadNetwork.from_osm(p)
        except ValueError as err:
            raise click.ClickException(str(err)) from None
    raise click.ClickException(f"{path}: expected an .osm.pbf file or a directory with nodes/edges parquet")


def _checked_table(path, needed, what):
    table = _read_table_file(path, needed)
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise click.ClickException(f"{path}: missing column {', '.join(repr(c) for c in missing)} "
                                   f"({what} need {', '.join(needed)}; the file has "
                                   f"{', '.join(map(str, table.columns))})")
    return table


@dispatch_group.command("simulate")
@click.option("--network", "network_path", required=True, type=click.Path(exists=True),
              help="Road network: an .osm.pbf extract or a directory with nodes.parquet, edges.parquet.")
@click.option("--calls", "calls_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Calls, CSV or Parquet: ts, lon, lat, kind (police, fire, ambulance), optional call_id.")
@click.option("--units", "units_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Units, CSV or Parquet: unit_id, kind, lon, lat (home station), optional station.")
@click.option("--policy", type=click.Choice(["static", "straight_line", "road", "coverage", "all"]),
              default="all", show_default=True)
@click.option("--dispatch-delay", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds from the call to the dispatch decision.")
@click.option("--coverage-target", type=click.FloatRange(0, min_open=True), default=480.0,
              show_default=True, help="Coverage policy: seconds within which a node counts as covered.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of on-scene times and bootstrap.")
@click.option("--boot", type=click.IntRange(10), default=1000, show_default=True,
              help="Bootstrap resamples for the confidence intervals.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), callback=_check_out,
              help="Also write the per-call results (.csv or .parquet).")
def dispatch_simulate(network_path, calls_path, units_path, policy, dispatch_delay, coverage_target,
                      seed, boot, out_path) -> None:
    """Answer the same calls under each dispatch policy; print response-time figures as JSON.

    Keys: network (nodes, edges), calls, units, dispatch_delay_s,
    coverage_target_s, seed, and policies: per policy calls, queued,
    unanswered, mean_s, median_s, p90_s (each with *_ci, a bootstrap 95 %
    interval), mean_travel_s, mean_wait_s, and ratio_mean / ratio_p90 to the
    static policy with their intervals. Times are seconds from the call to
    arrival on scene.
    """
    from . import responsesim as rs

    network = _load_network(network_path)
    calls = _checked_table(calls_path, ["ts", "lon", "lat", "kind"], "calls")
    units = _checked_table(units_path, ["unit_id", "kind", "lon", "lat"], "units")
    for path, table, what in ((calls_path, calls, "call"), (units_path, units, "unit")):
        try:
            rs.check_kinds(table, what)
        except ValueError as err:
            raise click.ClickException(f"{path}: {err}") from None
    policies = rs.POLICIES if policy == "all" else (policy,)
    try:
        results = rs.compare_policies(network, calls, units, policies, dispatch_delay_s=dispatch_delay,
                                      coverage_target_s=coverage_target, seed=seed)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if len(calls) and results["unit_id"].isna().all():
        raise click.ClickException(
            f"{calls_path}: no call could be answered by a unit of {units_path} (call kinds "
            f"{', '.join(sorted(map(str, calls['kind'].unique())))}; unit kinds "
            f"{', '.join(sorted(map(str, units['kind'].unique())))}; or no unit reaches them)")
    if out_path:
        _write_table_file(results, out_path)
    figures = rs.summarise(results, n_boot=boot, seed=seed)
    click.echo(json.dumps({
        "network": {"path": str(network_path), "nodes": len(network.nodes), "edges": len(network.edges)},
        "calls": len(calls), "units": len(units), "dispatch_delay_s": dispatch_delay,
        "coverage_target_s": coverage_target, "seed": seed,
        "policies": rs.figures_dict(figures)}, indent=1))


@dispatch_group.command("inputs")
@click.option("--network", "network_path", required=True, type=click.Path(exists=True),
              help="Road network: an .osm.pbf extract or a directory with nodes.parquet, edges.parquet.")
@click.option("--city", "city_dir", type=click.Path(exists=True, file_okay=False),
              help="A 'safecity simulate' directory: its units, and its incidents as calls.")
@click.option("--synthetic-calls", is_flag=True,
              help="With --city: Poisson calls (--n-calls over --days) instead of the city's incidents.")
@click.option("--n-calls", type=click.IntRange(1), default=300, show_default=True)
@click.option("--days", type=click.FloatRange(0, min_open=True), default=2.0, show_default=True)
@click.option("--per-station", type=click.IntRange(1), default=1, show_default=True,
              help="Synthetic units per station (4 police, 3 fire, 3 ambulance stations).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--calls-out", required=True, type=click.Path(dir_okay=False), callback=_check_out,
              help=".csv or .parquet")
@click.option("--units-out", required=True, type=click.Path(dir_okay=False), callback=_check_out,
              help=".csv or .parquet")
def dispatch_inputs(network_path, city_dir, synthetic_calls, n_calls, days, per_station, seed, calls_out,
                    units_out) -> None:
    """Write calls and units files for 'dispatch simulate'.

    With --city, the synthetic city's roster at its stations and its incidents
    (one call per unit an incident needs); otherwise --n-calls Poisson calls
    at random nodes of --network over --days and units at stations spread
    over it (4 police, 3 fire, 3 ambulance).
    """
    import pandas as pd

    from . import responsesim as rs

    if city_dir:
        from types import SimpleNamespace

        d = Path(city_dir)
        params = json.loads((d / "city.json").read_text()) if (d / "city.json").exists() else {}
        city = SimpleNamespace(truth={"incidents": _read_table_file(d / "truth" / "incidents.parquet")},
                               stations=_read_table_file(d / "stations.parquet"), params=params)
        units = rs.units_from_city(city)
        calls = rs.calls_from_city(city) if not synthetic_calls else \
            rs.synthetic_calls(_load_network(network_path), n_calls, days=days, seed=seed)
    else:
        network = _load_network(network_path)
        calls = rs.synthetic_calls(network, n_calls, days=days, seed=seed)
        units = rs.synthetic_units(network, per_station=per_station, seed=seed)
    _write_table_file(calls, calls_out)
    _write_table_file(units, units_out)
    click.echo(json.dumps({"calls": len(calls), "units": len(units), "calls_out": calls_out,
                           "units_out": units_out}))


@main.group("count")
def count_group() -> None:
    """Crowd counting per frame and per zone, calibrated with the scene's perspective."""


@count_group.command("eval")
@click.option("--frames", "frames_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder holding the frames named in --counts.")
@click.option("--counts", "counts_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV frame_file,count: the labelled frames, in time order.")
@click.option("--train", "n_train", required=True, type=int,
              help="Fit on the first N rows of --counts, test on the rest.")
@click.option("--heads", "heads_path", type=click.Path(exists=True, dir_okay=False),
              help="CSV frame_file,x,y: one row per annotated head (teaches where people are).")
@click.option("--perspective", "perspective_path", type=click.Path(exists=True, dir_okay=False),
              help=".mat file with the perspective map pMapN (and optionally roi), e.g. Mall's perspective_roi.mat.")
def count_eval(frames_dir, counts_path, n_train, heads_path, perspective_path) -> None:
    """Fit the crowd counter and the ridge baseline on the first N frames; errors on the rest, as JSON.

    Keys: mae, mse (people per frame), fps (prediction frames per second on
    one core, decoding included), baseline_mae, baseline_mse, baseline_fps,
    bias, n_train, n_test, ...
    """
    from .video.counting import CountingDataError, evaluate

    try:
        result = evaluate(frames_dir, counts_path, n_train, heads_path=heads_path,
                          perspective_path=perspective_path)
    except (CountingDataError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(result, indent=1))


# --------------------------------------------------------------------------- video pipeline


@main.group("video")
def video_group() -> None:
    """Per-camera video analytics: tracks, per-bin observations and events, blurred output."""


def _video_cameras(config_path, camera_ids):
    from .video.config import ConfigError, load_cameras

    try:
        cameras = load_cameras(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if camera_ids:
        known = {c.id for c in cameras}
        missing = [c for c in camera_ids if c not in known]
        if missing:
            raise click.ClickException(f"{config_path}: no camera {missing}; cameras: {', '.join(sorted(known))}")
        cameras = [c for c in cameras if c.id in camera_ids]
    return cameras


@video_group.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The installation's cameras (YAML, see safecity/data/cameras.example.yml).")
@click.option("--data-dir", type=click.Path(file_okay=False), required=True,
              help="Store receiving observations, events and audit records.")
@click.option("--camera", "camera_ids", multiple=True, help="Only this camera id (repeatable; default all).")
@click.option("--max-frames", type=click.IntRange(1), default=None,
              help="Stop each camera after this many frames (a live stream never ends by itself).")
@click.option("--bin", "bin_s", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Feature bin in seconds.")
@click.option("--give-up-after", "give_up_s", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds a live camera may go without a frame before it is failed.")
def video_run(config_path, data_dir, camera_ids, max_frames, bin_s, give_up_s) -> None:
    """Process every camera's source at once (one thread each) and write the results to the store.

    Prints one JSON line per camera: status (ok or failed, with the error),
    frames, track ids, observations and events written, frames per second,
    and the source's health. Exits non-zero, naming them, if any camera failed.
    """
    from .store import Store
    from .video.runner import run_cameras

    cameras = _video_cameras(config_path, camera_ids)
    store = Store(data_dir)
    summaries = run_cameras(cameras, store, bin_s=bin_s, max_frames=max_frames, give_up_after_s=give_up_s)
    for summary in summaries:
        click.echo(json.dumps(summary, default=str))
    failed = [s for s in summaries if s["status"] == "failed"]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(summaries)} camera(s) failed:\n"
                                   + "\n".join(s["error"] for s in failed))


@video_group.command("annotate")
@click.argument("source")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Annotated copy to write (.mp4 or .avi).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Cameras YAML: zones and event detectors of the camera (without it: tracks only).")
@click.option("--camera", "camera_id", default=None, help="Camera id in --config (default: the first).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Store for audit records (needed only if the camera's privacy settings turn the blur off).")
@click.option("--max-frames", type=click.IntRange(1), default=None)
@click.option("--give-up-after", "give_up_s", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds a live SOURCE may go without a frame before giving up.")
def video_annotate(source, out_path, config_path, camera_id, data_dir, max_frames, give_up_s) -> None:
    """Write a blurred copy of SOURCE with boxes, track ids, zones and events drawn."""
    import cv2

    from .store import Store
    from .video.pipeline import CameraPipeline
    from .video.sources import redact

    shown = redact(source)  # errors quote the source, and a stream URL may carry a password

    audit = Store(data_dir).state if data_dir else None
    if config_path:
        cameras = _video_cameras(config_path, [camera_id] if camera_id else [])
        pipe = CameraPipeline(cameras[0], audit=audit)
    else:
        default_id = "stream" if "://" in source else Path(source).stem  # never a URL's query
        pipe = CameraPipeline({"camera_id": camera_id or default_id}, detectors=[], audit=audit)
    fourcc = "mp4v" if out_path.lower().endswith((".mp4", ".m4v", ".mov")) else "MJPG"
    writer, n, events = None, 0, 0
    try:
        for frame in pipe.frames(source, give_up_after_s=give_up_s,
                                 timeout_s=max(0.5, min(10.0, give_up_s))):
            if max_frames is not None and n >= max_frames:
                break
            result = pipe.process(frame)
            image = pipe.display(frame.image if hasattr(frame, "image") else frame, result)
            if writer is None:
                h, w = image.shape[:2]
                writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*fourcc), pipe.fps, (w, h))
                if not writer.isOpened():
                    raise click.ClickException(f"{out_path}: OpenCV cannot write this file ({fourcc})")
            writer.write(image)
            n += 1
            events += len(result.events)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as exc:
        raise click.ClickException(redact(f"{shown}: {exc}")) from None
    finally:
        if writer is not None:
            writer.release()
    if not n:
        raise click.ClickException(f"{shown}: no frame could be read")
    blurred = pipe.policy_.blur if pipe.policy_ is not None else True
    click.echo(json.dumps({"out": out_path, "frames": n, "events": events, "blurred": blurred}))


@main.command()
@click.argument("apps", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs authentication.")
@click.option("--port", type=click.IntRange(0, 65535), default=5006, show_default=True)
@click.option("--basic-auth", "basic_auth", type=click.Path(dir_okay=False),
              help="Panel basic-auth passwords: a JSON file of user -> password, mode 600.")
@click.option("--oauth-provider", default=None,
              help="Panel OAuth provider (github, google, azure, generic...); key and secret "
                   "from PANEL_OAUTH_KEY / PANEL_OAUTH_SECRET.")
@click.option("--roles", "roles_path", type=click.Path(exists=True, dir_okay=False),
              help="YAML or JSON file mapping each user to operator or analyst.")
@click.option("--allow-unauthenticated", is_flag=True,
              help="Serve beyond loopback with no login (logged, and audited if a state dir is set).")
@click.option("--allow-websocket-origin", "origins", multiple=True,
              help="host[:port] browsers may connect from (passed to panel serve).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Operators' store for the audit record (default $SAFECITY_STATE_DIR).")
def serve(apps, address, port, basic_auth, oauth_provider, roles_path, allow_unauthenticated,
          origins, state_dir) -> None:
    """Serve dashboards with Panel, refusing to serve beyond this machine without a login."""
    import logging
    import os
    import secrets

    from . import access

    from . import login

    authenticated = bool(basic_auth or oauth_provider)
    try:
        access.check_exposure(address, authenticated, allow_unauthenticated)
        if basic_auth:
            users = login.read_users(basic_auth)
            if not roles_path and not any(u.role for u in users.values()):
                raise ValueError("--basic-auth needs --roles (or roles given by 'safecity users "
                                 "add --role'): a user without a role gets no page")
            plain = login.plain_text_users(users)
            if plain:
                click.echo(f"WARNING: {basic_auth} stores the passwords of {', '.join(plain)} in "
                           f"plain text; re-add them with 'safecity users add NAME --file "
                           f"{basic_auth}' to store a hash instead", err=True)
        if roles_path:
            access.read_roles(roles_path)
    except (access.OpenServingError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    env = dict(os.environ)
    env[access.ADDRESS_ENV] = address
    env.pop(access.ALLOW_ENV, None)
    if roles_path:
        env[access.ROLES_ENV] = str(Path(roles_path).resolve())
    if basic_auth:
        env[login.USERS_ENV] = str(Path(basic_auth).resolve())
    if state_dir:  # the audit log of logins and dispatches
        env["SAFECITY_STATE_DIR"] = str(Path(state_dir).resolve())
    if authenticated and not (env.get("PANEL_COOKIE_SECRET") or env.get("BOKEH_COOKIE_SECRET")):
        # in the environment, not on the command line where ps shows it; logins end on restart
        env["PANEL_COOKIE_SECRET"] = secrets.token_urlsafe(32)
    if allow_unauthenticated and not authenticated and not access.is_loopback(address):
        env[access.ALLOW_ENV] = "1"
        logging.basicConfig()
        logging.getLogger("safecity.access").warning(
            "SERVING WITHOUT AUTHENTICATION on %s:%s: anyone who reaches it may dispatch units",
            address, port)
        state_dir = state_dir or os.environ.get("SAFECITY_STATE_DIR")
        if state_dir:
            from .store import Store

            store = Store(state_dir)
            store.state.audit(access.os_user(), "serve_unauthenticated",
                              f"{address}:{port}", {"apps": list(apps)})
            store.state.close()
    extra = [arg for origin in origins for arg in ("--allow-websocket-origin", origin)]
    import tempfile

    pages = access.write_templates(tempfile.mkdtemp(prefix="safecity-pages-"))  # offline pages
    extra += ["--index", str(pages["index"]), "--auth-template", str(pages["auth"])]
    if oauth_provider:
        extra += ["--logout-template", str(pages["logout"])]
    cmd = access.panel_command(list(apps), address, port, basic_auth=basic_auth,
                               oauth_provider=oauth_provider, extra=extra)
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)


@main.group()
def users() -> None:
    """Dashboard logins for 'safecity serve --basic-auth': users, password hashes, roles."""


@users.command("add")
@click.argument("name")
@click.option("--file", "users_file", required=True, type=click.Path(dir_okay=False),
              help="The users file (JSON, created with mode 600).")
@click.option("--role", type=click.Choice(["operator", "analyst"]), default=None,
              help="The user's role (else from 'serve --roles').")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
def users_add(name, users_file, role, password_stdin) -> None:
    """Add NAME (or change their password) with an scrypt hash of a password asked twice."""
    from . import login

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.ClickException("the password must have at least 8 characters")
    try:
        login.add_user(users_file, name, password, role)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{users_file}: {name} added" + (f" as {role}" if role else ""))


if __name__ == "__main__":
    main()
