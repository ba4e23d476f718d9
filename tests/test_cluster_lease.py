"""A camera attempt writes only while it owns its camera: superseded, or cut off from the scheduler, it stops.

A worker the scheduler loses sight of (a network cut, not a death) may go on
running its cameras while the coordinator starts them again elsewhere. Both
cases run on real Dask processes: a coordinator naming a new attempt, and a real
``dask scheduler`` frozen by SIGSTOP, as a cut-off worker sees it.
"""
from __future__ import annotations

import os
import signal
from dataclasses import asdict

import pandas as pd
import pytest
from servers import dask_cluster
from test_cluster_cameras import ALWAYS, _until, _write_installation

from safecity.cluster.cameras import (
    Progress,
    RowsTo,
    RunOptions,
    _owner_name,
    _variable_name,
    camera_task,
)
from safecity.config.cameras import load_cameras
from safecity.data.store import Store

N_FRAMES = 300  # 30 s at the clip's 10 frames/s, played in real time: the camera is still running when cut


def _start(client, camera, store_dir, options: RunOptions, run_id: str):
    """One attempt (0) of ``camera`` on the cluster, as ``run_on_cluster`` starts it."""
    from distributed import Variable

    Variable(_variable_name(run_id, camera.id), client=client).set(asdict(Progress()))
    Variable(_owner_name(run_id, camera.id), client=client).set(0)
    return client.submit(camera_task, camera, RowsTo(data_dir=str(store_dir)), options, run_id, 0, pure=False)


def _stopped_record(store_dir, camera_id: str) -> dict | None:
    audit = Store(store_dir).read("audit_log")
    rows = audit[(audit["action"] == "camera_stopped") & (audit["target"] == camera_id)]
    return rows.iloc[0].to_dict() if len(rows) else None


def _whole_bins(obs: pd.DataFrame) -> None:
    """Every stored bin has every zone's always-present metrics: no bin was cut short."""
    per_bin = obs.groupby(["ts", "sensor_id"])["metric"].apply(set)
    assert len(per_bin) and all(set(ALWAYS) <= metrics for metrics in per_bin), per_bin


@pytest.fixture
def camera(tmp_path):
    (camera,) = load_cameras(_write_installation(tmp_path, {"one": ("normal", (320, 240))}, n_frames=N_FRAMES))
    return camera


@pytest.mark.timeout(180)
def test_an_attempt_superseded_by_the_coordinator_stops_before_writing(camera, tmp_path):
    from distributed import Client, LocalCluster, Variable

    store_dir = tmp_path / "store"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        future = _start(client, camera, store_dir, RunOptions(bin_s=1.0, realtime=True), "superseded")
        _until(lambda: store_dir.exists() and len(Store(store_dir).read("observations")), "the camera's first bin")
        # The coordinator starts attempt 1 elsewhere (here: only names it): attempt 0 must stop writing.
        Variable(_owner_name("superseded", camera.id), client=client).set(1)
        record = _until(lambda: _stopped_record(store_dir, camera.id), "the camera_stopped audit record")
        written = len(Store(store_dir).read("observations"))
        summary = future.result(timeout=60)
    assert summary["status"] == "failed" and "superseded: attempt 1" in summary["error"]
    assert summary["frames"] < N_FRAMES  # it stopped, it did not run to the clip's end
    assert "superseded" in record["details"] and summary["worker"] in record["details"]
    obs = Store(store_dir).read("observations")
    assert len(obs) == written  # nothing written after it said it stopped
    _whole_bins(obs)


@pytest.mark.timeout(240)
def test_a_worker_cut_off_from_the_scheduler_stops_its_cameras_writing(camera, tmp_path):
    """The scheduler frozen (SIGSTOP): the worker cannot confirm its lease; after ``fence_s`` its
    camera stops and says why in the audit, written straight to the store."""
    from distributed import Client

    store_dir, files = tmp_path / "store", tmp_path / "cluster-files"
    files.mkdir()
    with dask_cluster(files) as (address, procs), Client(address) as client:
        client.wait_for_workers(1, timeout=60)
        future = _start(client, camera, store_dir, RunOptions(bin_s=1.0, realtime=True, fence_s=3.0), "cut")
        _until(lambda: store_dir.exists() and len(Store(store_dir).read("observations")), "the camera's first bin")
        os.kill(procs[0].pid, signal.SIGSTOP)  # the scheduler stops answering, as behind a network cut
        try:
            record = _until(lambda: _stopped_record(store_dir, camera.id), "the camera_stopped audit record")
            written = len(Store(store_dir).read("observations"))
        finally:
            os.kill(procs[0].pid, signal.SIGCONT)
        summary = future.result(timeout=120)
    assert summary["status"] == "failed" and "cut off from the scheduler for 3 s" in summary["error"]
    assert summary["frames"] < N_FRAMES
    assert "cut off" in record["details"]
    obs = Store(store_dir).read("observations")
    assert len(obs) == written
    _whole_bins(obs)
