"""Cameras on a real Dask cluster: placed by cost, a worker SIGKILLed mid-run, privacy across workers.

Everything is real: synthetic clips written as MJPG and read back through OpenCV, a
``distributed.LocalCluster`` of two single-threaded worker processes, the Parquet store
on disk, and an operating-system SIGKILL of a worker process.
"""
from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin

from safecity.app.camera_runner import run_cameras
from safecity.cluster.cameras import (
    Ledger,
    Progress,
    RowsTo,
    RunOptions,
    assign,
    resume_point,
    run_on_cluster,
)
from safecity.config.cameras import load_cameras
from safecity.data.store import ConflictError, Store

BIN_S = 5.0
#: Metrics every bin of every zone has (mean_speed and dwell_mean_s need a moving or leaving person).
ALWAYS = ["people_count", "occupancy", "dwell_count"] + [f"flow_dir_{k}" for k in range(8)]

#: camera id -> (scenario, size): four costs, so that greedy placement has something to balance.
CAMERAS = {"big": ("crowd_movement", (640, 480)), "mid": ("loitering", (480, 360)),
           "small-a": ("normal", (320, 240)), "small-b": ("wrong_way", (320, 240))}


def _until(check, what: str, timeout_s: float = 90.0, every_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def _write_installation(folder, cameras: dict, n_frames: int, extra: dict | None = None):
    from safecity.sim.clips import write_clips

    lines = ["name: cluster-test", "cameras:"]
    for camera_id, (scenario, size) in cameras.items():
        (video,) = write_clips(folder / camera_id, scenarios=[scenario], n_frames=n_frames, size=size)
        scene = json.loads((folder / camera_id / f"{scenario}_scene.json").read_text())
        lines += [f"  - id: {camera_id}", f"    source: {video}", "    fps: 10",
                  "    start: 2026-06-01T08:00:00Z", f"    pixels_per_metre: {scene['pixels_per_metre']}"]
        lines += [f"    {line}" for line in (extra or {}).get(camera_id, [])]
    (folder / "cameras.yml").write_text("\n".join(lines) + "\n")
    return folder / "cameras.yml"


@pytest.fixture(scope="module")
def installation(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster-cams")
    return _write_installation(folder, CAMERAS, n_frames=200)


@pytest.fixture(scope="module")
def reference(installation, tmp_path_factory):
    """The same clips in one process (threads): what every stored bin should be."""
    store = Store(tmp_path_factory.mktemp("reference"))
    summaries = run_cameras(load_cameras(installation), store, bin_s=BIN_S)
    assert all(s["status"] == "ok" for s in summaries), summaries
    return store.read("observations")


@pytest.fixture
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) \
            as cluster, Client(cluster) as client:
        yield cluster, client


def _camera(sensor_id: pd.Series) -> pd.Series:
    return sensor_id.str.split(":").str[0]


# --------------------------------------------------------------------------- placement and resume logic


def test_assign_puts_the_costliest_camera_first_on_the_least_loaded_worker():
    costs = {"big": 640 * 480 * 10, "mid": 480 * 360 * 10, "small-a": 320 * 240 * 10,
             "small-b": 320 * 240 * 10}
    placed = assign(costs, {"tcp://a:1": 1, "tcp://b:1": 1})
    assert placed == {"big": "tcp://a:1", "mid": "tcp://b:1", "small-a": "tcp://b:1",
                      "small-b": "tcp://b:1"}  # 3.07 M px/s on a, 3.26 M on b
    # a camera restarted joins the lighter worker; threads count: a 2-thread worker takes twice
    assert assign({"x": 1.0}, {"tcp://a:1": 1, "tcp://b:1": 1}, {"tcp://a:1": 5, "tcp://b:1": 3}) \
        == {"x": "tcp://b:1"}
    assert assign({"x": 1.0}, {"tcp://a:1": 2, "tcp://b:1": 1}, {"tcp://a:1": 5, "tcp://b:1": 3}) \
        == {"x": "tcp://a:1"}


def test_resume_point_of_a_replay_and_of_a_live_camera():
    done = Progress(closed_until="2026-06-01T08:00:10+00:00", events_until="2026-06-01T08:00:09+00:00")
    replay = resume_point(done, 5.0, live=False)
    assert replay.frames_from == replay.closed_until == pd.Timestamp("2026-06-01T08:00:10Z")
    assert replay.window_end == pd.Timestamp("2026-06-01T08:00:15Z")
    live = resume_point(done, 5.0, live=True, now=pd.Timestamp("2026-06-01T09:00:02Z"))
    assert live.frames_from == pd.Timestamp("2026-06-01T09:00:05Z")  # the partial bin is not made
    assert resume_point(Progress(), 5.0, live=False).frames_from is None  # nothing written: from the start


def _bin(ts: str, value: float) -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.to_datetime([ts], utc=True), "sensor_id": ["cam:all"],
                         "metric": ["people_count"], "value": [value]})


def test_ledger_takes_the_dead_workers_unrecorded_bin_as_stored_and_nothing_else(tmp_path):
    store = Store(tmp_path)
    published = []
    first = Ledger(store, 5.0, publish=lambda p: published.append(p.closed_until))
    first.append("observations", _bin("2026-06-01T08:00:00Z", 1.0))
    first.append("observations", _bin("2026-06-01T08:00:05Z", 2.0))  # stored; say it died unrecorded
    assert published[-1] == "2026-06-01T08:00:10+00:00"
    lagging = Progress(closed_until=published[0])  # the scheduler only knew of the first bin
    restarted = Ledger(store, 5.0, resume_point(lagging, 5.0, live=False), progress=lagging)
    restarted.append("observations", _bin("2026-06-01T08:00:00Z", 9.0))  # before the resume: not sent
    restarted.append("observations", _bin("2026-06-01T08:00:05Z", 2.5))  # refused: the dead one's
    restarted.append("observations", _bin("2026-06-01T08:00:10Z", 3.0))
    assert restarted.already_stored == 1
    stored = store.read("observations").set_index("ts")["value"]
    assert stored.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ConflictError):  # past the window a conflict is a real one
        restarted.append("observations", _bin("2026-06-01T08:00:10Z", 4.0))
    with pytest.raises(ConflictError):  # and a first run never takes a refusal as "stored"
        Ledger(store, 5.0).append("observations", _bin("2026-06-01T08:00:05Z", 7.0))


# --------------------------------------------------------------------------- a real cluster


@pytest.mark.timeout(240)
def test_cameras_spread_by_cost_and_resume_exactly_once_after_a_worker_is_killed(
        installation, reference, cluster, tmp_path):
    _, client = cluster
    cameras = load_cameras(installation)
    data_dir = tmp_path / "store"
    store = Store(data_dir)
    placed: dict[str, list[str]] = {}
    pids = client.run(os.getpid)
    assert len(pids) == 2

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(run_on_cluster, client, cameras, RowsTo(data_dir=str(data_dir)),
                              RunOptions(bin_s=BIN_S),
                              on_placed=lambda cid, w: placed.setdefault(cid, []).append(w))
        _until(lambda: len(placed) == len(cameras), "every camera placed")
        first = {cid: ws[0] for cid, ws in placed.items()}
        assert set(first.values()) == set(pids), f"both workers used: {first}"
        victim = first["mid"]

        def mid_wrote_two_bins():  # the first one's progress is then surely recorded
            obs = store.read("observations", columns=["ts", "sensor_id"])
            return obs.loc[_camera(obs["sensor_id"]) == "mid", "ts"].nunique() >= 2

        _until(mid_wrote_two_bins, "camera 'mid' writing two bins")
        killed_at = time.time()
        os.kill(pids[victim], signal.SIGKILL)
        summaries = {s["camera_id"]: s for s in running.result(timeout=180)}

    assert all(s["status"] == "ok" for s in summaries.values()), summaries
    mid = summaries["mid"]
    assert mid["restarts"] == 1 and mid["workers"][0] == victim and mid["worker"] != victim
    assert mid["restarted_at"][0] >= killed_at
    assert mid["resumed_at"] is not None and mid["skipped"] > 0  # resumed mid-clip, not from the start
    for cid, s in summaries.items():
        assert s["worker"] in s["workers"] and s["worker"] == s["workers"][-1]
        if first[cid] != victim:
            assert s["restarts"] == 0 and s["worker"] == first[cid]

    # every closed bin exactly once: the same (bin, zone) rows as the single-process run
    obs = store.read("observations")
    assert not obs.duplicated(["ts", "sensor_id", "metric"]).any()
    key = ["ts", "sensor_id", "metric"]
    got = obs[obs["metric"].isin(ALWAYS)].set_index(key)["value"].sort_index()
    want = reference[reference["metric"].isin(ALWAYS)].set_index(key)["value"].sort_index()
    assert got.index.equals(want.index)
    # where the run was not interrupted the values are the single run's, to the bit
    exact = pd.Series(True, index=got.index)
    for cid, s in summaries.items():
        if s["restarts"]:
            after = pd.Timestamp(s["resumed_at"])
            exact &= ~((_camera(got.index.get_level_values("sensor_id")) == cid)
                       & (got.index.get_level_values("ts") >= after))
    assert set(_camera(got[exact.to_numpy()].index.get_level_values("sensor_id"))) == set(CAMERAS)
    pd.testing.assert_series_equal(got[exact.to_numpy()], want[exact.to_numpy()])

    # health: the store's audit names the worker of every start of every camera
    audit = store.state.read("audit_log")
    starts = audit[audit["action"] == "camera_started"]
    workers = {(row.target, json.loads(row.details)["worker"]) for row in starts.itertuples()}
    assert {("mid", victim), ("mid", mid["worker"])} <= workers
    events = store.read("events")
    assert not events["event_id"].duplicated().any()


# --------------------------------------------------------------------------- privacy across workers


class _ResultLog(SchedulerPlugin):
    """A scheduler plugin: the type and size of every task result a worker reports."""

    def __init__(self):
        self.results: list[tuple[str, str, int]] = []

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory" and start == "processing":
            self.results.append((str(key), str(kwargs.get("typename")), int(kwargs.get("nbytes") or 0)))


#: What a numpy array leaves in a message, however Dask serialises it: its type's name (Dask's
#: own serialiser, pickled types) or the functions pickle rebuilds it with.
ARRAY_MARKS = (b"ndarray", b"_reconstruct", b"_frombuffer")


def _watch_worker_messages(dask_worker=None):
    """In a worker process: record every message it sends over the network (its frames'
    sizes, and how many carry a serialised numpy array)."""
    from distributed.comm import tcp

    log = {"messages": 0, "largest": 0, "numpy": 0}
    original = getattr(tcp, "_safecity_to_frames", tcp.to_frames)

    async def to_frames(msg, *args, **kwargs):
        frames = await original(msg, *args, **kwargs)
        log["messages"] += 1
        for frame in frames:
            data = bytes(frame)
            log["largest"] = max(log["largest"], len(data))
            log["numpy"] += any(mark in data for mark in ARRAY_MARKS)
        return frames

    tcp._safecity_to_frames, tcp.to_frames = original, to_frames
    dask_worker._safecity_comm_log = log


def _message_log(dask_worker=None) -> dict:
    log = dask_worker._safecity_comm_log
    out = dict(log)
    log.update(messages=0, largest=0, numpy=0)
    return out


@pytest.mark.timeout(180)
def test_no_frame_and_no_signature_leaves_a_worker(cluster, tmp_path):
    """What the workers send over the network while their cameras run: small messages, no
    numpy array in any of them, and summaries as task results. The same probe does see a
    frame-sized array a worker is asked to return (it is not blind)."""
    local, client = cluster
    config = _write_installation(
        tmp_path, {"faces": ("repeated_presence", (480, 360)), "street": ("normal", (480, 360))},
        n_frames=120, extra={"faces": ["repeated_presence: {enabled: true, count: 2}",
                                       "detectors: [repeated_presence, loitering]"]})
    cameras = load_cameras(config)
    results = _ResultLog()
    local.scheduler.add_plugin(results, name="safecity-result-log")
    client.run(_watch_worker_messages)

    summaries = run_on_cluster(client, cameras, RowsTo(data_dir=str(tmp_path / "store")),
                               RunOptions(bin_s=BIN_S))
    sent = client.run(_message_log)

    assert all(s["status"] == "ok" and s["frames"] == 120 for s in summaries), summaries
    assert {s["worker"] for s in summaries} == set(sent)  # one camera on each worker
    audit = Store(tmp_path / "store").state.read("audit_log")
    assert "repeated_presence" in " ".join(audit["action"]) + " ".join(audit["details"])  # it ran, audited
    frame_bytes = 360 * 480 * 3
    for worker, log in sent.items():
        assert log["messages"] > 0
        assert log["numpy"] == 0, f"{worker} sent a numpy array"
        assert log["largest"] < frame_bytes / 20, f"{worker} sent {log['largest']} bytes at once"
    camera_results = [r for r in results.results if r[0].startswith("camera-")]
    assert len(camera_results) == 2
    assert all(typename == "dict" and nbytes < 20_000 for _, typename, nbytes in camera_results)

    # the control: a worker returning a frame-sized array is seen by both probes
    frame = client.submit(np.full, (360, 480, 3), 7, np.uint8, pure=False).result()
    assert frame.shape == (360, 480, 3)
    sent = client.run(_message_log)
    assert any(log["numpy"] and log["largest"] >= frame_bytes for log in sent.values())
    assert results.results[-1][1].endswith("ndarray") and results.results[-1][2] >= frame_bytes


# --------------------------------------------------------------------------- command line


@pytest.mark.timeout(180)
def test_cli_video_run_on_local_workers(tmp_path):
    from click.testing import CliRunner

    from safecity.cli import main

    config = _write_installation(tmp_path, {"one": ("normal", (320, 240)),
                                            "two": ("wrong_way", (320, 240))}, n_frames=60)
    result = CliRunner().invoke(main, ["video", "run", "--config", str(config), "--scheduler", "local:2",
                                       "--data-dir", str(tmp_path / "store"), "--bin", "5"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines() if line.startswith("{")]
    assert [s["camera_id"] for s in lines] == ["one", "two"]
    assert all(s["status"] == "ok" and s["frames"] == 60 and s["restarts"] == 0
               and s["worker"].startswith("tcp://") for s in lines)
    obs = Store(tmp_path / "store").read("observations")
    assert set(_camera(obs["sensor_id"])) == {"one", "two"}
    assert sum(s["observations"] for s in lines) == len(obs)


@pytest.mark.timeout(180)
def test_cameras_on_a_cluster_feed_a_live_server_naming_their_worker(cluster, tmp_path):
    """--server through the cluster: each worker posts its rows, blurred tiles and a health
    that names it, straight to the server (nothing through the coordinator)."""
    from test_camera_feed import TOKEN, Server

    _, client = cluster
    config = _write_installation(tmp_path, {"one": ("normal", (320, 240)),
                                            "two": ("wrong_way", (320, 240))}, n_frames=60)
    served = tmp_path / "served"
    with Server(served) as server:
        summaries = run_on_cluster(client, load_cameras(config),
                                   RowsTo(server_url=server.url, token=TOKEN), RunOptions(bin_s=BIN_S))
        feed = server.feed
        assert feed.camera_ids == ["one", "two"]
        for s in summaries:
            assert s["status"] == "ok" and s["posted"]["observations"]["accepted"] == s["observations"]
            assert feed.worker(s["camera_id"]) == s["worker"]
            frames, jpeg = feed.tile(s["camera_id"])
            assert frames >= 1 and jpeg.startswith(b"\xff\xd8\xff")
        assert set(feed.health()["status"]) == {"ended"}
    assert len(Store(served).read("observations")) == sum(s["observations"] for s in summaries)


def test_a_task_s_arguments_as_a_worker_logs_them_hold_no_credential():
    """A worker logs a failed task's arguments with their repr: no stream password, no token."""
    from safecity.cluster.cameras import RowsTo
    from safecity.config.cameras import CameraConfig

    camera = CameraConfig(id="cam-x", source="rtsp://admin:s3cret@10.0.0.7/live?token=abc123",
                          fps=5, pixels_per_metre=20)
    rows = RowsTo(server_url="http://ops:5006", token="TOKEN-0123456789")
    logged = repr((camera, rows))
    for secret in ("s3cret", "abc123", "TOKEN-0123456789"):
        assert secret not in logged, logged
    assert "10.0.0.7/live" in logged and "cam-x" in logged  # still says which camera
    assert camera.source.endswith("token=abc123") and rows.token == "TOKEN-0123456789"  # values kept
