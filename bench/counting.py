"""The crowd counter's speed on Mall: frames per second on one core, beside decoding and the ridge.

    OMP_NUM_THREADS=1 python bench/counting.py [--data ../shared/data] [--frames 200]

Fits ``CrowdCounter`` and ``ForegroundEdgeRidge`` on Mall's first 200 frames,
then times, on the next ``--frames`` (already decoded, so decoding is a line
of its own): JPEG decoding alone; the ridge baseline; the counter with a fixed
background (``adapt=0, light=False``, the previous design's per-frame work);
the counter as deployed (``count_live``: light matched, background followed).
Wall and CPU seconds (``time.process_time``) per frame, one OpenCV and one
OpenMP thread, so that a loaded machine shows in the wall figure only.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
from sklearn.base import clone
from threadpoolctl import threadpool_limits

from safecity.video.counting import (CrowdCounter, ForegroundEdgeRidge, count_live, load_perspective,
                                     read_counts, read_heads)


def timed(fn, n: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"fps_wall": round(n / wall, 1), "fps_cpu": round(n / cpu, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    root = Path(args.data) / "video" / "mall"
    table = read_counts(root / "counts.csv", root / "frames")
    names = table["frame_file"].tolist()
    perspective, roi = load_perspective(root / "perspective_roi.mat")
    cv2.setNumThreads(1)
    with threadpool_limits(limits=1):
        train = [cv2.imread(str(root / "frames" / name)) for name in names[:200]]
        counts = table["count"].to_numpy(float)[:200]
        heads = read_heads(root / "heads.csv", names[:200])
        deployed = CrowdCounter(perspective=perspective, roi=roi).fit(train, counts, heads=heads)
        fixed = clone(deployed).set_params(adapt=0.0, light=False).fit(train, counts, heads=heads)
        ridge = ForegroundEdgeRidge(perspective=perspective, roi=roi).fit(train, counts)
        paths = [str(root / "frames" / name) for name in names[200:200 + args.frames]]
        frames = [cv2.imread(p) for p in paths]
        n = len(frames)
        out = {"frames": n,
               "decode_only": timed(lambda: [cv2.imread(p) for p in paths], n),
               "ridge_baseline": timed(lambda: ridge.predict(frames), n),
               "counter_fixed_background": timed(lambda: fixed.predict(frames), n),
               "counter_deployed": timed(lambda: count_live(deployed, frames), n)}
    for key, value in out.items():
        print(f"{key:26s} {value}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
