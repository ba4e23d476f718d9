"""The operator's view of the city: zones, crowd levels and units on one offline map.

Serve with ``panel serve dashboards/operations.py``. It reads the data directory
named by ``$SAFECITY_DATA_DIR`` (default: the demo data, ``demo-data/`` beside
this folder, which ``safecity simulate --out demo-data`` writes).
"""
import os
from pathlib import Path

import panel as pn

from safecity.dashboard import CityView, load_city

pn.extension("tabulator", sizing_mode="stretch_width")

DATA_DIR = Path(os.environ.get("SAFECITY_DATA_DIR",
                               Path(__file__).resolve().parents[1] / "demo-data"))

# A plain layout, not a template: templates fetch web fonts, and the operations
# room may have no internet.
view = CityView(city=load_city(DATA_DIR))
pn.Column(
    pn.pane.Markdown("## safecity · operations", styles={"color": "#1f4e9c"}),
    pn.Row(pn.Column(view.controls(), width=300, sizing_mode="fixed"), view.layout()),
).servable(title="safecity · operations")
