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
# # Usual levels and anomalies on the Melbourne pedestrian counts
#
# `safecity.baseline.usual.UsualLevel` learns each sensor's usual level for every hour of
# the week on the city's calendar (normal days, school and public holidays apart)
# and alarms when a count departs from it, at a threshold solved from a target
# false-alarm rate. Here: the six busiest Melbourne counters over their last 400
# days, fitted on all but the last 90 days and flagged on those 90 while learning
# each day, at one alarm per sensor per week and one city-wide anomaly a month
# (README: the whole city, 2014-2015). Without the Melbourne data the notebook
# runs on the demo city.

# %%
import os

# One OpenMP thread: on a shared 2-core machine the gradient-boosting models' threads
# wait on each other (a 3 s fit took 60 s under load). Set before anything loads OpenMP.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import holoviews as hv
import pandas as pd
import panel as pn

from safecity.baseline.periods import alarm_periods
from safecity.baseline.replay import replay_live
from safecity.baseline.usual import UsualLevel
from safecity.data.catalog import open_catalog
from safecity.evaluation.history import count_history

hv.extension("bokeh")
pn.extension("tabulator")

history = count_history(open_catalog())  # Melbourne's counts, else the demo city's
counts, sensors, calendar, source = history.counts, history.sensors, history.calendar, history.source
city = history.city  # time zone and holidays
city_kw = dict(tz=city.tz, country=city.country, subdiv=city.subdiv, school_zone=city.school_zone)
history_days, flagged_days = (400, 90) if history.real else (56, 14)

busiest = counts.groupby("sensor_id")["value"].sum().nlargest(6).index
end = counts["ts"].max()
counts = counts[counts["sensor_id"].isin(busiest) & (counts["ts"] > end - pd.Timedelta(days=history_days))]
split = end - pd.Timedelta(days=flagged_days)
print(f"{source}: {len(counts):,} counts of {len(busiest)} sensors, flagged from {split:%Y-%m-%d}")

# %%
model = UsualLevel(rate=1 / 7, group_rate=1 / 30, calibration_days=90, **city_kw)
model.fit(counts[counts["ts"] <= split], calendar=calendar, sensors=sensors)
periods = alarm_periods(model, replay_live(model, counts[counts["ts"] > split]))  # learns day by day, as live
print(f"threshold {model.threshold_:.2f} (replay of the history: {model.realised_rate_:.3f} alarm periods "
      f"per sensor-day, target {model.rate:.3f}); {len(periods)} alarm periods flagged")
periods[["start", "end", "sensor_id", "group", "direction", "observed", "expected", "explanation"]].head(10)

# %% [markdown]
# Alarms per day and direction: what a control room would have been shown.

# %%
per_day = (periods.assign(day=periods["start"].dt.tz_convert(city_kw["tz"]).dt.tz_localize(None).dt.floor("D"))
           .groupby(["day", "direction"]).size().rename("alarms").reset_index())
alarms_plot = hv.Bars(per_day, ["day", "direction"], "alarms").opts(
    stacked=True, width=800, height=260, xrotation=90, tools=["hover"], title="Alarm periods per day")
alarms_plot

# %% [markdown]
# One sensor's counts with its usual band and the alarms on it (the busiest sensor).

# %%
sensor = busiest[0]
recent = counts[(counts["sensor_id"] == sensor) & (counts["ts"] > split)]
wide = recent.pivot(index="ts", columns="sensor_id", values="value")
usual = model.expected_level(wide)[sensor].rename("usual").reset_index()
marks = periods[periods["sensor_id"] == sensor]
local = lambda s: s.dt.tz_convert(city_kw["tz"]).dt.tz_localize(None)
sensor_plot = (hv.Curve((local(recent["ts"]), recent["value"]), "time", "count", label="observed")
               * hv.Curve((local(usual["ts"]), usual["usual"]), "time", "count", label="usual")
               * hv.Scatter((local(marks["peak"]), marks["observed"]), "time", "count", label="alarm").opts(
                   color="red", size=7)).opts(width=800, height=280, title=f"{sensor}", legend_position="top_left")
sensor_plot

# %%
table = periods[["start", "sensor_id", "group", "direction", "explanation"]].assign(
    start=lambda d: local(d["start"]).astype(str), sensor_id=lambda d: d["sensor_id"].fillna(""),
    group=lambda d: d["group"].fillna(""))
pn.Column(f"# Usual levels and anomalies: {source}", pn.pane.HoloViews(alarms_plot),
          pn.pane.HoloViews(sensor_plot),
          pn.widgets.Tabulator(table, pagination="local", page_size=10, disabled=True, width=900)).servable()
