"""The operator's view of the city: zones, crowd levels and units on one offline map.

Serve with ``panel serve dashboards/operations.py``. It reads the data directory
named by ``$SAFECITY_DATA_DIR`` (default: the demo data, ``demo-data/`` beside
this folder, which ``safecity simulate --out demo-data`` writes).

The live section reads one engine shared by every session (``get_engine``):
it replays the city at ``$SAFECITY_REPLAY_SPEED`` simulated seconds per second
and keeps dispatches in ``$SAFECITY_STATE_DIR`` (default: a temporary folder).
"""
import os
from pathlib import Path

import panel as pn

from safecity.access import guard
from safecity.dashboard import CityView, LiveView, load_city
from safecity.engine import get_engine

pn.extension("tabulator", sizing_mode="stretch_width")
guard()  # no page for an open server or a user without a role

DATA_DIR = Path(os.environ.get("SAFECITY_DATA_DIR",
                               Path(__file__).resolve().parents[1] / "demo-data"))

# A plain layout, not a template: templates fetch web fonts, and the operations
# room may have no internet.
view = CityView(city=load_city(DATA_DIR))
live = LiveView(get_engine(DATA_DIR))
pn.state.add_periodic_callback(live.refresh, period=1000)  # this session reads; it never steps
pn.Column(
    pn.pane.Markdown("## safecity · operations", styles={"color": "#1f4e9c"}),
    live.layout(),
    pn.Row(pn.Column(view.controls(), width=300, sizing_mode="fixed"), view.layout()),
).servable(title="safecity · operations")
