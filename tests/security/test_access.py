"""Hardening of the served pages and of access control (issue 16, items 2, 6, 10 and 12).

Browser tests run a real ``panel serve`` / ``safecity serve`` and drive Debian's Chromium;
the server's output goes to a file, read after the fact for tracebacks.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHROMIUM, CHROMIUM_ARGS, free_port, stop, wait_http
from test_operations_live import live_city  # noqa: F401  the small simulated city, as a fixture

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serving(cmd: list[str], log: Path, env: dict | None = None):
    """A server process whose stdout and stderr go to ``log``."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            yield proc
        finally:
            stop(proc)


def _wait_for_text(page, log: Path, text: str, timeout_ms: int = 60_000) -> None:
    """Wait (polling the page's clock, not sleeping blindly) until ``text`` is in the server log."""
    for _ in range(timeout_ms // 250):
        if text in log.read_text():
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"{text!r} never appeared in the server log:\n{log.read_text()[-3000:]}")


# -- item 2: a closed tab must not break the page for the others ---------------------------

@pytest.mark.browser
def test_closed_tab_does_not_break_dispatch(live_city, tmp_path):  # noqa: F811
    """Open, close, reopen, dispatch: the confirmation appears and the server logs no error."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "panel", "serve", "dashboards/operations.py",
           "--address", "127.0.0.1", "--port", str(port),
           "--allow-websocket-origin", f"127.0.0.1:{port}",
           # a closed tab's session is discarded within a second, and the log says when
           "--check-unused-sessions", "200", "--unused-session-lifetime", "200",
           "--log-level", "debug"]
    env = {"SAFECITY_DATA_DIR": str(live_city), "SAFECITY_STATE_DIR": str(tmp_path / "state"),
           "SAFECITY_REPLAY_SPEED": "60"}
    url = f"http://127.0.0.1:{port}/operations"
    with serving(cmd, log, env) as proc, sync_playwright() as p:
        wait_http(url, proc)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        first = browser.new_page(viewport={"width": 1400, "height": 1200})
        first.goto(url)
        first.locator("span.live-counter").first.wait_for(timeout=60_000)
        first.close()
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.locator("span.live-counter").first.wait_for(timeout=60_000)
        _wait_for_text(page, log, "Discarding session")  # the closed tab's session is gone
        page.locator("article.incident").first.wait_for(timeout=60_000)
        page.get_by_role("button", name="Dispatch").click()
        outcome = page.locator("p.dispatch-done, p:has-text('Not dispatched'), "
                               "p:has-text('Choose an incident')").first
        outcome.wait_for(timeout=60_000)
        assert outcome.get_attribute("class") == "dispatch-done", outcome.text_content()
        browser.close()
    out = log.read_text()
    assert "NameError" not in out and "Traceback" not in out, out[-5000:]
    assert "Error running" not in out, out[-5000:]
