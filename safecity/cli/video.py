"""Commands on video: anomaly scoring (``vad``), crowd counting (``count``), camera pipelines (``video``)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from safecity.cli.options import _check_out, _connected, _scheduler_option, _write_table_file
from safecity.cli.root import main


@main.group()
def vad() -> None:
    """Frame-level video anomaly detection for a fixed camera, trained on normal footage."""


def _vad_options(command):
    """The anomaly scorer's hyperparameters and the training footage, shared by every vad command."""
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
    from safecity.data.frames import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    items = sorted(p for p in Path(folder).iterdir() if not p.name.startswith("."))
    clips = [p for p in items if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES]
    if clips:
        return clips
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in items):
        return [Path(folder)]  # a folder of frames is one clip
    raise click.ClickException(f"{folder}: no clip (expected one sub-folder of frames, or a video, per clip)")


def _vad_scorer(window, margin, smoothing, causal, finest_scale, false_alarm_rate):
    from safecity.video.anomaly import FlowMomentumScorer

    return FlowMomentumScorer(window=window, margin=margin, smoothing=smoothing, causal=causal,
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

    from safecity.video.anomaly import LabelsError, evaluate

    scorer = _vad_scorer(window, margin, smoothing, causal, finest_scale, false_alarm_rate)
    train, test = _vad_clips(train_dir), _vad_clips(test_dir)
    total = len(train) * (2 if window is None else 1) + 2 * len(test)
    with tqdm(total=total, desc="vad eval", unit="clip", file=sys.stderr) as bar:
        def progress(stage):
            bar.set_postfix_str(stage, refresh=False)
            bar.update()

        try:
            result = evaluate(train, test, labels_path, scorer=scorer, progress=progress)
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

    from safecity.data.frames import FrameSource

    scorer = _vad_scorer(window, margin, smoothing, causal, finest_scale, false_alarm_rate)
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
            scorer.fit(train, progress=progress)
            scores = scorer.score_samples(frames)
        except ValueError as err:
            raise click.ClickException(str(err)) from None
        progress("score")
    table = pd.DataFrame({"frame": range(len(scores)), "name": frames.names, "score": scores.round(5),
                          "alarm": (scores > scorer.threshold_).astype(int)})
    if out_path is None:
        click.echo(table.to_csv(index=False), nl=False)
        return
    _write_table_file(table, out_path)
    click.echo(json.dumps({"out": str(out_path), "frames": len(table),
                           "alarm_frames": int(table["alarm"].sum()), "skipped": frames.skipped,
                           "threshold": round(scorer.threshold_, 4), "window": scorer.window_}))


# --------------------------------------------------------------------------- counting


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
    from safecity.video.counting import CountingDataError, evaluate

    try:
        result = evaluate(frames_dir, counts_path, n_train, heads_path=heads_path,
                          perspective_path=perspective_path)
    except (CountingDataError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(result, indent=1))


@count_group.command("eval-images")
@click.option("--train", "train_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="ShanghaiTech-style folder: images/IMG_N.jpg and ground-truth/GT_IMG_N.mat.")
@click.option("--test", "test_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Same layout: fit on --train, score here.")
@click.option("--folds", type=click.IntRange(2), default=None,
              help="Instead of --test: K-fold cross-validation on --train (settings fixed beforehand).")
@click.option("--grouped", is_flag=True, default=False,
              help="With --folds: photos of the same scene (correlated thumbnails) share a fold.")
@click.option("--limit", type=click.IntRange(2), default=None,
              help="Only the first N photos of each folder (a quick look).")
@click.option("--width", type=click.IntRange(64), default=1024, show_default=True,
              help="Working width in pixels (cells are 1/32 of it): lower is faster and coarser.")
@click.option("--max-iter", type=click.IntRange(1), default=150, show_default=True,
              help="Boosting iterations of the regressor.")
def count_eval_images(train_dir, test_dir, folds, grouped, limit, width, max_iter) -> None:
    """Fit the still-photo crowd counter; errors on --test or by --folds cross-validation, one JSON line.

    Keys: mae, mse (root mean squared error, as crowd counting names it),
    n_images, images_per_s (prediction, decoding included, one thread),
    baseline_mae, baseline_mse (predicting the training photos' mean count).
    Progress on standard error.
    """
    from safecity.video.counting import CountingDataError
    from safecity.video.still_counting import (
        StillCounter,
        cross_validate,
        evaluate,
        read_shanghaitech,
        scene_groups,
    )

    if (test_dir is None) == (folds is None):
        raise click.UsageError("give either --test DIR or --folds K")
    try:
        cell = max(1, width // 32)
        counter = StillCounter(width=width, cell=cell, max_iter=max_iter,
                               scales=(1, 2) if cell % 2 == 0 and width % 2 == 0 else (1,))
        train = read_shanghaitech(train_dir)[:limit]
        if folds is not None:
            result = cross_validate(train, folds=folds, counter=counter,
                                    groups=scene_groups(train) if grouped else None,
                                    progress=lambda f: click.echo(json.dumps(f), err=True))
        else:
            result = evaluate(train, read_shanghaitech(test_dir)[:limit], counter=counter)
    except (CountingDataError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(result))


@main.group("events")
def events_group() -> None:
    """The lawful event detectors measured on labelled real clips."""


@events_group.command("eval")
@click.option("--clips", "clips_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of clips: video files, or sub-folders of frames.")
@click.option("--labels", "labels_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV: a 'file' column and one 0/1 column per event kind to score "
                   "(empty: that clip is not scored for that kind).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Cameras YAML: a clip runs with the camera of its name (file name or stem), or the "
                   "only camera of a one-camera file. Without it: a new camera's defaults.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Frame rate of frame folders (default 10); video files keep their own.")
def events_eval(clips_dir, labels_path, config_path, fps) -> None:
    """Run the whole camera pipeline on every labelled clip and score each kind clip by clip.

    A clip labelled 1 must raise the kind at least once, a clip labelled 0 must
    not. The last line of standard output is one JSON object: kinds (tp, fp,
    fn, tn, precision, recall with Wilson 95 % intervals, false alarms per hour
    of the clips labelled 0), clips, hours, fps and each clip's events;
    progress goes to standard error.
    """
    from safecity.evaluation.real_clips import LabelsError, evaluate

    cameras = _video_cameras(config_path, []) if config_path else None
    try:
        result = evaluate(clips_dir, labels_path, cameras, fps=fps,
                          progress=lambda m: click.echo(m, err=True))
    except (LabelsError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps(result))


# --------------------------------------------------------------------------- video pipeline


@main.group("video")
def video_group() -> None:
    """Per-camera video analytics: tracks, per-bin observations and events, blurred output."""


def _video_cameras(config_path, camera_ids):
    from safecity.config.cameras import ConfigError, load_cameras

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
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Store receiving observations, events and audit records (or --server).")
@click.option("--server", "server_url", default=None,
              help="A running `safecity serve --live` (e.g. http://localhost:5006) receiving the "
                   "rows, tiles and health through its ingest API (needs --token).")
@click.option("--token", "token_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File holding the bearer token for --server (tables events, observations, cameras).")
@click.option("--camera", "camera_ids", multiple=True, help="Only this camera id (repeatable; default all).")
@click.option("--max-frames", type=click.IntRange(1), default=None,
              help="Stop each camera after this many frames (a live stream never ends by itself).")
@click.option("--bin", "bin_s", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Feature bin in seconds.")
@click.option("--give-up-after", "give_up_s", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds a live camera may go without a frame before it is failed.")
@click.option("--loop", is_flag=True, default=False,
              help="Replay a file or folder source from its start when it ends (a demo), with times "
                   "that keep increasing; stop with Ctrl-C or --max-frames.")
@click.option("--realtime", is_flag=True, default=False,
              help="Play file and folder sources at their frame rate, their times starting now "
                   "(as a live camera would), instead of as fast as possible from the camera's start.")
@_scheduler_option
def video_run(config_path, data_dir, server_url, token_path, camera_ids, max_frames, bin_s, give_up_s,
              loop, realtime, scheduler) -> None:
    """Process every camera's source at once (one thread each); write the results to a store
    (--data-dir) or post them to a running server (--server, --token).

    With --scheduler, each camera runs as a long-running task on a Dask worker
    instead, placed by cost (width x height x fps) and writing its rows itself (a
    --data-dir must then be on a filesystem every worker sees); a camera whose
    worker dies starts again on another, at its first unwritten bin. Its JSON line
    adds the worker running it, the workers it ran on and its restarts.

    Prints one JSON line per camera: status (ok or failed, with the error),
    frames, track ids, observations and events written (with --server, also
    what the server acknowledged), loops, frames per second, and the source's
    health. With --server each camera also posts, at most once a second, its
    latest blurred tile and its health for the page's camera wall. A server that
    cannot be reached is waited for (no row is dropped); a batch it refuses stops
    that camera. Exits non-zero, naming them, if any camera failed.
    """
    from safecity.app.camera_runner import CameraPoster, SinkStore, run_cameras
    from safecity.data.store import Store
    from safecity.ingest.client import HttpSink, read_token

    if (data_dir is None) == (server_url is None):
        raise click.UsageError("give either --data-dir DIR or --server URL (with --token FILE)")
    if server_url is not None and token_path is None:
        raise click.UsageError("--server needs --token FILE")
    if server_url is None and token_path is not None:
        raise click.UsageError("--token goes with --server")
    cameras = _video_cameras(config_path, camera_ids)
    tiles = None
    if server_url is not None:
        if not server_url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{server_url!r} is not an http(s) URL", param_hint="--server")
        try:
            token = read_token(token_path)
        except (OSError, ValueError) as err:
            raise click.ClickException(str(err)) from None
        store, tiles = SinkStore(HttpSink(server_url, token)), CameraPoster(server_url, token)
    else:
        store = Store(data_dir)
    if scheduler is not None:
        from safecity.cluster.cameras import RowsTo, RunOptions, run_on_cluster

        rows = RowsTo(server_url=server_url, token=token) if server_url is not None else \
            RowsTo(data_dir=str(Path(data_dir).resolve()))
        options = RunOptions(bin_s=bin_s, max_frames=max_frames, give_up_after_s=give_up_s,
                             loop=loop, realtime=realtime)
        with _connected(scheduler) as client:
            summaries = run_on_cluster(client, cameras, rows, options)
    else:
        summaries = run_cameras(cameras, store, tiles=tiles, bin_s=bin_s, max_frames=max_frames,
                                give_up_after_s=give_up_s, loop=loop, realtime=realtime)
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
              help="Cameras YAML: zones and event rules of the camera (without it: tracks only).")
@click.option("--camera", "camera_id", default=None, help="Camera id in --config (default: the first).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Store for audit records (needed only if the camera's privacy settings turn the blur off).")
@click.option("--max-frames", type=click.IntRange(1), default=None)
@click.option("--give-up-after", "give_up_s", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds a live SOURCE may go without a frame before giving up.")
def video_annotate(source, out_path, config_path, camera_id, data_dir, max_frames, give_up_s) -> None:
    """Write a blurred copy of SOURCE with boxes, track ids, zones and events drawn."""
    import cv2

    from safecity.data.store import Store
    from safecity.video.pipeline import CameraPipeline
    from safecity.config.addresses import redact

    shown = redact(source)  # errors quote the source, and a stream URL may carry a password

    audit = Store(data_dir).state if data_dir else None
    if config_path:
        cameras = _video_cameras(config_path, [camera_id] if camera_id else [])
        pipe = CameraPipeline(cameras[0], audit=audit)
    else:
        default_id = "stream" if "://" in source else Path(source).stem  # never a URL's query
        pipe = CameraPipeline({"camera_id": camera_id or default_id}, rules=[], audit=audit)
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
