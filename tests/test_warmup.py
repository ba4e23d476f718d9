"""The server's warm-up (``safecity.app.warmup``) runs before it says it is ready, and the
first session after it reads no city, fits no model and starts no engine of its own.

A real ``safecity serve dashboards/operations.py`` on a small simulated city; the
server's log lines say what it did and in which order. No time is asserted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port, stop, wait_http

READY = "Bokeh app running at:"
READ = "reading the city in /"  # the log line (the warm-up's own says "in 0.9 s")
FIT = "fitting the city's models (UsualLevel"
ENGINE = "started the ReplayEngine"


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("warm") / "city"
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", str(out),
                    "--days", "3", "--no-clips"], check=True, capture_output=True)
    return out


class Served:
    """A ``safecity serve`` whose output lines are kept as they come."""

    def __init__(self, city: Path, state: Path, warmup: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/operations"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "safecity.cli", "serve",
             str(ROOT / "dashboards" / "operations.py"), "--data-dir", str(city),
             "--port", str(self.port), "--allow-websocket-origin", f"127.0.0.1:{self.port}"],
            env={**os.environ, "SAFECITY_STATE_DIR": str(state), "SAFECITY_WARMUP": warmup},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, text: str, timeout: float = 600) -> int:
        """The index of the first line holding ``text``, once the server printed it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(list(self.lines)):
                if text in line:
                    return i
            assert self.proc.poll() is None, "server exited:\n" + "\n".join(self.lines[-40:])
            time.sleep(0.2)
        raise AssertionError(f"no {text!r} in the server's log:\n" + "\n".join(self.lines[-40:]))

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)


@pytest.mark.browser
def test_warm_up_before_ready_and_first_session_reuses_it(city, tmp_path):
    from playwright.sync_api import sync_playwright

    served = Served(city, tmp_path / "state", warmup="1")
    try:
        ready = served.wait_for(READY)
        done = served.wait_for("safecity warm-up done")
        assert done < ready, "the warm-up ends before the server says it is ready"
        for text in (READ, FIT, ENGINE, "drawing the city maps"):
            assert served.wait_for(text) < done, f"{text!r} is part of the warm-up"
        # the first session: the page's HTML, then the live console and the City maps in Chromium
        wait_http(served.url, served.proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(180_000)
            page.goto(served.url)
            page.locator(".incident-queue").first.wait_for(state="attached")
            page.get_by_text("City maps", exact=True).first.click()
            # the anomaly map's title once its plot reached the page
            page.wait_for_function(
                "() => { const d = window.Bokeh && Bokeh.documents[0]; return !!d && "
                "Array.from(d._all_models.values()).some(m => m.type === 'Title' "
                "&& String(m.text).startsWith('Anomalies and')); }", polling=500)
            browser.close()
        assert served.count(READ) == 1, "the first session read the city again"
        assert served.count(FIT) == 1, "the first session fitted the models again"
        assert served.count(ENGINE) == 1, "the first session started a second engine"
    finally:
        stop(served.proc)


def test_without_warm_up_the_first_session_does_the_work(city, tmp_path):
    """SAFECITY_WARMUP=0 (the benchmark's baseline): ready at once, the session fits the models."""
    served = Served(city, tmp_path / "state", warmup="0")
    try:
        ready = served.wait_for(READY)
        assert served.wait_for("warm-up: off") < ready
        assert served.count(FIT) == 0, "nothing fitted before the first session"
        wait_http(served.url, served.proc)
        assert served.wait_for(FIT) > ready, "the first session fitted the models"
        assert served.count(FIT) == 1
    finally:
        stop(served.proc)
