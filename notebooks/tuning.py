# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tuning the video alarm threshold
#
# Where should the video anomaly detector's alarm threshold sit? The detector
# (`safecity.video.anomaly.FlowMomentumScorer`) is fitted on a normal synthetic clip, then scores
# every frame of clips with scripted events (`safecity.sim.clips.render_clip`): a
# person walking the wrong way, a crowd running off, a fire. Frames inside a scripted
# event are labelled anomalous. For a threshold we read
#
# * **precision**: share of alarm frames that fall inside an event,
# * **recall**: share of event frames that raise an alarm,
# * **false alarms per camera-hour**: runs of alarm frames touching no event, per hour of footage.
#
# `dashboards/tuning.py` serves this same `AlarmTuner` object.

# %%
import numpy as np
import pandas as pd
import panel as pn

from safecity.evaluation.tuning import AlarmTuner, alarm_metrics

pn.extension()
tuner = AlarmTuner.from_synthetic_clips()
tuner.threshold, tuner.metrics()

# %% [markdown]
# The trade-off over the whole range, computed by the plain function the tuner uses:

# %%
grid = np.round(np.linspace(*tuner.param.threshold.bounds, 25), 2)
pd.DataFrame([{"threshold": t, **alarm_metrics(tuner.scores, tuner.labels, t, tuner.fps)}
              for t in grid]).set_index("threshold").round(2)

# %% [markdown]
# Move the slider: the readout and the threshold line follow.

# %%
pn.Row(
    pn.Param(tuner.param, widgets={"threshold": pn.widgets.FloatSlider}),
    pn.Column(tuner.readout, tuner.plot),
).servable()
