"""Pre-warming a dashboard server: the once-per-process work, done before it says it is ready.

A cold first session of ``dashboards/operations.py`` used to pay for everything a
process does once: importing datashader (6 s here), reading the city and fitting
its models (3.5 s), starting the engine and the camera wall (3 s), and, when the
City maps tab was opened, numba compiling datashader's aggregation (12 s). ``warm``
does it all before the server starts listening, through the same functions and
caches the page uses (``load_city``, ``city_models``, ``get_engine``, ``get_wall``,
``CityView``'s plots), so the first session only builds its page.

``safecity serve`` and ``bash dev.sh demo`` run this file as Panel's setup script
(``panel serve --setup``), which runs before Bokeh logs ``Bokeh app running at:``.
``$SAFECITY_WARMUP=0`` turns it off (the start-up benchmark's baseline,
``bench/dashboard.py --startup``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

#: ``0`` turns the warm-up off.
WARMUP_ENV = "SAFECITY_WARMUP"
#: The line the warm-up prints when done (the tests and the benchmark look for it).
DONE = "safecity warm-up done"

log = logging.getLogger(__name__)


def setup_script() -> Path:
    """This file, for ``panel serve --setup``."""
    return Path(__file__).resolve()


def enabled(env=None) -> bool:
    """Whether the warm-up is on (``$SAFECITY_WARMUP`` unset or anything but ``0``)."""
    return (os.environ if env is None else env).get(WARMUP_ENV, "1").strip() != "0"


def warm(data_dir: str | os.PathLike | None, live: bool = False) -> dict[str, float]:
    """Do a server's once-per-process work for the city in ``data_dir``; the seconds each step took.

    Without a ``data_dir`` only the imports and datashader's compilation are warmed
    (on a few made-up points, through the same heatmap function). ``live``: the
    camera tiles come from the workers (``camera_feed``), not the demo's clips.
    """
    steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(name: str):
        start = time.perf_counter()
        yield
        steps[name] = time.perf_counter() - start
        _say(f"safecity warm-up: {name} in {steps[name]:.1f} s")

    with step("imports"):
        import holoviews as hv

        from safecity.app import dashboard, views
        from safecity.app.engine import get_engine
    if data_dir is None:
        with step("datashader compilation"):
            _render(views.level_heatmap(_made_up_levels(), (0.0, 0.0, 1.0, 1.0)), hv)
        return _done(steps)
    with step("reading the city"):
        city = dashboard.load_city(data_dir)
    with step("fitting the city's models"):
        dashboard.city_models(city)
    with step("starting the engine"):
        engine = get_engine(data_dir)
        dashboard._live_snapshot(engine, engine.version)
    with step("starting the cameras"):
        _cameras(data_dir, live)
    with step("drawing the city maps (datashader compilation)"):
        view = dashboard.CityView(city=city, forecasts=engine.continuous.forecasts
                                  if engine.continuous else None)
        for plot in (view.anomaly_map, view.map, view.forecast_map, view.forecast_line,
                     view.usual_week, view.density_map):
            _render(plot(), hv)
        view.unit_table()
        _render(dashboard.LiveUnitMap(engine, city.zones, tiles=view.tiles_url).plot(), hv)
    return _done(steps)


def warm_from_env() -> dict[str, float] | None:
    """``warm`` for the city of ``$SAFECITY_DATA_DIR``, unless ``$SAFECITY_WARMUP=0``."""
    show_logs()
    if not enabled():
        _say(f"safecity warm-up: off (${WARMUP_ENV}=0)")
        return None
    data_dir = os.environ.get("SAFECITY_DATA_DIR") or None
    if data_dir is None:
        _say("safecity warm-up: no $SAFECITY_DATA_DIR, the city is read by the first session")
    return warm(data_dir, live=os.environ.get("SAFECITY_LIVE") == "1")


def _cameras(data_dir, live: bool) -> None:
    """The process's camera wall, as ``camera_panel`` finds it (live: the workers' feed)."""
    from safecity.app import camera_wall
    from safecity.app.camera_feed import get_feed

    if live:
        get_feed()
    elif os.environ.get("SAFECITY_CAMERAS") or all(
            (Path(data_dir) / "clips" / f"{s}.avi").exists() for s in camera_wall.DEMO_SCENARIOS):
        camera_wall.get_wall(data_dir=data_dir)
    # else the page renders the demo clips itself (live code never imports the simulator)


def _render(obj, hv) -> None:
    hv.render(obj, backend="bokeh")


def _made_up_levels():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    return pd.DataFrame({"lon": rng.random(20), "lat": rng.random(20), "value": rng.random(20),
                         "sensor_id": [f"s{i}" for i in range(20)]})


def _done(steps: dict[str, float]) -> dict[str, float]:
    _say(f"{DONE} in {sum(steps.values()):.1f} s")
    return steps


def _say(line: str) -> None:
    log.info(line)


def show_logs() -> None:
    """Print safecity's INFO lines (city read, models fitted, engine started) in the server's log.

    Bokeh sets only its own logger to INFO; these say what the server did once,
    and when (the warm-up's lines come before ``Bokeh app running at:``).
    """
    logger = logging.getLogger("safecity")
    if not any(getattr(h, "_safecity", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handler._safecity = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, not again through the root logger's handler


if __name__ == "panel_setup_module":  # panel serve --setup .../warmup.py
    from safecity.app.warmup import warm_from_env as _warm

    _warm()
