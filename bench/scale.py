"""Benchmark of safecity on a Dask cluster: the numbers of issue 14 side by side, in one run.

* camera pipelines: frames/s on one worker vs two (scaling efficiency), and the
  cost of running through Dask against a bare loop on one core;
* baseline fit + score, 20,000 sensors x 7 days x 1 min: wall time and peak
  memory per worker on ``local:2`` against the single process;
* killing a worker mid-run: time until its cameras run again, bins lost, bins
  doubled.

    .venv/bin/python bench/scale.py [--only cameras,baseline,kill]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# --- camera pipelines -------------------------------------------------------------------------

def camera_figures(args) -> dict:
    """Frames/s: bare loop on one core, one Dask worker, two Dask workers."""
    raise NotImplementedError("camera pipelines: to be written")


def kill_figures(args) -> dict:
    """A worker SIGKILLed mid-run: time to resume, bins lost, bins doubled."""
    raise NotImplementedError("kill a worker: to be written")


# --- history and models -----------------------------------------------------------------------

def baseline_figures(args) -> dict:
    """UsualLevel fit + score: single process vs local:2, time and peak memory per worker."""
    raise NotImplementedError("baseline at scale: to be written")


# --- the run ----------------------------------------------------------------------------------

PARTS = {"cameras": camera_figures, "baseline": baseline_figures, "kill": kill_figures}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PARTS), help="Comma-separated parts to run.")
    parser.add_argument("--sensors", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args(argv)
    figures = {}
    for name in args.only.split(","):
        figures[name] = PARTS[name](args)
        print(json.dumps({name: figures[name]}), flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
