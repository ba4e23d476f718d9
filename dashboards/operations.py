"""The operator's console and the city's maps: the live console on one screen (incidents,
units, cameras and routes on the map, the queue, the selected incident's evidence and
actions), the anomalies, crowd levels and forecast on offline maps of the zones, and
the alarm ledger.

Serve with ``panel serve dashboards/operations.py``. It reads the data directory
named by ``$SAFECITY_DATA_DIR`` (default: the demo data, ``demo-data/`` beside
this folder, which ``safecity simulate --out demo-data`` writes).

The live section reads one engine shared by every session (``get_engine``):
served by ``safecity serve --live`` it is the city as its sources post it (the
ingest API, docs/live.md); otherwise it replays the demo city at
``$SAFECITY_REPLAY_SPEED`` simulated seconds per second through the same ingest.
It keeps dispatches in ``$SAFECITY_STATE_DIR`` (default: a temporary folder).
Its unit markers move every second (``safecity.app.console``). The camera wall (``safecity.app.camera_wall``)
shows blurred live tiles and their health, one wall per process.
``$SAFECITY_TILES_URL`` (an XYZ template such as
``https://tiles.city.example/{Z}/{X}/{Y}.png``) draws the city's own map tiles
under the zones; unset, the page requests nothing from outside.
"""
import os
from pathlib import Path

import panel as pn

from safecity.app.access import guard
from safecity.app.camera_feed import get_feed
from safecity.app.camera_wall import get_wall
from safecity.app.console import CameraStrip, Console
from safecity.app.dashboard import CityView, follow_engine, load_city
from safecity.app.engine import LIVE_ENV, get_engine
from safecity.sim.clips import write_clips

pn.extension("tabulator", sizing_mode="stretch_width")
guard()  # no page for an open server or a user without a role

LIVE = os.environ.get(LIVE_ENV) == "1"  # safecity serve --live: sources feed the engine
DATA_DIR = Path(os.environ.get("SAFECITY_DATA_DIR",
                               Path(__file__).resolve().parents[1] / "demo-data"))

# A plain layout, not a template: templates fetch web fonts, and the operations
# room may have no internet.
city = load_city(DATA_DIR)  # read, and its models fitted, once per process
engine = get_engine(DATA_DIR)
# the forecast map shows the engine's forecaster once it has issued a forecast
view = CityView(city=city, forecasts=engine.continuous.forecasts if engine.continuous else None)
# blurred tiles and health: the camera workers' (live) or the demo's clips
wall = get_feed() if LIVE else get_wall(data_dir=DATA_DIR, render=write_clips)
console = Console(engine, wall=wall)
strip = CameraStrip(wall)

follow_engine(engine, console, strip)  # every second, and at once on a new incident or dispatch

# The live view first; the city maps are built when their tab is first opened, so a
# new session never stalls the others' updates while datashader and the forecasts render.
maps = pn.Column(pn.pane.Markdown("Loading the city maps…"))



def open_maps(event, maps=maps, view=view) -> None:  # bound: the script's names go with its session
    if event.new == 1 and len(maps) == 1 and isinstance(maps[0], pn.pane.Markdown):
        maps[:] = [pn.Row(pn.Column(view.controls(), width=300, sizing_mode="fixed"),
                          view.layout())]


def ledger_tab(engine, tz):
    """The alarm ledger (``safecity.evaluation.ledger_view``), refreshed with the engine, if installed."""
    try:
        from safecity.evaluation.ledger_view import LedgerView
    except ImportError:
        return pn.pane.Markdown("The alarm ledger is not available in this installation."), None
    ledger = LedgerView(engine, tz=tz)
    return ledger.layout(), ledger


ledger_page, ledger = ledger_tab(engine, city.config.tz)



def own_scroll(page) -> pn.Column:
    """A tab that scrolls inside itself: a tall tab would stretch every tab, the console too."""
    return pn.Column(page, scroll=True, sizing_mode="stretch_both", min_height=0, margin=0)


tabs = pn.Tabs(
    ("Live console", console.layout(camera_strip=strip.layout())),
    ("City maps", own_scroll(maps)),
    ("Alarm ledger", own_scroll(ledger_page)),
    sizing_mode="stretch_both", margin=0,
)
tabs.param.watch(open_maps, "active")
LEDGER_TAB = 2


def refresh_ledger(event=None, tabs=tabs, ledger=ledger) -> None:  # bound, like open_maps
    """The ledger, recomputed only while its tab is open (at once when opened, then every 5 s)."""
    if ledger is not None and tabs.active == LEDGER_TAB:
        ledger.refresh()


tabs.param.watch(refresh_ledger, "active")
pn.state.add_periodic_callback(refresh_ledger, period=5_000)


def redraw_forecast(view=view, shown={"issued": None}) -> None:  # bound, like open_maps
    """Redraw the forecast map when the engine's forecaster issues a new forecast (hourly)."""
    issued = getattr(view.forecasts, "issued_at", None)
    if issued != shown["issued"]:
        shown["issued"] = issued
        view.param.trigger("forecasts")


pn.state.add_periodic_callback(redraw_forecast, period=30_000)
pn.Column(
    pn.pane.HTML('<b style="color:#1f4e9c;font-size:16px">safecity · operations</b>', margin=(2, 8)),
    tabs, sizing_mode="stretch_both", height_policy="max", margin=0,
    styles={"height": "100vh"},
).servable(title=console.title())
