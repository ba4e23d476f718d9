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
# # Dispatch and response times
#
# How long does a caller wait for a unit, and where does the time go? Using the San
# Francisco Fire Department's unit responses (two weeks of April 2020, every unit sent
# to every call), each response is split into
#
# * **dispatch delay**: call received → unit dispatched (the call centre),
# * **turnout**: dispatched → unit en route (the crew leaving),
# * **travel**: en route → on scene (the road),
# * **total**: call received → on scene (what the caller lives),
#
# summarised by unit type and priority with a bootstrap 95% confidence interval of the
# median. The functions are `safecity.dispatch.response.response_times` and `summarise`; the
# dashboard calls the same ones.

# %%
import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from safecity.app.views import response_time_bars
from safecity.data.catalog import open_catalog
from safecity.dispatch.response import MEASURES, excluded_counts, response_times, summarise

hv.extension("bokeh")
pn.extension("tabulator")
catalog = open_catalog()


# %% [markdown]
# The data come through the intake catalog (`sf_fire_2020`). Where the shared data
# folder is absent, a small synthetic table of the same shape stands in, so that the
# notebook still runs end to end.

# %%
def synthetic_responses(n=600, seed=0):
    """A stand-in ``responses`` table with plausible, made-up intervals (seconds)."""
    rng = np.random.default_rng(seed)
    received = pd.Timestamp("2020-04-08", tz="UTC") + pd.to_timedelta(rng.uniform(0, 14 * 86400, n), "s")
    unit_type = rng.choice(["ENGINE", "MEDIC", "TRUCK"], n, p=[0.45, 0.4, 0.15])
    travel = rng.gamma(3, np.where(unit_type == "MEDIC", 110, 55))
    out = pd.DataFrame({
        "call_number": np.arange(n).astype(str), "unit_id": unit_type, "unit_type": unit_type,
        "call_type": "Medical Incident", "priority": rng.choice(["2", "3", "E"], n, p=[0.3, 0.65, 0.05]),
        "station_area": "01", "received": received,
    })
    out["dispatched"] = received + pd.to_timedelta(rng.gamma(2, 60, n), "s")
    out["response"] = out["dispatched"] + pd.to_timedelta(rng.gamma(2, 30, n), "s")
    out["on_scene"] = out["response"] + pd.to_timedelta(travel, "s")
    out.loc[rng.random(n) < 0.15, ["on_scene"]] = pd.NaT  # cancelled before arriving
    out["available"] = out["on_scene"] + pd.Timedelta(minutes=20)
    out["lon"], out["lat"] = -122.42, 37.77
    return out


try:
    responses = catalog["sf_fire_2020"].read()
    source = "SF Fire Department, 2020-04-07 .. 2020-04-20 (catalog entry sf_fire_2020)"
except (FileNotFoundError, OSError) as err:
    print(f"SF fire data absent ({err}); using a synthetic responses table instead")
    responses = synthetic_responses()
    source = "synthetic stand-in (the shared data folder is absent)"
print(source, "-", len(responses), "unit responses")
responses.head()

# %% [markdown]
# Each measure is cleaned on its own: a unit cancelled on the way has no travel time,
# but its dispatch delay still counts. Missing, negative and implausibly long intervals
# are excluded and counted here.

# %%
times = response_times(responses)
excluded_counts(times)

# %%
summary = summarise(times, by=("unit_type", "priority"))
minutes = summary.assign(**{c: (summary[c] / 60).round(1)
                            for c in ["median", "mean", "p90", "median_lo", "median_hi"]})
minutes[minutes["measure"] == "total_s"].drop(columns="measure")

# %% [markdown]
# The same table by unit type alone, medians in minutes per measure: travel is where
# ambulances (MEDIC) differ from engines, not the call centre.

# %%
by_type = summarise(times, by=("unit_type",), min_n=30)
pivot = (by_type.assign(median_min=(by_type["median"] / 60).round(1))
         .pivot(index="unit_type", columns="measure", values="median_min")[list(MEASURES)])
pivot

# %%
main_types = times["unit_type"].value_counts().index[:4]
main = summary[summary["unit_type"].isin(main_types) & (summary["n"] >= 20)]
response_time_bars(main, "total_s")

# %% [markdown]
# The distribution behind the medians: response times have long tails, so the mean is
# well above the median and the 90th percentile matters for planning.

# %%
long = times[times["unit_type"].isin(main_types)].assign(total_min=times["total_s"] / 60)
hv.BoxWhisker(long.dropna(subset=["total_min"]), ["unit_type", "priority"], "total_min").opts(
    ylabel="total response (min)", responsive=True, min_height=380, xrotation=45,
    box_fill_color="priority", cmap="Category10", title="Total response time by unit type and priority")

# %% [markdown]
# A servable view: pick the measure, see medians with confidence intervals and the table
# (`panel serve notebooks/dispatch_response_times.ipynb`).

# %%
measure = pn.widgets.Select(name="measure", options=list(MEASURES), value="total_s")


def table_for(measure):
    rows = minutes[(minutes["measure"] == measure) & minutes["unit_type"].isin(main_types)]
    return pn.widgets.Tabulator(rows.drop(columns="measure"), disabled=True, pagination="local",
                                page_size=12, sizing_mode="stretch_width")


pn.Column(
    f"## Response times\n{source}",
    measure,
    pn.pane.HoloViews(pn.bind(lambda m: response_time_bars(main, m), measure),
                      sizing_mode="stretch_width", height=420),
    pn.bind(table_for, measure),
    sizing_mode="stretch_width",
).servable()
