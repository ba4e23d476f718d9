"""Benchmark of the per-camera video pipeline on PETS 2009 (480x360, 795 frames): frames per second per core.

Prints, measured in the same run on one core (``cv2.setNumThreads(1)``,
one-thread BLAS), the rate of:

- decoding only (OpenCV reading ``vtest.avi``), the floor every stage sits on;
- decode + background model + detection + tracking (``track_frames``' stages);
- decode + the whole ``CameraPipeline`` without event detectors (adds ground
  speed, zone tests, dwell, per-bin features and zone counts);
- decode + the whole ``CameraPipeline`` with the event detectors of
  ``safecity.video.events`` (when that module is installed);
- the blurred, annotated output frame (``display``), for a viewer.

Each rate is the best of ``--repeat`` passes over the file. The target is 200
frames per second per core (40 cameras at 5 fps on one core).

    .venv/bin/python bench/video.py [--video PATH] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "video" / "pets2009_s2l1" / "vtest.avi"
TARGET_FPS = 200.0


def decode(path):
    cap = cv2.VideoCapture(str(path))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        yield frame
    cap.release()


def timed(run, repeat: int) -> tuple[float, int]:
    """Best frames-per-second over ``repeat`` passes; ``run()`` returns the frames it processed."""
    best, frames = 0.0, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        frames = run()
        best = max(best, frames / (time.perf_counter() - t0))
    return best, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not Path(args.video).is_file():
        raise SystemExit(f"{args.video}: no such video (PETS 2009 lives in ../shared/data/video)")
    cv2.setNumThreads(1)

    from safecity.video.detect import Detector
    from safecity.video.pipeline import CameraPipeline, _optional
    from safecity.video.track import Tracker, to_table

    scene = {"camera_id": "pets-view1", "fps": 10}

    def decode_only():
        return sum(1 for _ in decode(args.video))

    def detect_track():
        detector, tracker, n = Detector(scene), Tracker(), 0
        for n, image in enumerate(decode(args.video), 1):
            det, _ = detector.detect(image)
            to_table(tracker.update(det, n - 1), n - 1, (n - 1) / 10)
        return n

    def pipeline(detectors):
        def run():
            pipe, n = CameraPipeline(scene, detectors=detectors() if detectors else [], bin_s=60.0), 0
            for n, image in enumerate(decode(args.video), 1):
                pipe.process(image)
            return n
        return run

    def with_display():
        pipe, n = CameraPipeline(scene, detectors=[], bin_s=60.0), 0
        for n, image in enumerate(decode(args.video), 1):
            pipe.display(image, pipe.process(image))
        return n

    events = _optional("events")
    rows = [("decode only (OpenCV)", decode_only),
            ("decode + detect + track", detect_track),
            ("decode + pipeline, no event detectors", pipeline(None))]
    if events is not None:
        rows.append(("decode + pipeline + event detectors", pipeline(lambda: events.make_detectors(scene))))
    if _optional("privacy") is not None:
        rows.append(("decode + pipeline + blurred display", with_display))

    print(f"machine: {os.cpu_count()} cores (shared); OpenCV {cv2.__version__}, 1 thread; "
          f"{args.video} (best of {args.repeat})")
    print(f"{'stages':<42}{'frames':>7}{'fps/core':>10}{'ms/frame':>10}{'vs decode':>11}")
    decode_fps = None
    for label, run in rows:
        fps, frames = timed(run, args.repeat)
        decode_fps = decode_fps or fps
        print(f"{label:<42}{frames:>7}{fps:>10.0f}{1000 / fps:>10.2f}{fps / decode_fps:>10.2f}x")
    print(f"target: {TARGET_FPS:.0f} fps per core for the whole pipeline (40 cameras at 5 fps)")
    quality(args.video)


def quality(video) -> None:
    """What the speed buys: the tracks against PETS's MOTChallenge public detections, if beside the video."""
    import pandas as pd

    from safecity.video.detect import Detector
    from safecity.video.track import covered_share, track_frames

    det_path = Path(video).with_name("mot15_public_det.txt")
    if not det_path.is_file():
        return
    det = pd.read_csv(det_path, header=None).iloc[:, [0, 2, 3, 4, 5]]
    det.columns = ["frame", "x", "y", "w", "h"]
    det[["x", "y", "w", "h"]] *= 480 / 768  # MOT boxes are in the original 768x576 frame
    det["frame"] -= 1  # MOT counts frames from 1
    tracks = track_frames(decode(video), {"fps": 10})
    span = tracks.groupby("track_id")["frame"].agg(lambda f: f.max() - f.min() + 1)
    print(f"tracks: {covered_share(tracks, det):.3f} of the {len(det):,} public detections covered at "
          f"IoU >= 0.3 (frame offset 0; {covered_share(tracks, det.assign(frame=det['frame'] + 1)):.3f} "
          f"with +1, {covered_share(tracks, det.assign(frame=det['frame'] - 1)):.3f} with -1); "
          f"{tracks['track_id'].nunique()} ids, {(span >= 30).sum()} lasting 3 s or more "
          f"(about 20 people cross the scene)")
    frames = list(decode(video))
    t0 = time.perf_counter()
    hog = track_frames(frames, {"fps": 10}, detector=Detector({}, hog=True))
    rate = len(frames) / (time.perf_counter() - t0)
    print(f"with HOG on blob regions every 5th frame: {covered_share(hog, det):.3f} covered, "
          f"{hog['track_id'].nunique()} ids, detect + track (decoded frames) at {rate:.0f} fps")


if __name__ == "__main__":
    main()
