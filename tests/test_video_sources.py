"""Video sources on real inputs: JPEG folders, AVI files, a live MJPEG stream over HTTP.

The fault tests feed what cameras really do wrong (a corrupt and an empty
frame, a recording cut in half, a stream whose server closes the connection
and later disappears) and check that reading goes on and health says so.
"""
from __future__ import annotations

import http.server
import shutil
import threading
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from safecity.sim.clips import write_clips
from safecity.config.addresses import redact, source_kind
from safecity.video.sources import Frame, VideoSource
from conftest import shared_data


@pytest.fixture
def ped2_folder(tmp_path):
    """30 real UCSD Ped2 frames, copied so that the test may damage them."""
    src = shared_data("video/ucsd_ped2/training/frames/01")
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in sorted(src.glob("*.jpg"))[:30]:
        shutil.copy(f, folder / f.name)
    return folder


def test_folder_with_corrupt_and_empty_frames_goes_on(ped2_folder):
    (ped2_folder / "005.jpg").write_bytes(b"this is not a jpeg" * 50)
    (ped2_folder / "017.jpg").write_bytes(b"")
    source = VideoSource(ped2_folder, "ped2", fps=10, start="2024-05-01T08:00:00Z")
    frames = list(source)

    assert [f.index for f in frames] == [i for i in range(30) if i not in (5, 17)]
    assert all(isinstance(f, Frame) and f.image.shape == (240, 360, 3) for f in frames)
    # The frame after a dropped one keeps its own time slot.
    assert frames[5].ts == pd.Timestamp("2024-05-01T08:00:00.6Z")
    health = source.health()
    assert (health.frames_received, health.frames_dropped) == (28, 2)
    assert health.status == "ended"
    assert health.camera_id == "ped2"
    assert "017.jpg" in health.last_error  # the last bad file is named
    assert health.last_frame_ts == frames[-1].ts


def test_folder_frames_come_in_natural_order(tmp_path):
    for number in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"{number}.png"), np.full((8, 8, 3), number, np.uint8))
    levels = [int(f.image[0, 0, 0]) for f in VideoSource(tmp_path)]
    assert levels == [1, 2, 10]


def test_truncated_video_ends_cleanly_and_says_so(tmp_path):
    path = write_clips(tmp_path, scenarios=["normal"], n_frames=60)[0]
    whole = VideoSource(path)
    n_whole = sum(1 for _ in whole)
    assert n_whole == 60 and whole.health().last_error is None

    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    source = VideoSource(cut)
    frames = list(source)  # must not raise

    health = source.health()
    assert 0 < len(frames) < n_whole
    assert health.frames_received == len(frames)
    assert health.status == "ended"
    assert "truncated" in health.last_error and "cut.avi" in health.last_error


def test_subsampling_and_reproducible_timestamps():
    path = shared_data("video/pets2009_s2l1/vtest.avi")
    first = list(VideoSource(path, max_fps=2))
    again = list(VideoSource(path, max_fps=2))
    assert len(first) == len(range(0, 795, 5))  # 10 fps file thinned to 2 fps
    assert all(f.index % 5 == 0 for f in first)
    assert [f.ts for f in first] == [f.ts for f in again]
    assert first[1].ts - first[0].ts == pd.Timedelta(seconds=0.5)
    strided = VideoSource(path, stride=100)
    assert [f.index for f in strided] == list(range(0, 795, 100))
    assert strided.health().frames_received == 8


def test_missing_or_bad_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        VideoSource(tmp_path / "nowhere.mp4")
    with pytest.raises(ValueError, match="ftp"):
        VideoSource("ftp://example.org/cam")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match="garbage.mp4"):
        list(VideoSource(garbage))
    with pytest.raises(ValueError, match="no image files"):
        list(VideoSource(tmp_path))


def test_source_kinds_and_credentials_never_shown(tmp_path):
    assert source_kind(0) == source_kind("1") == "device"
    assert source_kind("rtsp://cam.local/stream") == "stream"
    assert source_kind(tmp_path) == "folder"
    url = "rtsp://admin:secret@10.0.0.7:554/live"
    assert "secret" not in redact(url) and "10.0.0.7:554/live" in redact(url)
    assert "secret" not in VideoSource(url).camera_id


def test_absent_device_fails_after_its_retries():
    source = VideoSource(97, max_retries=1, retry_delay_s=0.01)
    assert list(source) == []
    health = source.health()
    assert health.status == "failed" and health.reconnects == 1


# --------------------------------------------------------------------------- live stream


class MjpegServer:
    """A camera's HTTP MJPEG stream (``multipart/x-mixed-replace``) that hangs up
    after ``per_connection`` frames, as flaky cameras and proxies do (or, with
    ``freeze_s``, keeps the connection open without sending, as a frozen camera does)."""

    def __init__(self, per_connection: int = 6, freeze_s: float = 0.0):
        self.frames = [cv2.imencode(".jpg", np.full((120, 160, 3), 20 * (k + 1), np.uint8))[1].tobytes()
                       for k in range(per_connection)]
        self.connections = 0
        self.freeze_s = freeze_s
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for jpg in server.frames:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                     b"Content-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
                    time.sleep(0.01)
                time.sleep(server.freeze_s)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def shut_down(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_stream_that_drops_is_reopened_then_given_up():
    server = MjpegServer(per_connection=6)
    source = VideoSource(server.url, "gate", retry_delay_s=0.05, max_retry_delay_s=0.2,
                         max_retries=3, timeout_s=3)
    frames, reconnects_seen = [], []
    try:
        for frame in source:
            frames.append(frame)
            reconnects_seen.append(source.health().reconnects)
            if len(frames) == 15:  # two hang-ups behind us: the server goes away for good
                server.shut_down()
            assert len(frames) < 200, "the source should give up once the server is gone"
    finally:
        server.shut_down()

    health = source.health()
    assert server.connections >= 3
    assert health.reconnects >= 5  # >= 2 reopenings that worked, then 3 that failed
    assert max(reconnects_seen) >= 2  # frames kept coming after reconnecting
    assert health.status == "failed"
    assert "gave up after 3 reconnects" in health.last_error and "127.0.0.1" in health.last_error
    assert health.frames_received == len(frames) >= 15
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    levels = {int(round(f.image.mean() / 20)) for f in frames}
    assert levels <= set(range(1, 7)) and len(levels) >= 5  # the served frames, decoded
    stamps = [f.ts for f in frames]
    assert stamps == sorted(stamps) and stamps[0].tzinfo is not None
    assert abs(pd.Timestamp.now(tz="UTC") - stamps[-1]) < pd.Timedelta(minutes=1)


def test_stream_gives_up_after_its_time_without_frames():
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/nobody-home.mjpg"  # nothing listens there
    source = VideoSource(url, retry_delay_s=0.02, max_retry_delay_s=0.05, give_up_after_s=0.3)
    assert list(source) == []
    health = source.health()
    assert health.status == "failed" and health.reconnects >= 2
    assert "cannot open the stream" in health.last_error


def test_close_stops_a_source_waiting_to_reconnect():
    from conftest import free_port

    source = VideoSource(f"http://127.0.0.1:{free_port()}/x.mjpg", retry_delay_s=60)
    threading.Timer(0.3, source.close).start()
    assert list(source) == []  # returns at close(), not after the 60 s wait
    assert source.health().status == "ended"


def test_frozen_stream_times_out_and_is_reopened():
    server = MjpegServer(per_connection=4, freeze_s=30)
    source = VideoSource(server.url, retry_delay_s=0.05, timeout_s=1)
    frames = []
    try:
        for frame in source:
            frames.append((frame, source.health().reconnects))
            if len(frames) == 10:
                break
    finally:
        server.shut_down()
    seen = [r for _, r in frames]
    assert seen == sorted(seen) and seen[-1] >= 2  # a reconnect after each freeze
    assert all(seen.count(r) <= 4 for r in set(seen))  # never more frames than a connection sent
    assert server.connections == seen[-1] + 1
    assert "stream stopped" in source.health().last_error
