"""Repeated presence on the simulator's scripted clips: is the returning person found, and
does anyone else raise a false return?

    python -m safecity.evaluation.repeated_presence --seeds 5,6,7,8,9 [--tracks pipeline|tracker|script]
"""
from __future__ import annotations

import pandas as pd

from safecity.evaluation.video_events import detections_by_frame
from safecity.sim.clips import SCENARIOS, render_clip
from safecity.video.events.repeated_presence import RepeatedPresenceRule
from safecity.video.pipeline import CameraPipeline
from safecity.video.track import from_table, track_frames


def evaluate_clips(seeds=(0,), scenarios=None, tracks: str = "pipeline", progress=None) -> pd.DataFrame:
    """Repeated presence on the simulator's scripted clips: one row per clip.

    ``tracks``: ``pipeline`` (the camera pipeline's detector, tracker and
    foreground mask: what a deployment sees), ``tracker`` (``track_frames``'
    boxes, no mask) or ``script`` (the simulator's own boxes: the detector's
    errors only). Columns: seed, scenario, events, found (a
    ``repeated_presence`` event inside the scripted episode; always False on
    other scenarios), false_events (events outside any episode), frames.
    """
    if tracks not in ("pipeline", "tracker", "script"):
        raise ValueError(f"tracks must be pipeline, tracker or script, got '{tracks}'")
    rows = []
    for seed in seeds:
        for scenario in scenarios or SCENARIOS:
            clip = render_clip(scenario, seed=seed)
            detector = RepeatedPresenceRule(clip.scene, enabled=True)
            events = []
            if tracks == "pipeline":
                pipeline = CameraPipeline(clip.scene, rules=[detector])
                for image in clip.frames:
                    events += pipeline.process(image).events
            else:
                table = clip.tracks if tracks == "script" else track_frames(clip.frames, clip.scene)
                by_frame, empty = detections_by_frame(table), from_table(table.iloc[:0])
                for f, image in enumerate(clip.frames):
                    events += detector.update(f, f / clip.scene["fps"], image, by_frame.get(f, empty), None)
            episodes = clip.truth[clip.truth["kind"] == "repeated_presence"]
            inside = [any(ep.start_frame <= e["frame"] <= ep.end_frame for ep in episodes.itertuples())
                      for e in events]
            rows.append({"seed": seed, "scenario": scenario, "events": len(events),
                         "found": any(inside), "false_events": inside.count(False),
                         "frames": [e["frame"] for e in events]})
            if progress is not None:
                progress(f"seed {seed} {scenario}: {len(events)} events")
    return pd.DataFrame(rows, columns=["seed", "scenario", "events", "found", "false_events", "frames"])


def main(argv=None) -> None:
    """``python -m safecity.evaluation.repeated_presence --seeds 5,6,7,8,9``: episodes found and false events."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seeds", default="0,1", help="comma-separated clip seeds (default 0,1)")
    parser.add_argument("--tracks", default="pipeline", choices=("pipeline", "tracker", "script"))
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    table = evaluate_clips(seeds, tracks=args.tracks, progress=lambda m: print(m, file=sys.stderr))
    returns = table[table["scenario"] == "repeated_presence"]
    others = table[table["scenario"] != "repeated_presence"]
    print(f"tracks={args.tracks} seeds={args.seeds}: episodes found {int(returns['found'].sum())} of "
          f"{len(returns)}; false events {int(table['false_events'].sum())} "
          f"({int(others['events'].sum())} on {len(others)} clips of other scenarios)")
    for row in table[table["false_events"] > 0].itertuples(index=False):
        print(f"  false: seed {row.seed} {row.scenario} at frames {row.frames}")


if __name__ == "__main__":
    main()
