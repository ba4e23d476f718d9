"""Benchmark of the console's route layer: ``LiveEngine.routes`` per click on a city directory.

Replays the city (``ReplayEngine``, 30 ticks at 600x) and, for every incident in the
queue, times ``recommended(top=3)``, a first ``routes`` call (the recommendation plus
each route's polyline) and a second one (cached for the engine's version).

    .venv/bin/python bench/console_routes.py [demo-data]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time

from safecity.app.engine import ReplayEngine
from safecity.data.citydir import read_city


def main(city_dir: str = "demo-data") -> None:
    city = read_city(city_dir)
    engine = ReplayEngine(city, tempfile.mkdtemp(prefix="bench-routes-"), speed=600)
    for _ in range(30):
        engine.step(1)
    queue = engine.incident_queue()
    calls = {"recommended(top=3)": lambda i: engine.recommended(i, top=3),
             "routes, first call": engine.routes, "routes, cached": engine.routes}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for incident in queue["incident_id"]:
        for name, call in calls.items():
            t = time.perf_counter()
            call(incident)
            times[name].append(time.perf_counter() - t)
    print(f"{len(queue)} incidents, {len(city.nodes)} road nodes, {len(engine.unit_status())} units")
    for name, xs in times.items():
        print(f"{name:>20}: median {1e3 * statistics.median(xs):.1f} ms, max {1e3 * max(xs):.1f} ms")


if __name__ == "__main__":
    main(*sys.argv[1:])
