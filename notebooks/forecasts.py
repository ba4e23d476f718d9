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
# # Forecasting gatherings
#
# `safecity.forecast.model.GatheringForecaster` forecasts each sensor's hourly count for
# the next 24 hours with the 10th, 50th and 90th percentiles, from history and
# the calendar; `SeasonalNaive` (the same hour a week before) is the baseline to
# beat. A short rolling-origin backtest: the six busiest Melbourne counters over
# their last 240 days, one model fitted before the last 21 days, then a forecast from every local midnight
# of those days, each reading only the counts before it. The error's uncertainty
# is a bootstrap over forecast days (days, not hours, are resampled, since the
# hours of one day err together). Without the Melbourne data it runs on the demo
# city. README: the whole city over 183 days, 6 folds (`safecity forecast backtest`).

# %%
import os

# One OpenMP thread: on a shared 2-core machine the gradient-boosting models' threads
# wait on each other (a 3 s fit took 60 s under load). Set before anything loads OpenMP.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import holoviews as hv
import pandas as pd
import panel as pn

from safecity.data.catalog import open_catalog
from safecity.evaluation.history import count_history
from safecity.evaluation.stats import day_bootstrap_mae, quantile_interval
from safecity.data.counts import hourly_counts
from safecity.forecast.baselines import SeasonalNaive
from safecity.forecast.model import GatheringForecaster
from safecity.forecast.table import forecast_hours

hv.extension("bokeh")
pn.extension()

history = count_history(open_catalog())  # Melbourne's counts, else the demo city's
counts, sensors, calendar, source = history.counts, history.sensors, history.calendar, history.source
city = history.city  # time zone and holidays
city_kw = dict(tz=city.tz, country=city.country, subdiv=city.subdiv, school_zone=city.school_zone)
history_days, test_days = (240, 21) if history.real else (56, 14)

busiest = counts.groupby("sensor_id")["value"].sum().nlargest(6).index
end = counts["ts"].max()
counts = counts[counts["sensor_id"].isin(busiest) & (counts["ts"] > end - pd.Timedelta(days=history_days))]
origins = pd.date_range((end - pd.Timedelta(days=test_days)).tz_convert(city_kw["tz"]).normalize(),
                        periods=test_days - 1, freq="D").tz_convert("UTC")
print(f"{source}: {len(busiest)} sensors, {len(origins)} forecast origins from {origins[0]:%Y-%m-%d}")

# %%
train = counts[counts["ts"] < origins[0]]
models = {"forecaster": GatheringForecaster(max_iter=100, **city_kw).fit(train, calendar=calendar, sensors=sensors),
          "seasonal naive": SeasonalNaive(tz=city_kw["tz"]).fit(train)}
actual = hourly_counts(counts).stack().rename("count")
actual.index.names = ["ts", "sensor_id"]
rows = []
for origin in origins:
    for name, model in models.items():
        pred = model.predict(forecast_hours(origin, "24h"), observations=counts)
        rows.append(pred.assign(method=name, origin=origin))
scored = pd.concat(rows, ignore_index=True).join(actual, on=["ts", "sensor_id"]).dropna(subset=["count"])
scored["abs_error"] = (scored["q50"] - scored["count"]).abs()
scored["inside_80"] = scored["count"].between(scored["q10"], scored["q90"])
scored.groupby("method")[["abs_error", "inside_80"]].mean().round(3)

# %% [markdown]
# MAE per method with a 95% bootstrap interval over forecast days, and the paired ratio to the seasonal naive:

# %%
by_day = scored.pivot_table(index="origin", columns="method", values="abs_error", aggfunc="sum")
n_day = scored.pivot_table(index="origin", columns="method", values="abs_error", aggfunc="size")
mae_draws = day_bootstrap_mae(by_day, n_day, n_boot=2000, seed=0)  # the same days for both methods
ratio = mae_draws["forecaster"] / mae_draws["seasonal naive"]


def interval(point, values):
    lo, hi = quantile_interval(values)
    return f"{point:.1f} [{lo:.1f}, {hi:.1f}]"


summary = pd.DataFrame({
    "MAE [95% CI]": {m: interval(by_day[m].sum() / n_day[m].sum(), mae_draws[m]) for m in by_day},
    "80% interval coverage": scored.groupby("method")["inside_80"].mean().round(3),
    "scored sensor-hours": scored.groupby("method").size()})
point_ratio = (by_day["forecaster"].sum() / n_day["forecaster"].sum()) / (
    by_day["seasonal naive"].sum() / n_day["seasonal naive"].sum())
ratio_lo, ratio_hi = quantile_interval(ratio)
print(f"forecaster MAE / seasonal naive MAE = {point_ratio:.2f} [{ratio_lo:.2f}, {ratio_hi:.2f}]")
summary

# %% [markdown]
# The last forecast of the busiest sensor with its 80% band, against what was counted:

# %%
sensor, last = busiest[0], origins[-1]
one = scored[(scored["sensor_id"] == sensor) & (scored["origin"] == last)]
fc_one, naive_one = one[one["method"] == "forecaster"], one[one["method"] == "seasonal naive"]
local = lambda s: s.dt.tz_convert(city_kw["tz"]).dt.tz_localize(None)
forecast_plot = (hv.Area((local(fc_one["ts"]), fc_one["q10"], fc_one["q90"]), "time", ["q10", "q90"],
                         label="80% band").opts(alpha=0.3)
                 * hv.Curve((local(fc_one["ts"]), fc_one["q50"]), "time", "count", label="forecaster")
                 * hv.Curve((local(naive_one["ts"]), naive_one["q50"]), "time", "count", label="seasonal naive")
                 * hv.Scatter((local(fc_one["ts"]), fc_one["count"]), "time", "count", label="counted").opts(
                     color="black", size=5)).opts(width=800, height=300, legend_position="top_left",
                                                   title=f"{sensor}, forecast issued {last:%Y-%m-%d %H:%M} UTC")
forecast_plot

# %%
daily_mae = (by_day / n_day).reset_index().melt(id_vars="origin", var_name="method", value_name="MAE")
daily_plot = hv.Overlay([hv.Curve(daily_mae[daily_mae["method"] == m], "origin", "MAE", label=m)
                         for m in models]).opts(width=800, height=260, title="MAE per forecast day",
                                                legend_position="top_left")
pn.Column(f"# Gathering forecasts: {source}", pn.pane.DataFrame(summary),
          pn.pane.HoloViews(forecast_plot), pn.pane.HoloViews(daily_plot)).servable()
