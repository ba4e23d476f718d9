"""Camera workers feeding a live server: rows through the ingest API, blurred tiles and health.

Real video (the first seconds of PETS 2009 re-encoded with OpenCV), real pipelines,
a real Tornado server on a free port in a background thread: its ``/api/v1/events``
and ``/api/v1/observations`` store posted rows into a real ``Store`` (checked with
``parse_rows``, as the live API does), and its ``/api/v1/cameras/{id}`` is
``camera_feed.feed_handler`` over a ``CameraFeed``.
"""
import asyncio
import base64
import json
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pandas as pd
import pytest
import tornado.web
from click.testing import CliRunner
from conftest import free_port, shared_data, short_clip

from safecity.app.camera_feed import MAX_TILE_BYTES, CameraFeed, feed_handler
from safecity.app.camera_runner import (
    CameraPoster,
    SinkStore,
    TilePublisher,
    rows_for_post,
    run_camera,
)
from safecity.app.camera_wall import CameraWallView, HealthView
from safecity.cli import main
from safecity.config.cameras import load_cameras
from safecity.data.store import Store
from safecity.ingest.client import HttpSink, StoreSink
from safecity.ingest.rows import RowError, parse_rows
from safecity.video.pipeline import CameraPipeline
from safecity.video.sources import VideoSource

TOKEN = "camera-worker-token"
ROWS_ONLY = "rows-only-token"  # may post events and observations, not camera tiles
FPS, CLIP_FRAMES = 10, 60
START = pd.Timestamp("2026-06-01T08:00:00Z")


# --------------------------------------------------------------------------- a real server


class _Rows(tornado.web.RequestHandler):
    """``POST /api/v1/{events|observations}`` into a real store, as the live API does:
    checked by ``parse_rows``, 202 once stored, 400 naming the row and field."""

    def initialize(self, data_dir, refuse=False):
        self.data_dir, self.refuse = data_dir, refuse

    def check_xsrf_cookie(self):
        pass

    def post(self, table):
        if self.request.headers.get("Authorization") not in (f"Bearer {TOKEN}", f"Bearer {ROWS_ONLY}"):
            self.set_status(401)
            return self.finish({"error": "no valid token"})
        try:
            if self.refuse:  # a server-side schema the worker does not follow: a bug, not a retry
                raise RowError("has no zone: add Z or an offset such as +01:00", 0, "ts")
            rows = parse_rows(table, json.loads(self.request.body))
        except RowError as err:
            self.set_status(400)
            return self.finish({"error": str(err), "row": err.row, "field": err.field})
        accepted = Store(self.data_dir).append(table, rows)
        self.set_status(202)
        self.finish({"accepted": accepted, "duplicates": len(rows) - accepted})


def _check_token(request, table):
    """The API's check, reduced to two bearer strings: one may post tiles, one may not."""
    given = request.headers.get("Authorization", "")
    if given == f"Bearer {TOKEN}":
        return "worker"
    if given == f"Bearer {ROWS_ONLY}":
        raise tornado.web.HTTPError(403, f"this token may not write {table}")
    raise tornado.web.HTTPError(401, "no valid token")


class Server:
    """A Tornado application serving rows and the camera feed on ``port``, in its own thread."""

    def __init__(self, data_dir, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.feed = CameraFeed()
        self.app = tornado.web.Application([
            (r"/api/v1/(events|observations)", _Rows, {"data_dir": data_dir}),
            (r"/refusing/api/v1/(events|observations)", _Rows, {"data_dir": data_dir, "refuse": True}),
            (r"/api/v1/cameras/([A-Za-z0-9_.-]+)", feed_handler(self.feed, _check_token)),
        ])
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    async def _serve(self):
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = self.app.listen(self.port, address="127.0.0.1")
        self._ready.set()
        await self._stop.wait()
        server.stop()

    def __enter__(self):
        self._thread.start()
        assert self._ready.wait(30), "the test server did not start"
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def _post(url, body: bytes, token=TOKEN):
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


# --------------------------------------------------------------------------- a real clip


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    """The first 6 s of PETS 2009 (re-encoded by OpenCV) and a one-camera file watching loitering."""
    source = shared_data("video/pets2009_s2l1/vtest.avi")
    folder = tmp_path_factory.mktemp("pets-install")
    short_clip(source, folder / "clip.avi", CLIP_FRAMES, FPS)
    (folder / "cameras.yml").write_text(f"""name: pets-test
cameras:
  - id: pets-1
    source: clip.avi
    fps: {FPS}
    start: {START.isoformat()}
    position: {{lon: 5.37, lat: 43.29}}
    zones:
      plaza: [[0, 100], [480, 100], [480, 360], [0, 360]]
    loitering_limit_s: 1
    pixels_per_metre: 20
    detectors: [loitering]
""")
    (folder / "token").write_text(TOKEN + "\n")
    return folder


@pytest.fixture(scope="module")
def both_ways(installation, tmp_path_factory):
    """``video run`` on the clip twice: into --data-dir, and to a live server with --server."""
    direct, served = tmp_path_factory.mktemp("direct"), tmp_path_factory.mktemp("served")
    config = str(installation / "cameras.yml")
    first = CliRunner().invoke(main, ["video", "run", "--config", config, "--data-dir", str(direct),
                                      "--bin", "2"])
    assert first.exit_code == 0, first.output
    with Server(served) as server:
        second = CliRunner().invoke(main, ["video", "run", "--config", config, "--server", server.url,
                                           "--token", str(installation / "token"), "--bin", "2"])
    assert second.exit_code == 0, second.output
    return (Store(direct), json.loads(first.output.strip().splitlines()[-1]),
            Store(served), json.loads(second.output.strip().splitlines()[-1]), server.feed)


def _table(store, table):
    df = store.read(table)
    keys = ["event_id"] if table == "events" else ["ts", "sensor_id", "metric"]
    return df.sort_values(keys).reset_index(drop=True)


def test_rows_posted_to_the_server_are_those_written_to_the_store(both_ways):
    direct, direct_summary, served, summary, _ = both_ways
    for table in ("observations", "events"):
        pd.testing.assert_frame_equal(_table(served, table), _table(direct, table))
    assert summary["frames"] == direct_summary["frames"] == CLIP_FRAMES
    assert len(_table(served, "events")) == summary["events"] > 0
    assert summary["posted"] == {"observations": {"accepted": summary["observations"], "duplicates": 0},
                                 "events": {"accepted": summary["events"], "duplicates": 0}}


def test_the_worker_reports_its_health_and_tile_to_the_feed(both_ways):
    *_, summary, feed = both_ways
    assert feed.camera_ids == ["pets-1"]
    row = feed.health().iloc[0]
    assert row["status"] == "ended" and row["frames"] == CLIP_FRAMES
    assert row["events"] == summary["events"] and row["last_frame_age_s"] is not None
    assert feed.last_seen("pets-1") is not None
    frames, jpeg = feed.tile("pets-1")
    assert 1 <= frames <= CLIP_FRAMES and jpeg.startswith(b"\xff\xd8\xff")


def test_posted_tiles_are_the_pipelines_blurred_rendering(installation, tmp_path):
    camera = load_cameras(installation / "cameras.yml")[0]
    with Server(tmp_path) as server:
        tiles = TilePublisher(camera.id, CameraPoster(server.url, TOKEN), period_s=0.0)  # every frame
        summary = run_camera(camera, SinkStore(HttpSink(server.url, TOKEN)), bin_s=2, max_frames=40,
                             tiles=tiles)
        frames, posted = server.feed.tile(camera.id)
    assert summary["status"] == "ok" and tiles.failures == 0 and tiles.posts == 41  # 40 tiles + the end
    assert frames == 40
    # the same frames through a pipeline of our own: the 40th frame's blurred tile, byte for byte
    pipe = CameraPipeline(camera, bin_s=2)
    source = VideoSource.from_config(camera)
    for k, frame in zip(range(40), source):
        result = pipe.process(frame)
    assert not result.warming_up and len(result.detections)
    assert posted == pipe.tile(frame.image, result)
    ok, raw = cv2.imencode(".jpg", cv2.resize(frame.image, (360, 270), interpolation=cv2.INTER_AREA),
                           [cv2.IMWRITE_JPEG_QUALITY, 70])
    assert posted != raw.tobytes()
    shown = cv2.imdecode(np.frombuffer(posted, np.uint8), cv2.IMREAD_COLOR)
    blurred = cv2.resize(pipe.display(frame.image, result, annotate=False), (360, 270),
                         interpolation=cv2.INTER_AREA)
    raw_small = cv2.resize(frame.image, (360, 270), interpolation=cv2.INTER_AREA)
    people = pipe.display(frame.image, result, annotate=False) != frame.image
    assert people.any()  # the blur changed the people's pixels, and the tile shows the blurred ones
    mask = cv2.resize(people.any(axis=2).astype(np.uint8), (360, 270)) > 0
    assert np.abs(shown[mask].astype(int) - blurred[mask]).mean() < \
        np.abs(shown[mask].astype(int) - raw_small[mask]).mean()


def test_looping_twice_keeps_event_ids_unique_and_bins_increasing(installation, tmp_path):
    camera = load_cameras(installation / "cameras.yml")[0]
    sink = SinkStore(StoreSink(tmp_path))
    # 4 s bins: the clip's 6 s end inside a bin, which the second loop continues
    summary = run_camera(camera, sink, bin_s=4, loop=True, max_frames=2 * CLIP_FRAMES)
    assert summary["status"] == "ok" and summary["loops"] == 1 and summary["frames"] == 2 * CLIP_FRAMES
    assert sink.posted["events"]["duplicates"] == 0 and sink.posted["observations"]["duplicates"] == 0
    store = Store(tmp_path)
    events, obs = store.read("events"), store.read("observations")
    assert events["event_id"].is_unique and len(events) == summary["events"]
    second_loop = START + pd.Timedelta(seconds=CLIP_FRAMES / FPS)
    assert (events["ts"] < second_loop).any() and (events["ts"] >= second_loop).any()
    assert len(obs) == summary["observations"]
    for _, series in obs.groupby(["sensor_id", "metric"]):
        assert series["ts"].is_unique
    bins = sorted(obs["ts"].unique())
    assert bins == [START + pd.Timedelta(seconds=s) for s in (0, 4, 8)]  # 12 s of frames, one run of bins


def test_a_refused_batch_stops_the_camera_with_the_servers_reason(installation, tmp_path):
    with Server(tmp_path) as server:
        result = CliRunner().invoke(main, [
            "video", "run", "--config", str(installation / "cameras.yml"),
            "--server", f"{server.url}/refusing", "--token", str(installation / "token"), "--bin", "2"])
    assert result.exit_code != 0
    summary = json.loads(result.output.strip().splitlines()[0])
    assert summary["status"] == "failed" and summary["frames"] <= 21  # stopped at its first batch
    assert "refused" in summary["error"] and "HTTP 400" in summary["error"] and "'ts'" in summary["error"]
    assert TOKEN not in result.output
    assert Store(tmp_path).read("observations").empty


def test_a_server_that_is_down_is_waited_for_and_no_row_is_dropped(tmp_path):
    port = free_port()
    sink = SinkStore(HttpSink(f"http://127.0.0.1:{port}", TOKEN, retries=0), retry_pause_s=0.2)
    rows = pd.DataFrame({"ts": [START, START], "sensor_id": ["pets-1:plaza"] * 2,
                         "metric": ["people_count", "occupancy"], "value": [3.0, 0.25]})
    done = {}
    worker = threading.Thread(target=lambda: done.setdefault("accepted", sink.append("observations", rows)))
    worker.start()
    deadline = time.monotonic() + 60
    while sink.waits < 2 and time.monotonic() < deadline:  # refused connections, retried
        time.sleep(0.05)
    assert sink.waits >= 2 and worker.is_alive()
    with Server(tmp_path, port=port):
        worker.join(60)
    assert done == {"accepted": 2}
    stored = Store(tmp_path).read("observations")
    assert sorted(stored["value"]) == [0.25, 3.0]


# --------------------------------------------------------------------------- the feed's handler


def _jpeg(width=64, height=48) -> bytes:
    image = np.full((height, width, 3), 128, np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_the_feed_refuses_what_is_not_a_small_jpeg_from_a_camera_token(tmp_path):
    good = {"health": {"status": "ok", "frames": 10, "fps": 9.5}}
    with Server(tmp_path) as server:
        def post(camera_id, body, token=TOKEN):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            return _post(f"{server.url}/api/v1/cameras/{camera_id}", data, token)

        huge = b"\xff\xd8\xff" + bytes(MAX_TILE_BYTES)
        status, answer = post("gate-1", {**good, "tile_jpeg_b64": base64.b64encode(huge).decode()})
        assert status == 413, answer
        png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
        status, answer = post("gate-1", {**good, "tile_jpeg_b64": base64.b64encode(png).decode()})
        assert status == 400 and json.loads(answer)["field"] == "tile_jpeg_b64"
        fake = b"\xff\xd8\xff" + b"not really a jpeg"
        status, answer = post("gate-1", {**good, "tile_jpeg_b64": base64.b64encode(fake).decode()})
        assert status == 400 and "not a JPEG" in answer
        status, answer = post("-gate", good)
        assert status == 400 and json.loads(answer)["field"] == "camera_id"
        status, answer = post("g" * 200, good)
        assert status == 400
        status, answer = post("gate-1", {"health": {"status": "fine"}})
        assert status == 400 and json.loads(answer)["field"] == "health.status"
        status, answer = post("gate-1", {"health": {"status": "ok", "fps": -1}})
        assert status == 400 and json.loads(answer)["field"] == "health.fps"
        status, answer = post("gate-1", b"{not json")
        assert status == 400 and "not JSON" in answer
        assert post("gate-1", good, token="wrong")[0] == 401
        assert post("gate-1", good, token=ROWS_ONLY)[0] == 403
        assert server.feed.camera_ids == []  # nothing refused was kept
        status, answer = post("gate-1", {**good, "tile_jpeg_b64": base64.b64encode(_jpeg()).decode()})
        assert status == 202 and answer == {"camera_id": "gate-1", "tile": True}
        assert server.feed.tile("gate-1") == (10, _jpeg())


def test_feed_health_has_the_walls_columns_and_turns_late_then_offline(installation):
    from safecity.app.camera_wall import CameraWall, WallCamera

    feed = CameraFeed(late_after_s=5, offline_after_s=60)
    cam = feed.update("gate-1", {"status": "ok", "frames": 5, "fps": 10.0,
                                 "last_error": "/srv/city/cams/gate.avi: frame 3 cannot be decoded"},
                      _jpeg(), now=1000.0)
    assert cam.last_seen == 1000.0
    fresh = feed.health(now=1001.0).iloc[0]
    assert fresh["status"] == "ok" and fresh["last_frame_age_s"] == 1.0
    assert fresh["error"] == "gate.avi: frame 3 cannot be decoded"  # no server directories shown
    assert feed.health(now=1010.0).iloc[0]["status"] == "late"
    gone = feed.health(now=1100.0).iloc[0]
    assert gone["status"] == "offline" and gone["fps"] == 0.0 and "no news" in gone["error"]
    wall = CameraWall([WallCamera("pets-1", installation / "clip.avi", {}, 10.0)])
    assert list(feed.health().columns) == list(wall.health().columns)


def test_the_walls_views_show_a_feeds_cameras_as_they_arrive():
    feed = CameraFeed()
    feed.update("gate-1", {"status": "ok", "frames": 3, "fps": 9.0}, _jpeg())
    tiles, health = CameraWallView(feed), HealthView(feed)
    assert list(tiles.tiles) == ["gate-1"] and 'data-frames="3"' in tiles.tiles["gate-1"].object
    feed.update("quay-2", {"status": "offline", "last_error": "cannot open the stream"})
    tiles.refresh()
    health.refresh()
    assert list(tiles.tiles) == ["gate-1", "quay-2"] and len(tiles.layout().objects) == 2
    assert "no-video" in tiles.tiles["quay-2"].object
    assert 'data-camera="quay-2"' in health.pane.object and "camera-offline" in health.pane.object


def test_rows_for_post_are_json_with_zoned_times():
    df = pd.DataFrame({"event_id": ["e1"], "ts": [START], "kind": ["loitering"], "sensor_id": ["c"],
                       "lon": [np.nan], "lat": [np.float64(43.2)], "score": [np.float32(0.5)],
                       "source": ["video"], "details": ['{"zone": "plaza"}']})
    (row,) = rows_for_post(df)
    assert row["ts"] == "2026-06-01T08:00:00+00:00" and row["lon"] is None and row["lat"] == 43.2
    assert json.loads(json.dumps(row)) == row
    assert parse_rows("events", [row])["event_id"].tolist() == ["e1"]
    with pytest.raises(ValueError, match="row 0, field 'ts'.*no zone"):
        rows_for_post(pd.DataFrame({"ts": [pd.Timestamp("2026-06-01T08:00")]}))


def test_realtime_stamps_a_clip_from_now(installation, tmp_path):
    camera = load_cameras(installation / "cameras.yml")[0]
    before = pd.Timestamp.now(tz="UTC")
    summary = run_camera(camera, SinkStore(StoreSink(tmp_path)), bin_s=1, realtime=True, max_frames=12)
    assert summary["status"] == "ok" and summary["frames"] == 12
    obs = Store(tmp_path).read("observations")
    assert obs["ts"].min() >= before.floor("1s") and obs["ts"].min() > START  # not the camera's start


def test_video_run_takes_a_store_or_a_server(installation, tmp_path):
    config = str(installation / "cameras.yml")
    token = str(installation / "token")
    for args, message in ((["--data-dir", str(tmp_path), "--server", "http://127.0.0.1:1", "--token", token],
                           "either --data-dir"),
                          ([], "either --data-dir"),
                          (["--server", "http://127.0.0.1:1"], "--server needs --token"),
                          (["--server", "ftp://x", "--token", token], "not an http(s) URL")):
        result = CliRunner().invoke(main, ["video", "run", "--config", config, *args])
        assert result.exit_code == 2 and message in result.output, result.output
        assert TOKEN not in result.output
