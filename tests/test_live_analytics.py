"""Live analytics on a synthetic city: anomalies scored bin by bin as they close, the forecast refitted
nightly and refreshed hourly, and the page's forecast map drawn from that model."""
from __future__ import annotations

import copy
import json
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from safecity.baseline.alarms import MIN_GROUP_SHARE
from safecity.baseline.live import LiveScorer, LiveScoring
from safecity.baseline.periods import alarm_periods
from safecity.baseline.replay import replay_live
from safecity.baseline.usual import UsualLevel
from safecity.data import geo, schema
from safecity.forecast.live import Due, ForecastPlan, ForecastSchedule
from safecity.forecast.model import GatheringForecaster
from safecity.sim import city as sim

LIVE_FROM = pd.Timestamp("2026-06-09", tz="UTC")  # the scorer's first bin
LIVE_TO = pd.Timestamp("2026-06-12", tz="Europe/Paris").tz_convert("UTC")  # a local midnight: steps complete
FORECAST_FROM = pd.Timestamp("2026-06-11", tz="UTC")  # the forecaster's history ends here
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def city():
    return sim.simulate_city(seed=0, days=12, n_units=0, zones=geo.builtin_zones(), freq="1h")


@pytest.fixture(scope="module")
def counts(city):
    return city.observations[city.observations["metric"] == "people_count"]


@pytest.fixture(scope="module")
def usual(city, counts):
    return UsualLevel(rate=0.5).fit(counts[counts["ts"] < LIVE_FROM], calendar=city.calendar,
                                    sensors=city.sensors)


@pytest.fixture(scope="module")
def live_rows(counts):
    return counts[(counts["ts"] >= LIVE_FROM) & (counts["ts"] < LIVE_TO)]


def _bin_by_bin(scorer: LiveScorer, rows: pd.DataFrame, lateness: pd.Timedelta) -> pd.DataFrame:
    """Each bin's rows posted in a shuffled order during the bin, then the clock passes its close."""
    out = []
    for ts, batch in rows.groupby("ts"):
        shuffled = batch.sample(frac=1, random_state=int(ts.value % 1000))
        half = len(shuffled) // 2
        out.append(scorer.add(shuffled.iloc[:half], ts + HOUR / 2))
        out.append(scorer.add(shuffled.iloc[half:], ts + HOUR + lateness))
    return pd.concat(out, ignore_index=True)


@pytest.fixture(scope="module")
def bin_by_bin(usual, live_rows, city):
    config = LiveScoring(lateness="5min", keep="7D")
    scorer = LiveScorer(copy.deepcopy(usual), sensors=city.sensors, config=config)
    events = _bin_by_bin(scorer, live_rows, pd.Timedelta(config.lateness))
    return scorer, events


def test_bin_by_bin_gives_the_flags_and_alarms_of_the_replay(usual, live_rows, bin_by_bin):
    scorer, events = bin_by_bin
    batch_model = copy.deepcopy(usual)
    departures = replay_live(batch_model, live_rows)

    # Every bin scored as the replay scores it: the live path is the replay's code.
    live = scorer.scores().reindex(index=departures.index, columns=departures.sensor_ids)
    replay = departures.scores()
    assert scorer.scored_bins == len(replay) == 70
    np.testing.assert_array_equal(np.isnan(live.to_numpy()), np.isnan(replay.to_numpy()))
    np.testing.assert_allclose(live.to_numpy(), replay.to_numpy(), rtol=0, atol=0, equal_nan=True)
    flags = live.abs() > usual.threshold_
    assert flags.to_numpy().sum() == (replay.abs() > batch_model.threshold_).to_numpy().sum() > 0
    # ... and the model learnt the same days (partial_fit at each local midnight, once the day is scored).
    np.testing.assert_array_equal(scorer.model.level_, batch_model.level_)

    # The alarms raised are the replay's alarm periods, each at its first bin.
    periods = alarm_periods(batch_model, departures)
    assert len(periods) > 0 and periods["group"].notna().any()
    expected = {f"anomaly-people_count-{p.sensor_id if isinstance(p.sensor_id, str) else 'group-' + p.group}-"
                f"{p.direction}-{p.start:%Y%m%dT%H%MZ}" for p in periods.itertuples()}
    assert set(events["event_id"]) == expected
    assert events["event_id"].is_unique


def test_anomaly_events_carry_the_model_and_its_calibrated_rate(usual, city, bin_by_bin):
    _, events = bin_by_bin
    schema.validate(events, "events")
    assert set(events["kind"]) == {"anomaly"}
    sensors = city.sensors.set_index("sensor_id")
    for row in events.itertuples():
        d = json.loads(row.details)
        assert d["live"] is True and d["threshold"] == pytest.approx(usual.threshold_, abs=1e-3)
        assert d["observed"] is not None and d["expected"] is not None
        assert d["interval"][0] <= d["expected"] <= d["interval"][1]
        assert row.score > (usual.threshold_ if isinstance(row.sensor_id, str) else MIN_GROUP_SHARE - 1e-9)
        if isinstance(row.sensor_id, str):
            assert d["alarm_rate_per_sensor_day"] == usual.rate
            assert d["calibrated_rate"] == pytest.approx(usual.realised_rate_, abs=1e-3)
            assert (row.lon, row.lat) == pytest.approx(tuple(sensors.loc[row.sensor_id, ["lon", "lat"]]))
            assert (d["observed"] > d["expected"]) == (d["direction"] == "high")
        else:
            assert d["alarm_rate_per_group_day"] == usual.rate and len(d["sensors"]) >= usual.min_group_sensors


def test_a_bin_is_scored_once_late_rows_are_counted_and_ids_do_not_depend_on_batching(usual, live_rows, city,
                                                                                     bin_by_bin):
    _, events = bin_by_bin
    config = LiveScoring(lateness="5min", keep="7D")
    scorer = LiveScorer(copy.deepcopy(usual), sensors=city.sensors, config=config)
    first = live_rows[live_rows["ts"] == LIVE_FROM]

    # Not closed: nothing scored, however often it is asked.
    assert scorer.add(first, LIVE_FROM + HOUR).empty and scorer.scored_bins == 0
    scorer.add(first.iloc[:0], LIVE_FROM + HOUR + pd.Timedelta("4min"))
    assert scorer.scored_bins == 0
    # Closed: scored once, and never again.
    scorer.add(first.iloc[:0], LIVE_FROM + HOUR + pd.Timedelta("5min"))
    scorer.add(first.iloc[:0], LIVE_FROM + HOUR + pd.Timedelta("6min"))
    assert scorer.scored_bins == 1 and scorer.late_rows == 0
    before = scorer.scores().copy()
    # A late row for the scored bin is counted and ignored.
    late = first.iloc[:3].assign(value=10_000.0)
    assert scorer.add(late, LIVE_FROM + 2 * HOUR).empty
    assert scorer.late_rows == 3 and scorer.scored_bins == 1
    pd.testing.assert_frame_equal(scorer.scores(), before)

    # The rest of the three days in one post, long after: the same events, row for row, as bin by bin.
    rest = live_rows[live_rows["ts"] > LIVE_FROM]
    at_once = scorer.add(rest, live_rows["ts"].max() + 2 * HOUR)
    assert scorer.scored_bins == 70
    pd.testing.assert_frame_equal(at_once.sort_values("event_id", ignore_index=True),
                                  events[events["ts"] > LIVE_FROM].sort_values("event_id", ignore_index=True))


def test_a_restarted_scorer_gives_the_same_rows_and_raises_nothing_the_store_has(usual, live_rows, city,
                                                                                bin_by_bin):
    _, events = bin_by_bin
    day = live_rows[live_rows["ts"] < LIVE_FROM + pd.Timedelta(days=1)]
    now = day["ts"].max() + 2 * HOUR
    again = LiveScorer(copy.deepcopy(usual), sensors=city.sensors, config=LiveScoring(lateness="5min"))
    rescored = again.add(day, now)
    first_day = events[events["ts"] < LIVE_FROM + pd.Timedelta(days=1)]
    assert len(first_day) > 0
    pd.testing.assert_frame_equal(rescored.sort_values("event_id", ignore_index=True),
                                  first_day.sort_values("event_id", ignore_index=True))
    told = LiveScorer(copy.deepcopy(usual), sensors=city.sensors, config=LiveScoring(lateness="5min"))
    told.remember(events)
    assert told.add(day, now).empty and told.scored_bins == 24


def test_from_history_fits_on_closed_bins_and_buffers_the_open_one(counts, city):
    now = LIVE_FROM + pd.Timedelta(minutes=30)
    upto = counts[counts["ts"] <= LIVE_FROM]  # the 00:00 bin is still open at 00:30
    scorer = LiveScorer.from_history(upto, now, calendar=city.calendar, sensors=city.sensors, rate=0.5)
    assert scorer.model.end_ == LIVE_FROM and scorer.next_bin == LIVE_FROM and scorer.scored_bins == 0
    scorer.add(upto.iloc[:0], LIVE_FROM + HOUR + pd.Timedelta("2min"))
    scores = scorer.scores()
    assert scorer.scored_bins == 1 and scorer.late_rows == 0
    assert scores.loc[LIVE_FROM].notna().sum() == (upto["ts"] == LIVE_FROM).sum()


# =========================================================================== forecast

TEMPLATE = GatheringForecaster(max_iter=50, max_samples=20_000)


@pytest.fixture(scope="module")
def schedule(city):
    s = ForecastSchedule(TEMPLATE, sensors=city.sensors)
    obs = city.observations
    s.refit(obs[obs["ts"] < FORECAST_FROM], city.calendar, now=FORECAST_FROM + pd.Timedelta("3h"))
    return s


def test_refresh_gives_the_next_24_hours_per_zone_with_intervals(schedule, city):
    now = FORECAST_FROM + pd.Timedelta("10h20min")
    obs = city.observations
    table, events = schedule.refresh(now, observations=obs[(obs["ts"] >= FORECAST_FROM) & (obs["ts"] < now)])
    zones = set(city.sensors.loc[city.sensors["kind"].isin(sim.COUNT_KINDS), "zone"].dropna())
    assert set(table["sensor_id"]) == zones
    assert sorted(table["ts"].unique()) == list(pd.date_range(now.ceil("h"), periods=24, freq="h"))
    assert (table["origin"] == now.ceil("h")).all()
    assert (table["q10"] <= table["q50"]).all() and (table["q50"] <= table["q90"]).all()
    assert (table["q90"] > table["q10"]).mean() > 0.9  # an interval, not a point
    assert events.empty  # no capacity, no alert
    assert schedule.latest() is table
    # The whole hours received since the fit are the lags: the hours a day after them read them.
    without = schedule.model.predict(table[["ts", "sensor_id"]])
    assert (without["ts"] == table["ts"]).all() and (without["sensor_id"] == table["sensor_id"]).all()
    lagged = (table["ts"] >= FORECAST_FROM + pd.Timedelta("1D")) & (table["ts"] < now.floor("h") + pd.Timedelta("1D"))
    assert lagged.sum() == 10 * len(zones)
    assert not np.allclose(table.loc[lagged, "q50"], without.loc[lagged, "q50"])
    assert np.allclose(table.loc[~lagged & (table["ts"] < FORECAST_FROM + pd.Timedelta("1D")), "q50"],
                       without.loc[~lagged & (table["ts"] < FORECAST_FROM + pd.Timedelta("1D")), "q50"])


def test_alerts_are_raised_once_per_gathering_with_ids_independent_of_the_refresh(schedule, city):
    now = FORECAST_FROM + pd.Timedelta("10h")
    table = schedule.model.predict(
        pd.DataFrame({"ts": pd.date_range(now, periods=24, freq="h")}))
    ahead = table[table["ts"] >= now + pd.Timedelta("6h")]
    capacity = 0.9 * ahead.groupby("sensor_id")["q90"].max()
    fresh = ForecastSchedule(TEMPLATE, sensors=city.sensors, capacity=capacity, model=schedule.model)
    seen = []
    for hour in range(4):
        _, events = fresh.refresh(now + hour * HOUR)
        schema.validate(events, "events")
        seen.append(events)
    raised = pd.concat(seen, ignore_index=True)
    assert len(seen[0]) >= len(capacity) // 2
    assert raised["event_id"].is_unique
    assert all("-at-" not in i for i in raised["event_id"])  # the issue time is not in the id
    for zone, rows in raised.groupby("sensor_id"):  # one alert per run of hours above capacity
        spans = sorted((pd.Timestamp(json.loads(d)["start"]), pd.Timestamp(json.loads(d)["end"]))
                       for d in rows["details"])
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), zone
    first = seen[0].iloc[0]
    d = json.loads(first["details"])
    assert first["event_id"] == f"gathering_forecast-{first['sensor_id']}-{first['ts']:%Y%m%dT%H%MZ}"
    assert d["interval"]["q10"] <= d["expected_peak"] <= d["interval"]["q90"]
    assert np.isfinite(first["lon"]) and first["score"] > 1

    # After a restart: the same refresh gives the same ids, and those the store has are not raised again.
    restarted = ForecastSchedule(TEMPLATE, sensors=city.sensors, capacity=capacity, model=schedule.model)
    assert list(restarted.refresh(now)[1]["event_id"]) == list(seen[0]["event_id"])
    remembered = ForecastSchedule(TEMPLATE, sensors=city.sensors, capacity=capacity, model=schedule.model)
    remembered.remember(raised)
    assert remembered.refresh(now + 3 * HOUR)[1].empty


def test_the_schedule_refits_once_a_night_and_refreshes_once_an_hour(city):
    obs = city.observations
    start = pd.Timestamp("2026-06-10 20:00", tz="Europe/Paris").tz_convert("UTC")
    s = ForecastSchedule(TEMPLATE, sensors=city.sensors, plan=ForecastPlan(refit_at="03:00"))
    done = []
    for now in pd.date_range(start, start + pd.Timedelta("31h"), freq="10min"):
        while (due := s.due(now)) is not Due.NOTHING:
            if due is Due.REFIT:
                s.refit(obs[obs["ts"] < now.floor("h")], city.calendar, now=now)
            else:
                s.refresh(now, observations=obs[(obs["ts"] >= now - pd.Timedelta("1D")) & (obs["ts"] < now)])
            done.append((due, now))
    refits = [t.tz_convert("Europe/Paris") for d, t in done if d is Due.REFIT]
    refreshes = [t for d, t in done if d is Due.REFRESH]
    # the first at once (no model yet), then at 03:00 local each night
    assert [f"{t:%d %H:%M}" for t in refits] == ["10 20:00", "11 03:00", "12 03:00"]
    hours = pd.DatetimeIndex(refreshes).floor("h")
    assert hours.is_unique and len(hours) == 32  # every hour, once (a refit's refresh is that hour's)
    assert all(t == t.floor("h") for t in refreshes)


def test_a_background_refit_is_not_asked_twice_and_the_old_model_serves_meanwhile(schedule, city):
    s = ForecastSchedule(TEMPLATE, sensors=city.sensors, model=schedule.model)
    now = FORECAST_FROM + pd.Timedelta("1D") + pd.Timedelta("3h")  # the next night's refit time
    assert s.due(now) is Due.REFIT
    obs = city.observations
    refreshed = threading.Event()

    def load():  # the refit reads its history only once the old model has served a refresh
        assert refreshed.wait(timeout=300)
        return obs[obs["ts"] < now.floor("h")], city.calendar

    thread = s.start_refit(load, now)
    assert s.due(now) is Due.REFRESH  # never REFIT while one runs
    table, _ = s.refresh(now)  # the old model serves meanwhile
    assert len(table) and s.due(now) is Due.NOTHING
    refreshed.set()
    thread.join(timeout=300)
    assert not thread.is_alive() and s.last_error is None
    assert s.model is not schedule.model and s.due(now) is Due.REFRESH  # the new model's forecast is due


def test_a_failed_refit_is_kept_and_asked_again_later(city):
    s = ForecastSchedule(TEMPLATE, sensors=city.sensors)
    now = FORECAST_FROM
    obs = city.observations
    thread = s.start_refit(lambda: (obs[obs["ts"] < LIVE_FROM - pd.Timedelta("6D")], None), now)
    thread.join(timeout=300)
    assert isinstance(s.last_error, ValueError) and s.model is None
    assert s.due(now + pd.Timedelta("30min")) is Due.NOTHING
    assert s.due(now + HOUR) is Due.REFIT


# =========================================================================== the page's forecast map

@pytest.fixture(scope="module")
def view_city(city):
    return SimpleNamespace(sensors=city.sensors, observations=city.observations, units=city.units,
                           zones=city.zones, events=city.events, calendar=city.calendar, config=city.config)


def test_the_forecast_map_shows_the_live_model_with_its_interval(view_city, schedule):
    from safecity.app.dashboard import CityView

    now = FORECAST_FROM + pd.Timedelta("5h")
    table, _ = schedule.refresh(now)
    view = CityView(view_city, forecasts=schedule, forecast_hours=6)
    fc, from_model = view.forecast_source()
    assert from_model and fc["ts"].min() == now and fc["ts"].nunique() == 6
    overlay = view.forecast_map()
    assert "GatheringForecaster, issued" in overlay.opts.get().kwargs["title"]
    filled = [el for el in overlay if el.vdims and el.vdims[0].name == "value"][0]
    assert [d.name for d in filled.vdims] == ["value", "zone", "low", "high"]
    names = view_city.zones.set_index("zone_id")["name"]
    shown = {d["zone"]: (d["low"], d["value"], d["high"]) for d in filled.data}
    for zone, rows in fc.groupby("sensor_id"):
        top = rows.loc[rows["q50"].idxmax()]
        assert shown[names[zone]] == pytest.approx((top["q10"], top["q50"], top["q90"]))
    assert "GatheringForecaster" in view.forecast_line().opts.get().kwargs["title"]


def test_before_the_first_fit_the_map_shows_the_profile_and_says_so(view_city, city):
    from safecity.app.dashboard import CityView

    waiting = ForecastSchedule(TEMPLATE, sensors=city.sensors)  # never fitted
    view = CityView(view_city, forecasts=waiting, forecast_hours=4)
    fc, from_model = view.forecast_source()
    assert not from_model and fc["ts"].nunique() == 4
    assert "time-of-week profile" in view.forecast_map().opts.get().kwargs["title"]


def test_the_engine_scores_closed_bins_and_posts_anomalies_through_ingest(tmp_path):
    """A replayed city with four days behind it: the engine's analytics fit the usual level in
    the background, score each bin as it closes, and what they raise is fused like any event."""
    import time

    from safecity.app.engine import ReplayEngine
    from safecity.data import geo
    from safecity.sim import city as sim

    city = sim.simulate_city(seed=3, days=6, n_counters=6, zones=geo.builtin_zones())
    start = city.observations["ts"].min() + pd.Timedelta(days=4)
    engine = ReplayEngine(city, tmp_path, start=start, speed=3600)
    analytics = engine.start_analytics(min_days=3)
    deadline = time.monotonic() + 300
    while analytics.scorer is None:  # the fit runs in a background thread
        assert time.monotonic() < deadline and analytics.last_error is None, analytics.last_error
        engine.housekeeping()
        time.sleep(0.2)
    for _ in range(24):  # one simulated day, an hour per step
        engine.step(1.0)
    status = analytics.status()
    assert status["usual_level"] == "scoring" and status["scored_bins"] > 0
    raised = engine.inbox.read("events")
    raised = raised[raised["kind"] == "anomaly"]
    members = {e for ids in engine.incidents["event_ids"] for e in json.loads(ids)}
    assert set(raised["event_id"]) <= members  # every anomaly raised went into an incident
    print(f"\nlive analytics on the replay: {status['scored_bins']} bins scored, "
          f"{len(raised)} anomaly events raised and fused")
