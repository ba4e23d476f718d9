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
# # The alarm ledger: how often each detector is right
#
# Operators confirm or dismiss the alarms they see (`safecity.incidents.review`); the
# alarm ledger (`safecity.evaluation.ledger`) turns those verdicts into **precision per
# detector, per camera and per hour of day**, each with a 95% Wilson interval, and **false
# alarms per camera-hour** with an exact Poisson (Garwood) interval.
#
# Here the city is synthetic, so the truth is known: every event belongs to a true
# incident or is a false alarm. A "reviewer" who knows the truth gives every event its
# verdict, stored in a real state store as an operator's would be; the ledger is then read
# back from that directory, as `safecity ledger report --data-dir DIR` reads a served city's.

# %%
import tempfile

import holoviews as hv
import pandas as pd
import panel as pn

from safecity.evaluation.ledger import (
    read_ledger,
    read_verdicts,
    simulated_ledger_dir,
    threshold_effect,
)

hv.extension("bokeh")
pn.extension()
state_dir = tempfile.mkdtemp(prefix="ledger-")
tz = simulated_ledger_dir(state_dir, days=3, seed=0, n_cameras=40)
ledger = read_ledger(state_dir, tz)
pd.Series(ledger.overall)

# %% [markdown]
# ## Per detector
#
# Precision = confirmed / (confirmed + false alarm); unsure verdicts are counted but stay out of
# the ratio. A detector judged on three alarms has a wide interval: the ledger says so.

# %%
ledger.by_detector  # noqa: B018  (a notebook cell shows its last value)


# %%
def precision_plot(table: pd.DataFrame, key: str, title: str):
    """Precision per group with its Wilson interval as error bars."""
    t = table.assign(label=table[key].astype(str)).sort_values(key)
    points = hv.Scatter(t, "label", ["precision", "reviewed"]).opts(size=8, tools=["hover"])
    bars = hv.ErrorBars((t["label"], t["precision"], t["precision"] - t["precision_low"],
                         t["precision_high"] - t["precision"]), "label", ["precision", "minus", "plus"])
    return (bars * points).opts(title=title, width=700, height=280, ylim=(0, 1.05), xrotation=45,
                                xlabel=key, ylabel="precision (95% Wilson)")


precision_plot(ledger.by_detector[ledger.by_detector["alarm_type"] == "event"], "kind",
               "Precision per detector")

# %% [markdown]
# ## Per camera and per hour of day (city time)

# %%
cameras = ledger.by_camera[ledger.by_camera["sensor_id"].str.startswith("cam-")]
precision_plot(cameras, "sensor_id", "Precision per camera") + precision_plot(
    ledger.by_hour, "hour", f"Precision per hour of day ({tz})")

# %% [markdown]
# ## False alarms per camera-hour
#
# Camera-hours are counted from the observations history: the clock hours in which each
# camera reported at least one bin. The interval is the exact Poisson one, divided by the hours.

# %%
rates = ledger.false_alarm_rates.dropna(subset=["camera_hours"])
rates = rates[rates["sensor_id"].str.startswith("cam-")]
rates.sort_values("false_alarm", ascending=False).head(10)

# %% [markdown]
# ## What a higher threshold would have done
#
# For one detector, the confirmed alarms lost and the false alarms avoided as its score
# threshold rises (the tuning page's "From the alarm ledger" section).

# %%
verdicts = read_verdicts(state_dir)
kind = "abandoned_object"
pd.DataFrame([vars(threshold_effect(verdicts, kind, t / 20)) for t in range(20)])

# %%
pn.Column("## Alarm ledger (synthetic city, reviewed from its truth)",
          pn.pane.DataFrame(ledger.by_detector.round(3), index=False),
          precision_plot(ledger.by_detector[ledger.by_detector["alarm_type"] == "event"], "kind",
                         "Precision per detector")).servable()
