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
# # The demo city
#
# A tour of safecity's data model on the synthetic Marseille: the same tables that
# every detector, forecaster and dashboard reads. The city is regenerated here
# from a seed, so this notebook runs anywhere; `safecity simulate --out demo-data`
# writes the same city to disk for the dashboard.

# %%
import panel as pn

from safecity.app.dashboard import CityView
from safecity.data import schema
from safecity.sim import city as simulate

pn.extension("tabulator")
city = simulate.simulate_city(seed=0, days=3)
{name: len(getattr(city, name)) for name in ["sensors", "observations", "events", "units", "calendar"]}

# %% [markdown]
# Every table passes the data model's validation; a broken one is refused with the table, column and rows named.

# %%
for name in ["sensors", "observations", "events", "units", "calendar"]:
    schema.validate(getattr(city, name), name)
bad = city.sensors.head(3).assign(kind=["camera", "tank", "counter"])
try:
    schema.validate(bad, "sensors")
except schema.SchemaError as err:
    print(err)

# %% [markdown]
# The injected anomalies are the ground truth every detector is scored against.

# %%
city.truth["anomalies"].head()

# %% [markdown]
# The operator's first view, served by `dashboards/operations.py`: crowd levels over a trailing window, the units and the usual week by zone.

# %%
view = CityView(city=city)
pn.Row(view.controls(), view.layout()).servable()
