"""The event detectors on every real clip we have: confusion counts, false alarms per camera-hour
on all real normal footage together, precision and recall where there are real events, the
ABODA alarm frames and the pipeline's rate.

Each set runs through ``safecity.evaluation.real_clips.evaluate`` (the whole
pipeline, a new camera's defaults) against its labels in
``bench/real_footage/``. ``--split dev`` or ``--split test`` keeps only the
labelled rows of that split (the honest tuning protocol: settings are chosen
on ``dev`` and the synthetic clips, ``test`` is only reported). Prints a
Markdown report, then one JSON line.

    nice -n 10 .venv/bin/python bench/real_footage.py [--data ../shared/data] [--split test|dev|all]
        [--sets upfall_cam1,pets2009_s2l1,...]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from safecity.evaluation.real_clips import evaluate
from safecity.evaluation.stats import poisson_interval, wilson_interval

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "bench" / "real_footage"


@dataclass(frozen=True)
class RealSet:
    """One set of real clips: its folder under ``--data``, its labels file, a frame folder's rate."""

    name: str
    clips: str
    labels: str
    fps: float | None = None


SETS = (
    RealSet("upfall_cam1", "video/upfall_cam1", "upfall_cam1.csv"),
    RealSet("pets2009_s2l1", "video/pets2009_s2l1", "pets2009_s2l1.csv"),
    RealSet("mall", "video/mall", "mall.csv", fps=2.0),
    RealSet("ucsd_ped2_train", "video/ucsd_ped2/training/frames", "ucsd_ped2_train.csv", fps=10.0),
    RealSet("aboda", "video/aboda", "aboda.csv"),
)

#: ABODA video4: the owner has left by this frame (``../shared/data/video/aboda/labels.csv``); an
#: alarm is due after it (within 60 s), none before.
ABODA_OWNER_LEFT = 690

#: The kinds with real labelled events, and the set that has them.
POSITIVES = {"person_on_ground": "upfall_cam1", "abandoned_object": "aboda"}


def split_labels(labels: Path, split: str, folder: Path) -> Path | None:
    """The labels file kept to the rows of ``split`` (a file in ``folder``), or None when no row is."""
    if split == "all":
        return labels
    table = pd.read_csv(labels, dtype=str, keep_default_na=False)
    if "split" not in table.columns:
        raise SystemExit(f"{labels}: no 'split' column to keep the {split!r} rows of")
    kept = table[table["split"].str.strip() == split]
    if kept.empty:
        return None
    path = folder / labels.name
    kept.to_csv(path, index=False)
    return path


def run_sets(data: Path, split: str, names=None) -> dict:
    """``evaluate`` on each set (its result by name); sets with no row of the split are left out."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for real in SETS:
            if names and real.name not in names:
                continue
            labels = split_labels(LABELS / real.labels, split, Path(tmp))
            if labels is None:
                print(f"{real.name}: no {split} rows", file=sys.stderr)
                continue
            print(f"{real.name}: {data / real.clips}", file=sys.stderr)
            results[real.name] = evaluate(data / real.clips, labels, fps=real.fps,
                                          progress=lambda m: print("  " + m, file=sys.stderr, flush=True))
    return results


def summarise(results: dict) -> dict:
    """Per kind over every set: false alarms on the normal clips, their hours, the rate per
    camera-hour with its Poisson 95 % interval; precision and recall (Wilson 95 %) where there
    are positives; ABODA's alarm frames; the pipeline's frames per second."""
    kinds = sorted({k for r in results.values() for k in r["kinds"]})
    normal = {}
    for kind in kinds:
        alarms = sum(r["kinds"][kind]["false_alarms"] for r in results.values() if kind in r["kinds"])
        hours = sum(r["kinds"][kind]["normal_hours"] for r in results.values() if kind in r["kinds"])
        lo, hi = poisson_interval(alarms)
        normal[kind] = {"false_alarms": alarms, "hours": round(hours, 4),
                        "per_hour": round(alarms / hours, 3) if hours else None,
                        "per_hour_95": [round(float(lo) / hours, 3), round(float(hi) / hours, 3)] if hours else None}
    positives = {}
    for kind, name in POSITIVES.items():
        if name not in results or kind not in results[name]["kinds"]:
            continue
        c = results[name]["kinds"][kind]
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        positives[kind] = {"set": name, "tp": tp, "fp": fp, "fn": fn,
                           "precision": round(tp / (tp + fp), 3) if tp + fp else None,
                           "precision_95": _wilson(tp, tp + fp), "recall": round(tp / (tp + fn), 3) if tp + fn else None,
                           "recall_95": _wilson(tp, tp + fn)}
    aboda = {clip: [e["frame"] for e in events if e["kind"] == "abandoned_object"]
             for clip, events in results.get("aboda", {}).get("events", {}).items()}
    rates = [(r["fps"], r["hours"]) for r in results.values() if r["fps"]]
    return {"normal": normal, "positives": positives, "aboda_alarm_frames": aboda,
            "fps": {name: r["fps"] for name, r in results.items()},
            "fps_mean": round(sum(f * h for f, h in rates) / sum(h for _, h in rates), 1) if rates else None}


def markdown(results: dict, summary: dict, split: str) -> str:
    lines = [f"## Real footage, split {split}", "", "| set | kind | tp | fp | fn | tn | false alarms | normal h |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        for kind, c in r["kinds"].items():
            lines.append(f"| {name} | {kind} | {c['tp']} | {c['fp']} | {c['fn']} | {c['tn']} | "
                         f"{c['false_alarms']} | {c['normal_hours']:.3f} |")
    lines += ["", "| kind | false alarms | camera-hours | per camera-hour | 95 % |", "|---|---:|---:|---:|---|"]
    for kind, n in summary["normal"].items():
        lines.append(f"| {kind} | {n['false_alarms']} | {n['hours']:.3f} | {n['per_hour']} | {n['per_hour_95']} |")
    if summary["positives"]:
        lines += ["", "| kind | set | tp | fp | fn | precision (95 %) | recall (95 %) |", "|---|---|---:|---:|---:|---|---|"]
        for kind, p in summary["positives"].items():
            lines.append(f"| {kind} | {p['set']} | {p['tp']} | {p['fp']} | {p['fn']} | "
                         f"{p['precision']} {p['precision_95']} | {p['recall']} {p['recall_95']} |")
    if summary["aboda_alarm_frames"]:
        lines += ["", f"ABODA abandoned-object alarm frames (the owner has left by frame {ABODA_OWNER_LEFT}): "
                  + "; ".join(f"{c}: before {[x for x in f if x < ABODA_OWNER_LEFT] or 'none'}, "
                              f"after {[x for x in f if x >= ABODA_OWNER_LEFT] or 'none'}"
                              for c, f in summary["aboda_alarm_frames"].items())]
    lines += ["", "Pipeline frames/s: " + ", ".join(f"{n} {f}" for n, f in summary["fps"].items())
              + f" (weighted by footage: {summary['fps_mean']})"]
    return "\n".join(lines)


def _wilson(k: int, n: int):
    return [round(float(b), 3) for b in wilson_interval(k, n)] if n else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                        help="the real-data folder (default ../shared/data)")
    parser.add_argument("--split", choices=("test", "dev", "all"), default="all")
    parser.add_argument("--sets", default="", help="comma-separated set names (default: all): "
                        + ", ".join(s.name for s in SETS))
    args = parser.parse_args(argv)
    names = [s for s in args.sets.split(",") if s]
    unknown = [n for n in names if n not in {s.name for s in SETS}]
    if unknown:
        parser.error(f"unknown set {unknown}; choose from {', '.join(s.name for s in SETS)}")
    if not args.data.is_dir():
        parser.error(f"{args.data}: no such data folder")
    results = run_sets(args.data, args.split, names)
    summary = summarise(results)
    print(markdown(results, summary, args.split))
    print(json.dumps({"split": args.split, "sets": {n: {"kinds": r["kinds"], "clips": r["clips"], "hours": r["hours"],
                                                      "fps": r["fps"]} for n, r in results.items()},
                      **summary}))


if __name__ == "__main__":
    main()
