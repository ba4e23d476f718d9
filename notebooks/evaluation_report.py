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
# # Evaluation report: every measured figure, with its uncertainty
#
# Every figure here is computed when the notebook runs; none is typed in. What is
# cheap is computed on every run (on the synthetic data always, on the real data
# when present, on small subsets). The figures measured on whole data sets take
# minutes: they are computed by running their own command (the one the docs give)
# and reading its output when `RUN_LONG` is true (set it in the next cell, or run
# with `SAFECITY_REPORT_LONG=1`; a quarter of an hour more). Otherwise their rows
# give the command and no value. Intervals are 95%: Wilson intervals for
# proportions, exact Poisson intervals for counts of false alarms, bootstrap
# intervals for errors, medians and AUCs (`safecity.evaluation.stats`).
#
# Data come through the catalog (`catalog.yml`); a real data set absent here is
# skipped with the reason printed.

# %% tags=["parameters"]
import os

# One OpenMP thread: on a shared 2-core machine the gradient-boosting models' threads
# wait on each other (a 3 s fit took 60 s under load). Set before anything loads OpenMP.
os.environ.setdefault("OMP_NUM_THREADS", "1")

RUN_LONG = os.environ.get("SAFECITY_REPORT_LONG") == "1"  # True: also the figures that take minutes

# %%
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import panel as pn

from safecity.data.catalog import open_catalog, read_if_present
from safecity.evaluation.stats import (block_bootstrap_auc, day_bootstrap_mae, poisson_interval,
                                       quantile_interval, wilson_interval)

pn.extension("tabulator")
cat = open_catalog()
figures = []  # one row per figure: what, value, interval, data, status, how to reproduce
COMPUTED, BY_COMMAND, NOT_RUN = "computed here", "computed here by its command", "not run (RUN_LONG is off)"


def add(area, what, value, lo=np.nan, hi=np.nan, data="", status=COMPUTED, how=""):
    figures.append({"area": area, "figure": what, "value": value, "low": lo, "high": hi,
                    "data": data, "status": status, "reproduce": how})


def command(*args) -> str:
    """The command line that reproduces a figure, as a reader types it."""
    return " ".join(["safecity", *map(str, args)])


def run(*args) -> dict:
    """Run a safecity command and read the JSON it prints: the figure is the command's own output."""
    done = subprocess.run([sys.executable, "-m", "safecity.cli", *map(str, args)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{command(*args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


clock = time.perf_counter()

# %% [markdown]
# ## Video event detectors
#
# `safecity.evaluation.video_events.evaluate_clips` (one scripted clip per scenario and seed,
# end to end through the real background model, detector and tracker): seed 0 on
# every run; with `RUN_LONG`, the seeds the detectors were tuned on (0, 1) and the
# held-out ones (10, 11, 12). Few episodes per kind, so the intervals are wide:
# that width is the honest uncertainty.

# %%
from safecity.evaluation.video_events import evaluate_clips


def add_video_events(seeds, note=""):
    per_kind, _ = evaluate_clips(seeds=seeds)
    names = ",".join(map(str, seeds))
    how = f"python -m safecity.evaluation.video_events --seeds {names}"
    for r in per_kind.itertuples():
        found = int(round(r.recall * r.episodes)) if r.episodes else 0
        add("video events", f"{r.kind} precision{note}", r.precision, *wilson_interval(r.true_positives, r.events),
            data=f"seeds {names}, {r.events} events", how=how)
        add("video events", f"{r.kind} recall{note}", r.recall, *wilson_interval(found, r.episodes),
            data=f"seeds {names}, {r.episodes} episodes", how=how)
    return per_kind


per_kind = add_video_events((0,))
for seeds, note in [((0, 1), " (seeds tuned on)"), ((10, 11, 12), " (held-out seeds)")]:
    if RUN_LONG:
        add_video_events(seeds, note)
    else:
        add("video events", f"precision and recall per kind{note}", "", data="scripted clips", status=NOT_RUN,
            how=f"python -m safecity.evaluation.video_events --seeds {','.join(map(str, seeds))}")
per_kind

# %% [markdown]
# ## Event detectors on real footage
#
# `safecity events eval` runs the whole pipeline on each labelled real clip and
# scores it clip by clip ([the real-footage page](../docs/real-footage.md); labels in
# `safecity/evaluation/real_footage/`, whose `split` column set the dev rows that
# settings were chosen on apart). On every run: four short clips of UP-Fall's test
# split (two falls, two people picking something up), a check computed here from
# very few clips. With `RUN_LONG`: every real set's test split, and each kind's
# false alarms per camera-hour on all that real normal footage together (exact
# Poisson intervals; a rate of 0 still has an upper bound set by the hours watched).

# %%
from safecity.evaluation.real_clips import LABELS_DIR, evaluate, evaluate_footage

upfall = read_if_present(cat, "upfall_cam1_videos")  # one row per clip (header only)
if upfall is not None:
    data_root = Path(upfall["path"].iloc[0]).parents[2]  # .../data/video/upfall_cam1/clip.mp4
    labels = pd.read_csv(LABELS_DIR / "upfall_cam1.csv", dtype=str, keep_default_na=False)
    short = labels[labels["file"].isin(["Activity1_Trial2Cam1.mp4", "Activity2_Trial2Cam1.mp4",
                                        "Activity9_Trial2Cam1.mp4", "Activity9_Trial3Cam1.mp4"])]
    with tempfile.TemporaryDirectory() as tmp:
        short[["file", "person_on_ground"]].to_csv(Path(tmp) / "labels.csv", index=False)
        k = evaluate(data_root / "video/upfall_cam1", Path(tmp) / "labels.csv")["kinds"]["person_on_ground"]
    add("real footage", "person_on_ground recall (4 short UP-Fall test clips)", k["recall"],
        *wilson_interval(k["tp"], k["tp"] + k["fn"]), data="UP-Fall cam 1, trials 2-3",
        how="safecity events eval --clips .../upfall_cam1 --labels <these 4 rows>")
    add("real footage", "person_on_ground precision (4 short UP-Fall test clips)", k["precision"],
        *wilson_interval(k["tp"], k["tp"] + k["fp"]), data="UP-Fall cam 1, trials 2-3",
        how="safecity events eval --clips .../upfall_cam1 --labels <these 4 rows>")
    how = "python bench/real_footage.py --split test"
    if RUN_LONG:
        pooled = evaluate_footage(data_root, split="test")["pooled"]
        for kind, k in pooled["kinds"].items():
            if k["tp"] + k["fn"]:
                add("real footage", f"{kind} recall (test split)", k["recall"], *k["recall_95"], data="real clips",
                    status=BY_COMMAND, how=how)
                add("real footage", f"{kind} precision (test split)", k["precision"],
                    *(k["precision_95"] or (np.nan, np.nan)), data="real clips", status=BY_COMMAND, how=how)
            add("real footage", f"{kind} false alarms per camera-hour, all real normal footage (test split)",
                k["false_alarms_per_hour"], *k["false_alarms_per_hour_95"],
                data=f"{k['normal_hours'] * 60:.1f} min, {k['false_alarms']} false alarms", status=BY_COMMAND, how=how)
    else:
        add("real footage", "precision, recall and false alarms per camera-hour of every kind", "",
            data="real clips", status=NOT_RUN, how=how)

# %% [markdown]
# ## False alarms per camera-hour of the video anomaly detector
#
# `safecity.evaluation.tuning.alarm_metrics` on the tuning dashboard's labelled synthetic clips,
# at the threshold the detector learnt on a normal clip.

# %%
from safecity.evaluation.tuning import AlarmTuner, alarm_metrics

tuner = AlarmTuner.from_synthetic_clips()
m = alarm_metrics(tuner.scores, tuner.labels, tuner.threshold, tuner.fps)
lo, hi = poisson_interval(m["false_alarms"])
add("video anomaly", "false alarms per camera-hour", round(m["false_alarms_per_camera_hour"], 1),
    lo / m["hours"], hi / m["hours"], data=f"synthetic clips, {m['hours'] * 60:.1f} min, threshold {tuner.threshold}",
    how="panel serve dashboards/tuning.py")
add("video anomaly", "frame precision at the learnt threshold", round(m["precision"], 3),
    data="synthetic clips (frames are correlated: no interval given)")
add("video anomaly", "frame recall at the learnt threshold", round(m["recall"], 3),
    data="synthetic clips (frames are correlated: no interval given)")
m

# %% [markdown]
# ## Video anomaly detection AUC (UCSD Ped2)
#
# Fitted on 2 training clips, scored on test clips 01 and 02; the interval resamples
# blocks of 20 consecutive frames (neighbouring frames are not independent). With
# `RUN_LONG`, `safecity vad eval` on all 16 training and all 6 test clips.

# %%
from sklearn.metrics import roc_auc_score

from safecity.data.frames import read_frames
from safecity.video import anomaly as vad

ped2 = read_if_present(cat, "ucsd_ped2_frames")  # split, video, frame, frame_file, path, abnormal
if ped2 is not None:
    clips = ped2.assign(folder=ped2["path"].map(lambda p: Path(p).parent)).groupby(["split", "video"])["folder"].first()
    scorer = vad.FlowMomentumScorer().fit([read_frames(clips["training", c]) for c in ("01", "02")])
    scores, truth = [], []
    for c in ("01", "02"):
        s = scorer.score_samples(read_frames(clips["testing", c]))
        y = ped2[(ped2["split"] == "testing") & (ped2["video"] == c)].sort_values("frame_file")["abnormal"]
        scores.append(s)
        truth.append(y.to_numpy().astype(int)[:len(s)])
    s, y = np.concatenate(scores), np.concatenate(truth)
    add("video anomaly", "UCSD Ped2 pooled frame AUC", round(roc_auc_score(y, s), 4),
        *quantile_interval(block_bootstrap_auc(y, s, block=20, n_boot=500, seed=0)),
        data="2 training clips, test clips 01-02", how="notebooks/evaluation_report.ipynb")
    args = ("vad", "eval", "--train", clips["training", "01"].parent, "--test", clips["testing", "01"].parent,
            "--labels", clips["testing", "01"].parents[1] / "labels.csv")
    what, data = "UCSD Ped2 pooled frame AUC, all 16 training and 6 test clips", "UCSD Ped2"
    if RUN_LONG:
        add("video anomaly", what, round(run(*args)["auc"], 4), data=data, status=BY_COMMAND, how=command(*args))
    else:
        add("video anomaly", what, "", data=data, status=NOT_RUN, how=command(*args))

# %% [markdown]
# ## Crowd counting (Mall) and tracking (PETS 2009)
#
# Fitting the counter on 800 frames takes about two minutes (`notebooks/video_analytics.ipynb`
# fits it on a small subset), and tracking the whole PETS clip about one: both run
# with `RUN_LONG` only. One run each; no interval.

# %%
from safecity.video.pipeline import CameraPipeline
from safecity.video.track import covered_share

mall = read_if_present(cat, "mall_frames")  # frame, frame_file, path, count
if mall is not None:
    frames_dir = Path(mall["path"].iloc[0]).parent  # the data set's files sit beside its frames
    args = ("count", "eval", "--frames", frames_dir, "--counts", frames_dir.parent / "counts.csv", "--train", 800,
            "--heads", frames_dir.parent / "heads.csv", "--perspective", frames_dir.parent / "perspective_roi.mat")
    what = "Mall MAE, fit 1..800, test 801..1200"
    if RUN_LONG:
        result = run(*args)
        add("counting", what, round(result["mae"], 2), data="Mall", status=BY_COMMAND, how=command(*args))
        add("counting", f"{what}, ridge baseline", round(result["baseline_mae"], 2), data="Mall",
            status=BY_COMMAND, how=command(*args))
    else:
        add("counting", what, "", data="Mall", status=NOT_RUN, how=command(*args))

pets_video = read_if_present(cat, "pets2009_video")
if pets_video is not None:
    what, how = "PETS 2009 coverage of public detections", "python -m pytest tests/test_pets.py"
    if RUN_LONG:
        pets = CameraPipeline({"camera_id": "pets-view1", "fps": 10}, rules=[], bin_s=10.0,
                              start="2009-01-01T12:00:00Z")
        pets_tracks = pd.concat([pets.process(frame).tracks for frame in pets.frames(pets_video["path"].iloc[0])],
                                ignore_index=True)
        mot = cat["pets2009_detections"].read()
        mot["frame"] -= 1  # MOTChallenge counts frames from 1, the pipeline from 0
        add("tracking", what, round(covered_share(pets_tracks, mot), 3), data=f"PETS 2009 S2.L1, {len(mot):,} detections",
            how=how)
    else:
        add("tracking", what, "", data="PETS 2009 S2.L1", status=NOT_RUN, how=how)

# %% [markdown]
# ## Forecast error
#
# The forecaster against the seasonal naive over 14 daily origins, 24 h ahead, on
# four sensors (Melbourne when present, else the demo city); 95% bootstrap over
# forecast days. `notebooks/forecasts.ipynb` shows the same at more length. With
# `RUN_LONG` and the Melbourne counts, `safecity forecast backtest` on every sensor
# over the last 183 days, 6 folds.

# %%
from safecity.evaluation.history import count_history
from safecity.data.counts import hourly_counts
from safecity.forecast.baselines import SeasonalNaive
from safecity.forecast.model import GatheringForecaster
from safecity.forecast.table import forecast_hours
from safecity.sim import city as simulate

history = count_history(cat)  # Melbourne's counts, else the demo city's
counts, sensors, calendar, city = history.counts, history.sensors, history.calendar, history.city
city_kw = dict(tz=city.tz, country=city.country, subdiv=city.subdiv, school_zone=city.school_zone)
source = f"{history.source}, 4 sensors"
busiest = counts.groupby("sensor_id")["value"].sum().nlargest(4).index
end = counts["ts"].max()
recent = counts[counts["sensor_id"].isin(busiest) & (counts["ts"] > end - pd.Timedelta(days=240))]
origins = pd.date_range((end - pd.Timedelta(days=15)).tz_convert(city_kw["tz"]).normalize(),
                        periods=14, freq="D").tz_convert("UTC")
train = recent[recent["ts"] < origins[0]]
models = {"forecaster": GatheringForecaster(max_iter=100, **city_kw).fit(train, calendar=calendar, sensors=sensors),
          "naive": SeasonalNaive(tz=city_kw["tz"]).fit(train)}
actual = hourly_counts(recent).stack().rename("count")
actual.index.names = ["ts", "sensor_id"]
scored = pd.concat([models[k].predict(forecast_hours(o, "24h"), observations=recent).assign(method=k, origin=o)
                    for o in origins for k in models], ignore_index=True)
scored = scored.join(actual, on=["ts", "sensor_id"]).dropna(subset=["count"])
scored["err"] = (scored["q50"] - scored["count"]).abs()
err = scored.pivot_table(index="origin", columns="method", values="err", aggfunc="sum")
n = scored.pivot_table(index="origin", columns="method", values="err", aggfunc="size")
mae = day_bootstrap_mae(err, n, n_boot=2000, seed=0)
for k in models:
    add("forecast", f"{k} MAE, 24 h ahead", round(err[k].sum() / n[k].sum(), 1),
        *quantile_interval(mae[k]), data=f"{source}, {len(origins)} days")
add("forecast", "forecaster MAE / seasonal naive MAE",
    round((err["forecaster"].sum() / n["forecaster"].sum()) / (err["naive"].sum() / n["naive"].sum()), 3),
    *quantile_interval(mae["forecaster"] / mae["naive"]), data=f"{source}, {len(origins)} days")

# %%
if history.real:
    inputs = Path(tempfile.mkdtemp(prefix="safecity-report-"))
    counts.to_parquet(inputs / "melbourne.parquet")
    sensors.to_parquet(inputs / "melbourne_sensors.parquet")
    args = ("forecast", "backtest", "--observations", inputs / "melbourne.parquet",
            "--calendar", Path(cat["melbourne_calendar"].path), "--sensors", inputs / "melbourne_sensors.parquet",
            "--tz", city.tz, "--country", city.country, "--subdiv", city.subdiv, "--school-zone", "none",
            "--horizon", "24h", "--folds", 6, "--test-days", 183)
    data = f"Melbourne, {counts['sensor_id'].nunique()} sensors, 183 days"
    if RUN_LONG:
        result = run(*args)
        for method in ("forecaster", "seasonal_naive"):
            add("forecast", f"Melbourne {method.replace('_', ' ')} MAE, 24 h ahead",
                round(result["methods"][method]["mae"], 1), data=data, status=BY_COMMAND, how=command(*args))
        add("forecast", "Melbourne forecaster MAE / seasonal naive MAE",
            round(result["mae_ratio_to_seasonal_naive"], 2), data=data, status=BY_COMMAND, how=command(*args))
    else:
        add("forecast", "Melbourne forecaster and seasonal naive MAE, 24 h ahead", "", data=data,
            status=NOT_RUN, how=command(*args))

# %% [markdown]
# ## Response times
#
# San Francisco Fire Department unit responses, April 2020 (`safecity.dispatch.response.summarise`:
# bootstrap 95% CI of the median), and the simulated dispatch policies on the demo
# city (`safecity.dispatch.policies`: calls resampled jointly across policies).

# %%
from safecity.dispatch import response

sf = read_if_present(cat, "sf_fire_2020")
if sf is not None:
    sf_summary = response.summarise(sf, by=("unit_type",))
    for r in sf_summary.to_dict("records"):
        if r["measure"] in ("total_s", "travel_s") and r["unit_type"] in ("ENGINE", "MEDIC"):
            what = "call to on scene" if r["measure"] == "total_s" else "travel"
            add("response times", f"SF {r['unit_type']} median {what} (min)", round(r["median"] / 60, 1),
                r["median_lo"] / 60, r["median_hi"] / 60, data=f"SF fire April 2020, n={r['n']}",
                how="notebooks/dispatch_response_times.ipynb")
    sf_summary[sf_summary["measure"] == "total_s"]

# %%
from safecity.dispatch import policies as responsesim
from safecity.dispatch.network import RoadNetwork

demo = simulate.simulate_city(seed=0)
network = RoadNetwork.from_tables(demo.nodes, demo.edges)
calls, units = responsesim.calls_from_city(demo), responsesim.units_from_city(demo)
sim = responsesim.summarise(responsesim.compare_policies(network, calls, units), n_boot=500)
for r in sim.to_dict("records"):
    add("response times", f"simulated mean response, {r['policy']} (s)", round(r["mean_s"]),
        r["mean_lo"], r["mean_hi"], data=f"demo city, {len(calls)} calls, {len(units)} units",
        how="safecity dispatch simulate (README: Response-time simulation)")
sim

# %% [markdown]
# ## Fusion of alerts into incidents
#
# Pairwise precision and recall of "same incident" event pairs on the synthetic city,
# for two seeds (the spread between seeds is the uncertainty shown).

# %%
from safecity.data import geo
from safecity.evaluation.incidents import pairwise_scores
from safecity.incidents import fusion

fused = []
for seed in (0, 1):
    c = simulate.simulate_city(seed=seed, days=14, n_counters=2, zones=geo.builtin_zones())
    _, membership = fusion.fuse(c.events)
    fused.append({"seed": seed, "events": len(c.events), **pairwise_scores(membership, c.truth["incidents"])})
fused = pd.DataFrame(fused)
for what in ("precision", "recall", "exact"):
    add("fusion", f"pairwise {what}" if what != "exact" else "true incidents recovered exactly",
        round(fused[what].mean(), 3), fused[what].min(), fused[what].max(),
        data="synthetic city, 14 days, seeds 0 and 1 (low/high: the two seeds)",
        how="python -m pytest tests/test_fusion.py -s")
print(f"computed in {time.perf_counter() - clock:.0f} s")
fused

# %% [markdown]
# Every figure in one table (`panel serve notebooks/evaluation_report.ipynb`):

# %%
report = pd.DataFrame(figures)
report[["low", "high"]] = report[["low", "high"]].astype(float).round(3)
report["value"] = report["value"].astype(str)
print(report.drop(columns="reproduce").to_string())
pn.Column("# safecity evaluation report",
          pn.pane.Markdown(f"{(report['status'] != NOT_RUN).sum()} figures computed here, "
                           f"{(report['status'] == NOT_RUN).sum()} not run (they take minutes: "
                           "set `RUN_LONG`). Intervals are 95%."),
          pn.widgets.Tabulator(report, groupby=["area"], disabled=True, show_index=False,
                               layout="fit_data_table", width=1300)).servable()
