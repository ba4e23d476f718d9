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
# # A tour of the data catalog
#
# Every data set safecity reads is an entry of the intake catalog `catalog.yml`
# (drivers in `safecity.data.catalog`): the demo city that `safecity simulate` writes,
# and the real data sets of `../shared/data` (pedestrian counts, emergency calls,
# fire responses, gunshot alerts, zones, landmarks, cameras, video benchmarks).
# A notebook asks the catalog for a table by name and never hard-codes a path.
# Real data sets that are absent here are skipped with the reason printed.

# %%
import os
import tempfile
from pathlib import Path

# One OpenMP thread: on a shared 2-core machine the gradient-boosting models' threads
# wait on each other (a 3 s fit took 60 s under load). Set before anything loads OpenMP.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from safecity.data.catalog import open_catalog, read_if_present
from safecity.data import citydir
from safecity.sim import city as simulate

hv.extension("bokeh")
pn.extension()
cat = open_catalog()
entries = pd.DataFrame([{"entry": name, "table": cat[name].metadata.get("table"),
                         "description": " ".join(str(cat[name].description).split())}
                        for name in cat])
entries

# %% [markdown]
# The demo entries read a store written by `safecity simulate --out demo-data`.
# When the repository has none, the same city (seed 0, three days) is written to a
# temporary folder and the entries are opened there: an entry's arguments can be
# overridden when it is opened.

# %%
demo = [n for n in cat if n.startswith("demo_")]
tables = {name: read_if_present(cat, name) for name in demo}
if any(table is None for table in tables.values()):
    print("writing the demo city (seed 0, 3 days) to a temporary folder instead")
    demo_dir = Path(tempfile.mkdtemp(prefix="safecity-demo-"))
    citydir.write_city(simulate.simulate_city(seed=0, days=3), demo_dir)
    tables = {name: cat[name](data_dir=str(demo_dir)).read() for name in demo}
{name: df.shape for name, df in tables.items()}

# %% [markdown]
# The real data sets, each read whole (a few seconds in all); an absent one is skipped, not faked.

# %%
skipped = []
for name in [n for n in cat if not n.startswith("demo_")]:
    table = read_if_present(cat, name)
    if table is None:
        skipped.append(name)
    else:
        tables[name] = table
pd.DataFrame([{"entry": name, "rows": len(df), "columns": ", ".join(map(str, df.columns))}
              for name, df in tables.items()])

# %% [markdown]
# A small picture of each table, chosen by the data-model table it returns: places
# on a map for tables with positions, a daily total for time series, a count per
# frame for the video benchmarks. Video frames are not shown here: a frame shown to a
# person goes through the pipeline's blur (`notebooks/video_analytics.ipynb`).

# %%
OPTS = dict(width=420, height=260, tools=["hover"])


def daily(df: pd.DataFrame, ts: str, value: str | None = None) -> hv.Curve:
    day = df[ts].dt.floor("D")
    per_day = df.groupby(day)[value].sum() if value else df.groupby(day).size()
    return hv.Curve(per_day.rename("n").reset_index(), ts, "n").opts(**OPTS)


def preview(name: str, df: pd.DataFrame):
    """A small plot of an entry's table, or None when a table is the best view."""
    table = cat[name].metadata.get("table")
    if df.empty:
        return None
    if table == "observations":
        return daily(df, "ts", "value").relabel("people counted per day")
    if table == "events" and "ts" in df:
        return daily(df, "ts").relabel("events per day")
    if table == "responses":
        minutes = (df["on_scene"] - df["received"]).dt.total_seconds() / 60
        return hv.Histogram(np.histogram(minutes[(minutes > 0) & (minutes < 60)], bins=40)).opts(
            xlabel="call to on scene (min)", **OPTS)
    if table == "frames" and "count" in df:
        return hv.Curve(df, "frame", "count").opts(**OPTS)
    if table == "frames":
        test = df[df["split"] == "testing"].groupby("video")["abnormal"].mean()
        return hv.Bars(test.rename("abnormal share").reset_index(), "video").opts(**OPTS)
    if table == "detections":
        return hv.Curve(df.groupby("frame").size().rename("n").reset_index(), "frame", "n").opts(**OPTS)
    if table == "heads":
        return hv.Points(df, ["x", "y"]).opts(invert_yaxis=True, size=1, alpha=0.2, **OPTS)
    if {"lon", "lat"} <= set(df.columns) and df["lon"].notna().any():
        return hv.Points(df.dropna(subset=["lon", "lat"]), ["lon", "lat"]).opts(size=4, **OPTS)
    return None


def shown(df: pd.DataFrame) -> pd.DataFrame:
    """The first rows as text: geometries and JSON are cut short."""
    head = df.head(5).drop(columns=[c for c in ("geometry", "path") if c in df.columns])
    return head.map(lambda v: v if not isinstance(v, str) or len(v) < 60 else v[:57] + "...")


previews = {name: preview(name, df) for name, df in tables.items()}
previews["melbourne_counts"] if "melbourne_counts" in previews else previews["demo_observations"]


# %% [markdown]
# The tour as a page: one tab per entry present (`panel serve notebooks/catalog_tour.ipynb`).

# %%
def card(name: str):
    df = tables[name]
    parts = [pn.pane.Markdown(f"**{name}** ({cat[name].metadata.get('table')}): {len(df):,} rows. "
                              + " ".join(str(cat[name].description).split())),
             pn.pane.DataFrame(shown(df), index=False, max_width=900)]
    if previews[name] is not None:
        parts.append(pn.pane.HoloViews(previews[name]))
    return (name, pn.Column(*parts))


missing = pn.pane.Markdown("Absent here: " + (", ".join(skipped) if skipped else "none"))
pn.Column("# safecity data catalog", missing, pn.Tabs(*[card(n) for n in tables], dynamic=True)).servable()
