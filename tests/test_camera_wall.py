"""The camera wall: cameras played through their pipelines, blurred tiles, health, broken sources.

Real clips written with OpenCV (MJPG), real decoding, real pipelines; the browser
test serves ``dashboards/cameras.py`` and drives it in Debian's Chromium.
"""
import base64
import json
import re
import time
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, chromium_page, panel_serve

from safecity.app.camera_wall import (
    CameraWall,
    CameraWallView,
    HealthView,
    WallCamera,
    data_lag,
    health_html,
    tile_html,
)
from safecity.sim.clips import render_clip, write_clips

SIZE = (240, 180)
ARTIFACTS = ROOT / "test-artifacts"


def _camera(folder, scenario, camera_id=None) -> WallCamera:
    scene = json.loads((folder / f"{scenario}_scene.json").read_text())
    return WallCamera(camera_id or f"cam-{scenario}", folder / f"{scenario}.avi", scene, 10.0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two scripted clips at 240x180, a copy cut in half and one cut to its header."""
    out = tmp_path_factory.mktemp("clips")
    write_clips(out, scenarios=["loitering", "wrong_way"], size=SIZE, n_frames=60)
    data = (out / "wrong_way.avi").read_bytes()
    (out / "half.avi").write_bytes(data[: len(data) // 2])
    (out / "header.avi").write_bytes(data[:3000])
    for name in ("half", "header"):
        (out / f"{name}_scene.json").write_text((out / "wrong_way_scene.json").read_text())
    return out


def _decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_frames_advance_and_health_counts(clips):
    wall = CameraWall([_camera(clips, "loitering"), _camera(clips, "wrong_way")], loop=False)
    for _ in range(5):
        assert wall.step() == 2
    first = {cid: wall.tile(cid) for cid in wall.camera_ids}
    for _ in range(5):
        wall.step()
    health = wall.health().set_index("camera_id")
    for cid in wall.camera_ids:
        frames, jpeg = wall.tile(cid)
        assert frames == 10 and first[cid][0] == 5
        assert _decode(jpeg).shape == (SIZE[1], SIZE[0], 3)
        assert jpeg != first[cid][1], f"{cid}: the tile did not change"
        assert health.loc[cid, "status"] == "ok"
        assert health.loc[cid, "frames"] == 10 and health.loc[cid, "dropped"] == 0
        assert health.loc[cid, "last_frame_age_s"] >= 0


def test_wide_frames_are_shrunk_to_the_tile_width(clips):
    wall = CameraWall([_camera(clips, "loitering")], tile_width=120)
    wall.step()
    assert _decode(wall.tile("cam-loitering")[1]).shape == (90, 120, 3)


def test_broken_cameras_are_offline_and_the_others_go_on(clips):
    wall = CameraWall([_camera(clips, "loitering"),
                       WallCamera("cam-missing", clips / "nowhere.avi", {}, 10.0),
                       _camera(clips, "header", "cam-header"),
                       _camera(clips, "half", "cam-half")], loop=False)
    for _ in range(40):
        wall.step()
    h = wall.health().set_index("camera_id")
    assert h.loc["cam-loitering", "status"] == "ok" and h.loc["cam-loitering", "frames"] == 40
    assert h.loc["cam-missing", "status"] == "offline"
    assert "nowhere.avi" in h.loc["cam-missing", "error"]
    assert h.loc["cam-header", "status"] == "offline"
    assert "header.avi" in h.loc["cam-header", "error"]
    # cut in half: it plays what it has, then ends saying why
    assert h.loc["cam-half", "status"] == "ended"
    assert 0 < h.loc["cam-half", "frames"] < 60
    assert "truncated" in h.loc["cam-half", "error"]
    assert wall.tile("cam-missing") == (0, None)
    page = health_html(wall.health())
    for cid in ("cam-missing", "cam-header", "cam-half"):
        assert re.search(rf'<tr class="[^"]*camera-offline[^"]*" data-camera="{cid}"', page)
    assert not re.search(r'<tr class="[^"]*camera-offline[^"]*" data-camera="cam-loitering"', page)


def test_a_clip_that_ends_cleanly_loops(clips, tmp_path):
    write_clips(tmp_path, scenarios=["normal"], size=SIZE, n_frames=12)
    wall = CameraWall([_camera(tmp_path, "normal")], loop=True)
    for _ in range(30):
        wall.step()
    h = wall.health().iloc[0]
    assert h["status"] == "ok" and h["loops"] >= 2 and h["frames"] >= 24


def test_a_stream_that_never_answers_is_late_in_its_own_thread(clips):
    wall = CameraWall([_camera(clips, "loitering"),
                       WallCamera("cam-stream", "rtsp://127.0.0.1:9/none", {}, 10.0)],
                      late_after_s=1.0, loop=True)
    wall.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            h = wall.health().set_index("camera_id")
            if h.loc["cam-stream", "status"] == "late" and h.loc["cam-loitering", "frames"] >= 10:
                break
            time.sleep(0.2)
    finally:
        wall.stop()
    assert h.loc["cam-stream", "status"] == "late", h.to_dict()
    assert h.loc["cam-loitering", "status"] == "ok" and h.loc["cam-loitering", "frames"] >= 10
    assert 'camera-late" data-camera="cam-stream"' in health_html(h.reset_index())


def _sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def _drawn_outlines(scene: dict) -> np.ndarray:
    """Where the pipeline draws zone outlines and names (a few pixels wide): no texture to judge."""
    mask = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    for poly in scene["zones"].values():
        pts = np.round(np.asarray(poly, float)).astype(np.int32)
        cv2.polylines(mask, [pts], True, 1, 5)
        x, y = pts[0]
        mask[max(0, y):y + 16, max(0, x):x + 60] = 1
    return mask.astype(bool)


def _overlaps(a, b) -> bool:
    return a.x < b.x + b.w and b.x < a.x + a.w and a.y < b.y + b.h and b.y < a.y + a.h


def test_tiles_show_people_blurred(clips):
    """At every person's scripted box the tile is far smoother than the raw frame.

    Judged inside each box (its drawn outline and id are on the edge), for people
    standing apart (another's outline would cross the box) and away from zone outlines.
    """
    raw = render_clip("loitering", n_frames=60, size=SIZE)
    outlines = _drawn_outlines(raw.scene)
    wall = CameraWall([_camera(clips, "loitering")], loop=False)
    ratios = []
    for n in range(1, 60):
        wall.step()
        frames, jpeg = wall.tile("cam-loitering")
        if n < 25:  # let the background model and the tracker settle first
            continue
        tile = _decode(jpeg)
        index = frames - 1
        people = list(raw.tracks[(raw.tracks["frame"] == index) & (raw.tracks["cls"] == "person")]
                      .itertuples())
        for b in people:
            x0, y0 = int(b.x + 0.25 * b.w), int(b.y + 0.2 * b.h)
            x1, y1 = int(b.x + 0.75 * b.w), int(b.y + 0.8 * b.h)
            if b.h < 20 or x0 < 0 or y0 < 0 or x1 > SIZE[0] or y1 > SIZE[1] \
                    or outlines[y0:y1, x0:x1].any() or any(_overlaps(b, o) for o in people if o is not b):
                continue
            before = _sharpness(raw.frames[index][y0:y1, x0:x1])
            after = _sharpness(tile[y0:y1, x0:x1])
            assert after < 0.25 * before, f"frame {index} track {b.track_id}: {after:.0f} vs {before:.0f}"
            ratios.append(after / before)
    assert len(ratios) >= 10
    print(f"blurred/raw Laplacian variance at {len(ratios)} person boxes: median {np.median(ratios):.3f}, "
          f"max {max(ratios):.3f}")


def test_views_read_the_wall_without_running_it(clips):
    wall = CameraWall([_camera(clips, "loitering"), WallCamera("cam-missing", clips / "no.avi", {}, 10.0)])
    tiles, health = CameraWallView(wall), HealthView(wall)
    assert wall.health()["frames"].sum() == 0  # building the views processed nothing
    wall.step()
    tiles.refresh()
    health.refresh()
    assert 'src="data:image/jpeg;base64,' in tiles.tiles["cam-loitering"].object
    assert 'data-frames="1"' in tiles.tiles["cam-loitering"].object
    assert "status-offline" in tiles.tiles["cam-missing"].object
    assert "camera-offline" in health.pane.object
    # a camera id with markup is shown as text
    assert "<b>" not in tile_html("<b>x</b>", 0, None, "offline")


def test_one_wall_per_process(clips, tmp_path):
    from safecity.app.camera_wall import get_wall

    scene = json.loads((clips / "loitering_scene.json").read_text())
    config = tmp_path / "cameras.yml"
    config.write_text(json.dumps({"cameras": [{"id": "cam-a", "source": str(clips / "loitering.avi"), "fps": 10,
                                               "pixels_per_metre": scene["pixels_per_metre"]}]}))
    wall = get_wall(config, run=False)
    assert get_wall(config) is wall and wall.camera_ids == ["cam-a"]
    assert not wall._threads  # the second call found the first wall; it started nothing


def test_demo_cameras_use_the_data_folder_clips(tmp_path):
    from safecity.app.camera_wall import DEMO_SCENARIOS, demo_cameras

    write_clips(tmp_path / "clips", scenarios=DEMO_SCENARIOS, n_frames=5)  # as `safecity simulate` does
    cams = demo_cameras(tmp_path)
    assert [c.source for c in cams] == [tmp_path / "clips" / f"{s}.avi" for s in DEMO_SCENARIOS]
    with pytest.raises(FileNotFoundError, match="safecity simulate"):
        demo_cameras(tmp_path / "elsewhere")  # no clips there, and nothing to render them with
    rendered = demo_cameras(tmp_path / "elsewhere", render=write_clips)  # small ones are rendered
    assert all(c.scene["size"] == [240, 180] and Path(c.source).exists() for c in rendered)


def test_data_lag_behind_the_replay_clock(tmp_path):
    from safecity.app.engine import ReplayEngine
    from safecity.sim.city import simulate_city

    engine = ReplayEngine(simulate_city(seed=0, days=1), tmp_path)
    for table in ("observations", "events"):
        lag = data_lag(engine, table)
        ts = getattr(engine.city, table)["ts"]
        assert lag is not None and lag >= pd.Timedelta(0)
        assert lag == engine._now_utc() - ts[ts <= engine._now_utc()].max()
    wall = CameraWall([WallCamera("cam-missing", tmp_path / "no.avi", {}, 10.0)])
    shown = HealthView(wall, engine=engine).pane.object
    assert "newest observation" in shown and "newest event" in shown
    assert "data-late" not in shown  # the replay's counts are on time
    late = HealthView(wall, engine=engine, late_data_after=pd.Timedelta(0)).pane.object
    assert data_lag(engine) == pd.Timedelta(0) or "data-late" in late
    assert "behind the simulated clock" in HealthView(wall, engine=engine).pane.object


@pytest.mark.browser
def test_camera_page_in_chromium(clips, tmp_path):
    """Tiles render as images and change; the health panel lists every camera, marks the broken one."""
    scene = json.loads((clips / "loitering_scene.json").read_text())
    cameras = [{"id": cid, "source": str(clips / f"{name}.avi"), "fps": 10, "zones": scene["zones"],
                "pixels_per_metre": scene["pixels_per_metre"]}
               for cid, name in (("cam-loitering", "loitering"), ("cam-wrong-way", "wrong_way"),
                                 ("cam-broken", "header"))]
    config = tmp_path / "cameras.yml"
    config.write_text(json.dumps({"cameras": cameras}))  # JSON is YAML
    with panel_serve("cameras", {"SAFECITY_CAMERAS": str(config), "SAFECITY_DATA_DIR": ""}) as (url, _), \
            chromium_page((1200, 1000)) as (page, requests, failures):
        page.goto(url)
        img = page.locator('figure.camera-tile[data-camera="cam-loitering"] img.camera-frame')
        img.wait_for(timeout=60_000)
        first_src = img.get_attribute("src")
        first_n = int(page.locator('figure.camera-tile[data-camera="cam-loitering"]').get_attribute(
            "data-frames"))
        tile = page.locator('figure.camera-tile[data-camera="cam-loitering"]')
        page.wait_for_function(  # the tile advances: wait on its frame counter, not a fixed delay
            "([sel, n]) => { const find = r => { const e = r.querySelector(sel); if (e) return e;"
            " for (const x of r.querySelectorAll('*')) if (x.shadowRoot) { const f = find(x.shadowRoot);"
            " if (f) return f; } return null; }; const t = find(document);"
            " return t !== null && parseInt(t.getAttribute('data-frames')) > n; }",
            arg=['figure.camera-tile[data-camera="cam-loitering"]', first_n], timeout=60_000, polling=250)
        second_n = int(tile.get_attribute("data-frames"))
        assert second_n > first_n, f"the tile did not advance: frame {first_n} -> {second_n}"
        assert img.get_attribute("src") != first_src
        assert first_src.startswith("data:image/jpeg;base64,")
        shown = _decode(base64.b64decode(first_src.split(",", 1)[1]))
        assert shown is not None and shown.shape == (SIZE[1], SIZE[0], 3)
        # the image really is drawn on the page
        box = img.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
        assert page.locator('figure.camera-tile[data-camera="cam-wrong-way"] img.camera-frame').count() == 1
        rows = page.locator("table.camera-health-table tbody tr")
        assert sorted(rows.nth(k).get_attribute("data-camera") for k in range(rows.count())) == \
            ["cam-broken", "cam-loitering", "cam-wrong-way"]
        broken = page.locator('tr.camera-offline[data-camera="cam-broken"]')
        broken.wait_for(timeout=10_000)
        assert "offline" in broken.text_content() and "header.avi" in broken.text_content()
        assert page.locator("tr.camera-offline").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "camera_wall.png"), full_page=True)
    assert not failures, f"failed requests: {failures}"
    # blob: URLs are the page's own (bokeh's workers), named after its local origin
    hosts = {urlparse(u.removeprefix("blob:")).hostname for u in requests if not u.startswith("data:")}
    assert hosts == {"127.0.0.1"}, f"non-local requests: {hosts}"
