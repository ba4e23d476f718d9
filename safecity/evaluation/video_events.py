"""How well the event rules find the simulator's scripted episodes: precision and recall per kind.

The live loop replayed over the scripted clips of ``safecity.sim.clips``
(rendered pixels, or the simulator's own boxes to tell a rule's errors
from the tracker's); an event counts when it fires on its kind's episode.

    python -m safecity.evaluation.video_events --seeds 0,1 [--tracker truth]
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import supervision as sv

from safecity.sim.clips import SCENARIOS, render_clip
from safecity.video.detect import PeopleFinder
from safecity.video.events import KINDS, make_rules
from safecity.video.track import TRACK_COLUMNS, BoxTracker, from_table, to_table


def detections_by_frame(tracks: pd.DataFrame) -> dict[int, sv.Detections]:
    """A recorded tracks table as each frame's tracked detections (what the live loop passes)."""
    return {int(f): from_table(rows) for f, rows in tracks.groupby("frame")} if len(tracks) else {}


def run_rules(detectors: list, frames, tracks: pd.DataFrame, fps: float,
                  foregrounds=None) -> list[dict]:
    """Feed a whole clip frame by frame (the live loop, replayed); every event found."""
    by_frame = detections_by_frame(tracks)
    empty = from_table(tracks.iloc[:0])
    found = []
    for f, image in enumerate(frames):
        fg = foregrounds[f] if foregrounds is not None else None
        detections = by_frame.get(f, empty)
        for det in detectors:
            found.extend(det.update(f, f / fps, image, detections, fg))
    return found


#: How early (seconds) an event may come before its scripted episode and still count.
TOLERANCE_S = 1.0


def truth_tracks(clip) -> pd.DataFrame:
    """The simulator's exact boxes in the tracks contract (bags are ``object``): a perfect tracker."""
    fps = clip.scene["fps"]
    t = clip.tracks
    return pd.DataFrame({"frame": t["frame"], "time_s": t["frame"] / fps, "track_id": t["track_id"],
                         "x": t["x"], "y": t["y"], "w": t["w"], "h": t["h"],
                         "cls": t["cls"].replace({"bag": "object"}), "confidence": 1.0})


def track_clip(frames, scene: dict, fps: float) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Detect and track every frame as the live pipeline does: (tracks table, foreground masks)."""
    detector, tracker = PeopleFinder({**scene, "fps": fps}), BoxTracker(fps=fps)
    parts, masks = [], []
    for f, image in enumerate(frames):
        det, fg = detector.detect(image)
        tracked = tracker.update(det, f)
        masks.append(fg)
        if len(tracked):
            parts.append(to_table(tracked, f, f / fps))
    tracks = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TRACK_COLUMNS)
    return tracks, masks


def clip_events(clip, tracker: str = "real", kinds=None) -> tuple[list[dict], pd.DataFrame]:
    """Run the detectors over one rendered clip: (events found, tracks used).

    ``tracker='real'`` detects and tracks the rendered pixels (the
    background model, blob detector and tracker of ``safecity.video``), end
    to end, and hands the foreground masks on; ``'truth'`` uses the
    simulator's boxes and no foreground, to tell a detector's errors from the
    tracker's.
    """
    fps = clip.scene["fps"]
    if tracker == "truth":
        tracks, masks = truth_tracks(clip), None
    elif tracker == "real":
        tracks, masks = track_clip(clip.frames, clip.scene, fps)
    else:
        raise ValueError(f"tracker must be 'real' or 'truth', got {tracker!r}")
    detectors = make_rules(clip.scene, kinds if kinds is not None else KINDS)
    return run_rules(detectors, clip.frames, tracks, fps, masks), tracks


def match_events(found: list[dict], truth: pd.DataFrame, fps: float,
                 tolerance_s: float = TOLERANCE_S) -> tuple[list[bool], list[bool]]:
    """(is each event a true positive, is each truth episode found).

    An event matches an episode of its kind when its frame lies in
    ``[start_frame - tolerance, end_frame]``.
    """
    tol = int(round(tolerance_s * fps))
    hit_event, hit_truth = [], [False] * len(truth)
    for ev in found:
        ok = False
        for i, ep in enumerate(truth.itertuples(index=False)):
            if ep.kind == ev["kind"] and ep.start_frame - tol <= ev["frame"] <= ep.end_frame:
                ok = hit_truth[i] = True
        hit_event.append(ok)
    return hit_event, hit_truth


def evaluate_clips(seeds=(0,), scenarios=None, tracker: str = "real", kinds=KINDS,
                   tolerance_s: float = TOLERANCE_S, progress=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Precision and recall of each detector over the scripted clips of ``seeds``.

    Precision = true-positive events / events of that kind over ALL clips
    (firing on another scenario's clip is a false alarm); recall = scripted
    episodes found / episodes. Returns (table per kind, every event with
    its clip and verdict).
    """
    records, episodes = [], []
    for seed in seeds:
        for scenario in scenarios or SCENARIOS:
            clip = render_clip(scenario, seed=seed)
            found, _ = clip_events(clip, tracker, kinds)
            fps = clip.scene["fps"]
            hit_event, hit_truth = match_events(found, clip.truth, fps, tolerance_s)
            for ev, ok in zip(found, hit_event):
                records.append({"seed": seed, "scenario": scenario, "kind": ev["kind"],
                                "frame": ev["frame"], "true_positive": ok,
                                "track_ids": ev["track_ids"]})
            for ep, ok in zip(clip.truth.itertuples(index=False), hit_truth):
                episodes.append({"seed": seed, "scenario": scenario, "kind": ep.kind, "found": ok})
            if progress is not None:
                progress(f"seed {seed} {scenario}: {len(found)} events")
    events = pd.DataFrame(records, columns=["seed", "scenario", "kind", "frame", "true_positive",
                                            "track_ids"])
    truth = pd.DataFrame(episodes, columns=["seed", "scenario", "kind", "found"])
    rows = []
    for kind in kinds:
        ev, ep = events[events["kind"] == kind], truth[truth["kind"] == kind]
        rows.append({"kind": kind,
                     "precision": round(ev["true_positive"].mean(), 3) if len(ev) else np.nan,
                     "recall": round(ep["found"].mean(), 3) if len(ep) else np.nan,
                     "events": len(ev), "true_positives": int(ev["true_positive"].sum()),
                     "episodes": len(ep), "seeds": ",".join(str(s) for s in seeds)})
    return pd.DataFrame(rows), events


def false_alarms(events: pd.DataFrame) -> pd.DataFrame:
    """Where the false alarms of each kind fired: a kind x scenario count table."""
    wrong = events[~events["true_positive"].astype(bool)]
    return wrong.pivot_table(index="kind", columns="scenario", values="frame", aggfunc="size", fill_value=0)


def main(argv=None) -> None:
    """``python -m safecity.evaluation.video_events --seeds 10,11,12``: the precision/recall table as Markdown."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seeds", default="0,1", help="comma-separated clip seeds (default 0,1)")
    parser.add_argument("--tracker", default="real", choices=("real", "truth"))
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    table, events = evaluate_clips(seeds=seeds, tracker=args.tracker,
                                   progress=lambda m: print(m, file=sys.stderr))
    print(_markdown(table))
    print()
    print(_markdown(false_alarms(events).reset_index()))


def _markdown(df: pd.DataFrame) -> str:
    """A Markdown table (without the optional ``tabulate`` dependency)."""
    cells = [[str(c) for c in df.columns]] + [["" if pd.isna(v) else str(v) for v in row]
                                               for row in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in [cells[0], ["---"] * len(cells[0]), *cells[1:]])


if __name__ == "__main__":
    main()
