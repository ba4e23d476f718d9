"""Frames leaked at the start of a camera: how many of the first frames leave the pipeline
with a person still sharp, on PETS 2009 S2.L1 (public detections as the people).

A fresh ``CameraPipeline`` (as ``safecity video annotate`` and every camera-wall
(re)start build) is run over the first ``--frames`` frames; each output of
``display`` is compared with the raw frame inside every MOTChallenge 2015 public
detection (scaled by 0.625 to the 480x360 video, score >= 0.5): a person is
*sharp* when the Laplacian variance inside the box keeps more than half of the
raw frame's (``privacy.sharp_boxes``, ratio > 0.5). A frame is *leaked* when any
person in it is sharp.

    .venv/bin/python bench/privacy_leak.py [--video PATH] [--frames 50] [--warmup-s 2]

``--warmup-s 0`` turns the warm-up off: the pipeline as it was before it had one
(measured on that code too: the same figures).

PETS 2009 S2.L1, University of Reading (free for research use); detections from
abewley/sort's copy of the MOT15 public detections.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import pandas as pd

from safecity.video.pipeline import CameraPipeline
from safecity.video.privacy import sharp_boxes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = ROOT.parent / "shared" / "data" / "video" / "pets2009_s2l1" / "vtest.avi"
SCALE = 0.625  # the detections are in the 768x576 original's pixels


def public_detections(path: str | Path) -> pd.DataFrame:
    """MOT15 public detections as 0-based ``frame`` and ``x, y, w, h`` in the video's pixels."""
    cols = ["frame", "id", "x", "y", "w", "h", "score", "a", "b", "c"]
    det = pd.read_csv(path, header=None, names=cols)
    det["frame"] -= 1
    det[["x", "y", "w", "h"]] *= SCALE
    return det[["frame", "x", "y", "w", "h", "score"]]


def leak_check(video: str | Path, detections: pd.DataFrame, frames: int = 50, ratio: float = 0.5,
               **pipeline) -> list[dict]:
    """Per frame of a fresh pipeline: the people (boxes) and how many were left sharp."""
    pipe = CameraPipeline({"camera_id": "pets"}, rules=[], **pipeline)
    capture = cv2.VideoCapture(str(video))
    out = []
    try:
        for index in range(frames):
            ok, image = capture.read()
            if not ok:
                break
            shown = pipe.display(image, pipe.process(image), annotate=False)
            boxes = detections[detections["frame"] == index][["x", "y", "w", "h"]].to_numpy()
            sharp = sharp_boxes(image, shown, boxes, ratio)
            out.append({"frame": index, "people": len(boxes), "sharp": int(sharp.sum())})
    finally:
        capture.release()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--detections", default=None, help="default: mot15_public_det.txt beside the video")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--ratio", type=float, default=0.5, help="sharp: more than this share of the detail")
    parser.add_argument("--warmup-s", type=float, default=None, help="default: the pipeline's own")
    args = parser.parse_args()
    det_path = args.detections or Path(args.video).with_name("mot15_public_det.txt")
    options = {} if args.warmup_s is None else {"warmup_s": args.warmup_s}
    rows = leak_check(args.video, public_detections(det_path), args.frames, args.ratio, **options)
    leaked = [r["frame"] for r in rows if r["sharp"]]
    print(json.dumps({"frames": len(rows), "leaked_frames": len(leaked), "leaked": leaked,
                      "sharp_people": int(sum(r["sharp"] for r in rows)),
                      "people": int(sum(r["people"] for r in rows)), "rule": f"laplacian var ratio > {args.ratio}"}))


if __name__ == "__main__":
    main()
