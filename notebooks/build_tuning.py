"""Write ``tuning.ipynb`` (run: python notebooks/build_tuning.py).

The notebook is generated so that its cells stay reviewable as code; outputs
are left empty and produced by running it (``tests/test_notebooks.py``).
"""
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell("""\
# Tuning the video alarm threshold

Where should the video anomaly detector's alarm threshold sit? The detector
(`safecity.video.anomaly.FlowMomentumScorer`) is fitted on a normal synthetic clip, then scores
every frame of clips with scripted events (`safecity.sim.clips.render_clip`): a
person walking the wrong way, a crowd running off, a fire. Frames inside a scripted
event are labelled anomalous. For a threshold we read

* **precision**: share of alarm frames that fall inside an event,
* **recall**: share of event frames that raise an alarm,
* **false alarms per camera-hour**: runs of alarm frames touching no event, per hour of footage.

`dashboards/tuning.py` serves this same `AlarmTuner` object."""),
    new_code_cell("""\
import numpy as np
import pandas as pd
import panel as pn

from safecity.evaluation.tuning import AlarmTuner, alarm_metrics

pn.extension()
tuner = AlarmTuner.from_synthetic_clips()
tuner.threshold, tuner.metrics()"""),
    new_markdown_cell("The trade-off over the whole range, computed by the plain function the tuner uses:"),
    new_code_cell("""\
grid = np.round(np.linspace(*tuner.param.threshold.bounds, 25), 2)
pd.DataFrame([{"threshold": t, **alarm_metrics(tuner.scores, tuner.labels, t, tuner.fps)}
              for t in grid]).set_index("threshold").round(2)"""),
    new_markdown_cell("Move the slider: the readout and the threshold line follow."),
    new_code_cell("""\
pn.Row(
    pn.Param(tuner.param, widgets={"threshold": pn.widgets.FloatSlider}),
    pn.Column(tuner.readout, tuner.plot),
).servable()"""),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook(cells=CELLS)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


if __name__ == "__main__":
    path = Path(__file__).with_suffix("").with_name("tuning.ipynb")
    nbformat.write(build(), path)
    print(f"wrote {path}")
