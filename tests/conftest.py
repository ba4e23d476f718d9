"""Shared test helpers."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """The real-data folder: ``$SAFECITY_SHARED_DATA``, else ``../shared/data`` beside the repo."""
    env = os.environ.get("SAFECITY_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def shared_data(relpath: str = "") -> Path:
    """The path of ``relpath`` in the real-data folder, or skip the test when it is absent.

    With ``SAFECITY_REQUIRE_DATA=1`` (CI) an absent data set fails the test
    instead, so that CI never passes by skipping what it is meant to check.
    """
    path = shared_data_root() / relpath
    if path.exists():
        return path
    message = f"real data not found at {path}"
    if os.environ.get("SAFECITY_REQUIRE_DATA") == "1":
        pytest.fail(f"{message} (SAFECITY_REQUIRE_DATA=1)", pytrace=False)
    pytest.skip(message)


def short_clip(source: Path, out: Path, frames: int, fps: float) -> Path:
    """The first ``frames`` of a real video, re-encoded by OpenCV (MJPG) at ``fps``: a clip a
    camera worker can loop in a test."""
    import cv2

    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (480, 360))
    try:
        for _ in range(frames):
            ok, frame = capture.read()
            assert ok, f"{source}: fewer than {frames} frames"
            writer.write(frame)
    finally:
        capture.release()
        writer.release()
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc, timeout: float = 120) -> str:
    """The page at ``url`` once the server answers; fail early if the server died."""
    import time
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:  # a session can take 20 s under load
                return resp.read().decode()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def stop(proc) -> None:
    import signal
    import subprocess

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def panel_serve(app: str, env: dict | None = None):
    """A real ``panel serve dashboards/<app>.py`` on a free local port: yields (url, html)."""
    import subprocess
    import sys

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(ROOT / "dashboards" / f"{app}.py"),
         "--port", str(port), "--address", "127.0.0.1",
         "--allow-websocket-origin", f"127.0.0.1:{port}"],
        env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/{app}"
        yield url, wait_http(url, proc)
    finally:
        stop(proc)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium_page(viewport: tuple[int, int] = (1400, 1000)):
    """A Playwright page in Debian's Chromium, recording every request and failed request.

    Yields (page, requests, failures): lists of URLs, for the offline checks.
    """
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed (.ci/run installs it)"
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    requests, failures = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        # generous waits: on a loaded machine a page's first session takes tens of seconds
        page.set_default_timeout(60_000)
        page.set_default_navigation_timeout(120_000)
        page.on("request", lambda r: requests.append(r.url))
        page.on("requestfailed", lambda r: failures.append(r.url))
        try:
            yield page, requests, failures
        finally:
            browser.close()


@contextlib.contextmanager
def served_operations(city, state_dir, speed: float):
    """``dashboards/operations.py`` served on ``city``, its state in ``state_dir``, the replay at
    ``speed`` simulated seconds per second (0 holds the clock still); yields (url, state_dir)."""
    env = {"SAFECITY_DATA_DIR": str(city), "SAFECITY_STATE_DIR": str(state_dir),
           "SAFECITY_REPLAY_SPEED": f"{speed:g}"}
    with panel_serve("operations", env) as (url, _):
        yield url, state_dir


def click_dispatch(page, timeout_ms: int = 120_000):
    """Click the live page's Dispatch once it recommends a unit; return the outcome paragraph.

    Waits on the page's state, never a fixed delay: the recommendation table
    must have a row before the click. The live replay may take the unit in
    the meantime ("Not dispatched"); then, after the page's next update, the
    new recommendation is tried, until ``timeout_ms``.
    """
    import time

    from playwright.sync_api import expect

    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        left = max(1_000, int((deadline - time.monotonic()) * 1000))
        page.locator("table.recommended tbody tr").first.wait_for(timeout=left)
        counter = page.locator("span.live-counter").first
        shown = counter.text_content()
        page.get_by_role("button", name="Dispatch").click(timeout=left)
        outcome = page.locator("p.dispatch-done, p:has-text('Not dispatched'), "
                               "p:has-text('Choose an incident')").first
        outcome.wait_for(timeout=left)
        if outcome.get_attribute("class") == "dispatch-done" or time.monotonic() > deadline:
            return outcome
        expect(counter).not_to_have_text(shown, timeout=left)  # the page has moved on: try again


def wait_settled(page, expression: str, quiet_ms: int = 1000, timeout: int = 60_000) -> None:
    """Wait until the page's ``expression`` (a JS function's source) has a value that stayed
    the same for ``quiet_ms``: the server has caught up, whatever the machine's load."""
    page.wait_for_function(
        f"""(quiet) => {{ const now = JSON.stringify(({expression})());
             const w = window.__settled || (window.__settled = {{}});
             if (now === undefined || now === 'null' || now === '""') return false;
             if (w.value !== now) {{ w.value = now; w.since = performance.now(); return false; }}
             return performance.now() - w.since >= quiet; }}""",
        arg=quiet_ms, timeout=timeout, polling=250)


@pytest.fixture(scope="module")
def cluster():
    """A real Dask ``LocalCluster`` for a test module (starting one costs seconds): two single-threaded
    worker processes, as ``--scheduler local:2`` makes."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as running:
        yield running


@pytest.fixture(scope="module")
def client(cluster):
    """A Dask client of the module's ``cluster``."""
    from distributed import Client

    with Client(cluster) as c:
        yield c


@pytest.fixture(scope="session")
def postgres_url():
    """The URL (with its password) of a real PostgreSQL server started for this test session.

    Skips when PostgreSQL is not installed; fails instead with SAFECITY_REQUIRE_DATA=1 (CI).
    """
    from servers import postgres_server

    with postgres_server() as server:
        yield server.url()


STATE_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=STATE_BACKENDS)
def state_backend(request):
    """A factory ``data_dir -> StateStore`` of each backend, all calls on this test's state.

    SQLite: ``state.sqlite`` in the data directory. PostgreSQL: a schema of its
    own per test on the session's server, dropped afterwards.
    """
    from safecity.data.store import open_state

    opened = []
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            spec = "sqlite"
        else:
            from servers import postgres_schema

            spec = stack.enter_context(postgres_schema(request.getfixturevalue("postgres_url")))

        def factory(data_dir):
            opened.append(open_state(spec, data_dir))
            return opened[-1]
        yield factory
        for state in opened:
            state.close()
