"""The camera wall on its own page: blurred live tiles and the cameras' health.

Serve with ``panel serve dashboards/cameras.py``. The cameras are those of the
installation file ``$SAFECITY_CAMERAS``, else the demo clips of
``$SAFECITY_DATA_DIR`` (rendered small when absent). One wall per server
process plays them (``get_wall``); each session only reads it once a second.
With a demo city in ``$SAFECITY_DATA_DIR``, the health panel also says how far
the replayed data lags the simulated clock.
"""
import os
from pathlib import Path

import panel as pn

from safecity.app.access import guard
from safecity.app.camera_wall import camera_panel
from safecity.sim.clips import write_clips

pn.extension(sizing_mode="stretch_width")
guard()  # no page for an open server or a user without a role

data_dir = os.environ.get("SAFECITY_DATA_DIR")
engine = None
if data_dir and (Path(data_dir) / "history").is_dir():
    from safecity.app.engine import get_engine

    engine = get_engine(data_dir)

pn.Column(
    pn.pane.Markdown("## safecity · cameras", styles={"color": "#1f4e9c"}),
    camera_panel(data_dir or None, engine=engine, render=write_clips),
).servable(title="safecity · cameras")
