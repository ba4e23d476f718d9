"""The demo dashboard under a real ``panel serve``, fetched over HTTP and rendered in Chromium;
its maps (anomalies and events, crowd, forecast, moving units) checked on the data behind them."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import chromium_page, free_port, panel_serve, stop, wait_http

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("city") / "data"
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", str(out),
                    "--days", "3", "--no-clips"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def served(city_dir, tmp_path_factory):
    # a fast replay (10 simulated minutes a second), so that units visibly move in a few seconds
    env = {"SAFECITY_DATA_DIR": str(city_dir), "SAFECITY_REPLAY_SPEED": "600",
           "SAFECITY_STATE_DIR": str(tmp_path_factory.mktemp("state")), "SAFECITY_TILES_URL": ""}
    with panel_serve("operations", env) as page:
        yield page


def test_panel_serve_answers(served):
    _, html = served
    assert "safecity" in html and "Bokeh" in html


@pytest.fixture(scope="module")
def city(city_dir):
    from safecity.app.dashboard import load_city

    return load_city(city_dir)


def test_anomaly_map_puts_injected_spikes_on_top(city, city_dir):
    """In the window of each injected spike after the warm-up day, its sensor scores highest."""
    import pandas as pd

    from safecity.app import views
    from safecity.app.dashboard import CityView, city_models

    models = city_models(city)
    scores = models.scores
    truth = pd.read_parquet(city_dir / "truth" / "anomalies.parquet")
    first_day = city.observations["ts"].min().floor("D")
    spikes = truth[(truth["kind"] == "spike") & (truth["start"] >= first_day + pd.Timedelta(days=1))]
    assert len(spikes), "the test city should inject a spike after its first day"
    for s in spikes.itertuples():
        window = views.sensor_anomaly(scores, city.sensors, s.start - pd.Timedelta("1min"), s.end)
        top = window.sort_values("value", ascending=False)
        assert top["sensor_id"].iloc[0] == s.sensor_id, (s.anomaly_id, top.head(3).to_dict("records"))
        assert top["value"].iloc[0] > models.usual.threshold_, "the spike should be alarm-level"

    view = CityView(city, time=spikes["end"].iloc[0].tz_convert(None).to_pydatetime(),
                    window_hours=24)
    overlay = view.anomaly_map()
    events = [el for el in overlay if isinstance(el, views.hv.Points)][0]
    start, end = view._window()
    expected = city.events[(city.events["ts"] > start) & (city.events["ts"] <= end)].dropna(
        subset=["lon", "lat"])
    assert len(events) == len(expected) > 0
    assert f"{len(expected)} events" in overlay.opts.get().kwargs["title"]


def test_events_density_counts_the_window_events(city):
    """The City maps' events density draws the events of the maps' window, following it."""
    import holoviews as hv
    import numpy as np
    import pandas as pd

    from safecity.app import views
    from safecity.app.dashboard import CityView, sorted_events

    view = CityView(city, window_hours=24)
    assert sorted_events(city, None) is CityView(city).density.events, "one per process"
    for hours in (24, 6):
        view.window_hours = hours
        start, end = view._window()
        expected = views.events_between(city.events, start, end)
        assert len(expected) > 0
        counts = view.density.counts()
        assert int(counts.sum()) == len(view.density.window()) == len(expected)
        assert f"{len(expected):,} located events" in view.density_note()
        layers = view.density_map()[()]  # what the page receives: one shaded image, the zones
        drawn = [el for el in layers if isinstance(el, hv.RGB)][0]
        alpha = drawn.dimension_values("A", flat=False)
        assert np.array_equal(alpha > 0, counts.to_numpy() > 0), "a pixel drawn per pixel with events"
    view.time = (view._window()[1] - pd.Timedelta(hours=12)).tz_localize(None).to_pydatetime()
    start, end = view._window()
    assert len(view.density.window()) == len(views.events_between(city.events, start, end))

    # beyond max_event_markers, the anomaly map marks no event and points to the density
    crowded = CityView(city, time=view.time, window_hours=view.window_hours,
                       max_event_markers=len(view.density.window()) - 1)
    overlay = crowded.anomaly_map()
    assert not [el for el in overlay if isinstance(el, hv.Points) and len(el)]
    assert "see the events density" in overlay.opts.get().kwargs["title"]


def test_forecast_covers_the_next_hours_of_every_zone(city):
    import numpy as np
    import pandas as pd

    from safecity.app.dashboard import CityView

    view = CityView(city, forecast_hours=5)
    fc = view.forecast()
    start = view._window()[1].ceil("h")
    assert sorted(fc["ts"].unique()) == list(pd.date_range(start, periods=5, freq="h"))
    zones_with_counts = set(city.sensors.loc[city.sensors["kind"].isin(["camera", "counter"]),
                                             "zone"].dropna())
    assert set(fc["sensor_id"]) == zones_with_counts
    assert (fc["q10"] <= fc["q50"]).all() and (fc["q50"] <= fc["q90"]).all()
    # the map fills each zone with its peak median over those hours
    filled = [el for el in view.forecast_map() if el.vdims and el.vdims[0].name == "value"][0]
    shown = {d["zone"]: d["value"] for d in filled.data}
    names = city.zones.set_index("zone_id")["name"]
    peak = fc.groupby("sensor_id")["q50"].max()
    for zone_id, value in peak.items():
        assert np.isclose(shown[names[zone_id]], value)
    line = view.forecast_line()
    curve = [el for el in line if el.vdims[0].name == "q50"][0]
    assert view.zone in set(fc["sensor_id"]) and len(curve) == 5


def test_tiles_only_when_configured(city, monkeypatch):
    import holoviews as hv
    import numpy as np

    from safecity.app.dashboard import CityView

    monkeypatch.delenv("SAFECITY_TILES_URL", raising=False)
    offline = CityView(city)
    assert offline.tiles_url is None
    assert not any(isinstance(el, hv.Tiles) for el in offline.map())

    url = "http://tiles.city.example/{Z}/{X}/{Y}.png"
    monkeypatch.setenv("SAFECITY_TILES_URL", url)
    tiled = CityView(city)
    layers = list(tiled.anomaly_map())
    tiles = [el for el in layers if isinstance(el, hv.Tiles)]
    assert tiles and tiles[0].data == url
    # the zones are drawn in Web Mercator metres under the tiles
    zone = city.zones.iloc[0]
    x, y = zone.geometry.exterior.coords.xy if hasattr(zone.geometry, "exterior") else \
        zone.geometry.geoms[0].exterior.coords.xy
    ex, ny = hv.util.transform.lon_lat_to_easting_northing(np.asarray(x), np.asarray(y))
    outlines = [el for el in layers if isinstance(el, hv.Path)][0]
    first = outlines.split()[0].array([0, 1])
    assert np.allclose(first[: len(ex), 0], ex) and np.allclose(first[: len(ny), 1], ny)


def test_usual_week_is_drawn_in_the_city_time(city_dir, tmp_path):
    """A city directory whose city.yml is Melbourne draws its usual week in Melbourne time."""
    import pandas as pd

    from safecity.app.dashboard import CityView, load_city
    from safecity.config.city import DEFAULT_CITY, MELBOURNE
    from safecity.data import citydir

    shutil.copytree(city_dir, tmp_path / "melbourne")
    citydir.write_config(MELBOURNE, tmp_path / "melbourne")
    city = load_city(tmp_path / "melbourne")
    assert city.config == MELBOURNE and load_city(city_dir).config == DEFAULT_CITY

    def usual_week(tz):  # by hand: mean count per zone and hour of the week in ``tz``
        obs = city.observations[city.observations["metric"] == "people_count"].merge(
            city.sensors[["sensor_id", "zone"]], on="sensor_id")
        local = obs["ts"].dt.tz_convert(tz)
        obs = obs.assign(hour_of_week=local.dt.day_of_week * 24 + local.dt.hour,
                         zone=obs["zone"].fillna("(no zone)").astype(str))
        return obs.groupby(["hour_of_week", "zone"], observed=True)["value"].mean().reset_index()

    drawn = CityView(city).usual_week().data.reset_index(drop=True)
    pd.testing.assert_frame_equal(drawn, usual_week(MELBOURNE.tz), check_dtype=False)
    with pytest.raises(AssertionError):  # the same counts in Paris time give another week
        pd.testing.assert_frame_equal(drawn, usual_week(DEFAULT_CITY.tz), check_dtype=False)


def test_live_unit_map_pushes_markers_only_when_units_move(city_dir, tmp_path):
    from safecity.app.dashboard import LiveUnitMap, load_city
    from safecity.app.engine import ReplayEngine
    from safecity.data.citydir import read_city

    engine = ReplayEngine(read_city(city_dir), tmp_path, speed=600)
    live = LiveUnitMap(engine, load_city(city_dir).zones)
    sent = []
    live.pipe.add_subscriber(lambda data: sent.append(data))
    live.refresh()
    assert sent == [], "nothing moved, nothing is sent"
    before = engine.positions().set_index("unit_id")[["lon", "lat"]]
    engine.step(1.0)
    live.refresh()
    assert len(sent) == 1
    after = sent[0].set_index("unit_id")[["lon", "lat"]]
    assert set(after.index) == set(before.index)
    assert (after != before.loc[after.index]).any(axis=1).any(), "some unit should have moved"
    live.refresh()
    assert len(sent) == 1, "the same moment is not sent twice"


_SHADOW_CANVASES = (
    "() => { const all = []; const walk = r => { r.querySelectorAll('*').forEach(e => {"
    " if (e.tagName === 'CANVAS') all.push(e); if (e.shadowRoot) walk(e.shadowRoot); }); };"
    " walk(document); return all.filter(c => c.width > 100 && c.height > 100).length; }")
# The page's Bokeh models: plot titles, and the longitudes of every unit marker source.
_BOKEH_STATE = (
    "() => { const doc = window.Bokeh && window.Bokeh.documents[0]; if (!doc) return null;"
    " const ms = Array.from(doc._all_models.values());"
    " return {titles: ms.filter(m => m.type === 'Title').map(m => m.text),"
    "  units: ms.filter(m => m.type === 'ColumnDataSource' && m.data.unit_id !== undefined"
    "    && m.data.lon !== undefined).map(m => ({id: m.id, lon: Array.from(m.data.lon),"
    "    lat: Array.from(m.data.lat), unit: Array.from(m.data.unit_id)}))}; }")
#: True once a unit marker of the same source stands elsewhere than in ``first`` (a state).
_MARKER_MOVED = (
    f"(first) => {{ const now = ({_BOKEH_STATE})(); if (!now) return false;"
    " return now.units.some(b => first.units.some(a => a.id === b.id"
    "  && a.unit.length === b.unit.length && a.unit.every((u, i) => u === b.unit[i])"
    "  && a.lon.some((x, i) => x !== b.lon[i] || a.lat[i] !== b.lat[i]))); }")
_LIVE_TITLES = ("Incidents, units and cameras now",)
_MAP_TITLES = ("Anomalies and", "Crowd: people_count", "Forecast: peak per zone",
               "Forecast for", "Usual week by zone", "Events density")


def _wait_titles(page, titles) -> None:
    page.wait_for_function(
        f"() => {{ const s = ({_BOKEH_STATE})(); return s && {json.dumps(titles)}.every("
        f"t => s.titles.some(x => x.startsWith(t))); }}", timeout=180_000, polling=1000)


@pytest.mark.browser
def test_dashboard_renders_offline_in_chromium(served):
    """Every map draws, nothing is fetched from outside, and the unit markers move."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    url, _ = served
    with chromium_page((1400, 1000)) as (page, requests, failures):
        page.goto(url)
        page.wait_for_selector("canvas", timeout=60_000)
        _wait_titles(page, _LIVE_TITLES)
        first = page.evaluate(_BOKEH_STATE)
        try:  # wait for a marker to move (a loaded machine replays slower)
            page.wait_for_function(_MARKER_MOVED, arg=first, timeout=180_000, polling=1000)
        except PlaywrightTimeoutError:
            pass  # the assertion below says what did not happen
        now = page.evaluate(_BOKEH_STATE)
        moved = [(a["unit"][i], (a["lon"][i], a["lat"][i]), (b["lon"][i], b["lat"][i]))
                 for a, b in zip(first["units"], now["units"]) if a["id"] == b["id"]
                 and a["unit"] == b["unit"]
                 for i in range(len(a["unit"])) if (a["lon"][i], a["lat"][i]) != (b["lon"][i], b["lat"][i])]
        page.screenshot(path=str(ARTIFACTS / "operations.png"), full_page=True)
        # the city maps draw when their tab is opened (the first pays datashader's compilation)
        page.get_by_text("City maps", exact=True).first.click()
        _wait_titles(page, _MAP_TITLES)
        # every plot drawn before the picture: anomaly, crowd and forecast maps, forecast line,
        # usual week, events density
        page.wait_for_function(f"() => ({_SHADOW_CANVASES})() >= 6", timeout=120_000, polling=500)
        maps = page.evaluate(_BOKEH_STATE)
        n_canvas = page.evaluate(_SHADOW_CANVASES)
        page.screenshot(path=str(ARTIFACTS / "operations_maps.png"), full_page=True)
    outside = [u for u in requests if u.startswith("http")
               and urlparse(u).hostname not in ("127.0.0.1", "localhost")]
    assert not outside, f"requests left the machine: {outside}"
    assert not failures, failures
    assert all(any(x.startswith(t) for x in maps["titles"]) for t in _MAP_TITLES), maps["titles"]
    # anomaly, crowd and forecast maps, forecast line, usual week, events density
    assert n_canvas >= 6, f"{n_canvas} canvases drawn"
    assert first["units"] and maps["units"], "the live map and the crowd map show units"
    assert moved, "no unit marker moved while the engine replayed"


@pytest.mark.slow
def test_readme_demo_command_in_a_fresh_copy(tmp_path):
    """``bash dev.sh demo`` in a fresh copy of the repository creates everything and serves."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path / "safecity"
    for name in files:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "SAFECITY_DATA_DIR")}
    env.update(PORT=str(port), PATH=f"{Path(sys.base_prefix) / 'bin'}:{env['PATH']}")
    proc = subprocess.Popen(["bash", "dev.sh", "demo", "--address", "127.0.0.1",
                             "--allow-websocket-origin", f"127.0.0.1:{port}"],
                            cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        html = wait_http(f"http://127.0.0.1:{port}/operations", proc, timeout=480)
    finally:
        stop(proc)
    assert "safecity" in html
    assert (copy / ".venv" / "bin" / "safecity").exists()
    assert (copy / "demo-data" / "history" / "observations").is_dir()
