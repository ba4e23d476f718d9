"""The tuning dashboard under a real ``panel serve``: moving the threshold slider changes the readout."""
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import chromium_page, panel_serve, wait_settled

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def served():
    with panel_serve("tuning") as page:
        yield page


READOUT_TEXT = (
    "() => { let found = null; const walk = r => { r.querySelectorAll('*').forEach(e => {"
    " if (!found && e.classList && e.classList.contains('tuning-readout')) found = e;"
    " if (e.shadowRoot) walk(e.shadowRoot); }); }; walk(document);"
    " if (!found) return null; const t = (found.shadowRoot || found).textContent || found.textContent;"
    " return t.trim(); }")

FOCUS_HANDLE = (
    "() => { let found = null; const walk = r => { r.querySelectorAll('*').forEach(e => {"
    " if (!found && e.classList && e.classList.contains('noUi-handle')) found = e;"
    " if (e.shadowRoot) walk(e.shadowRoot); }); }; walk(document);"
    " if (!found) return false; found.focus(); return document.activeElement !== null; }")


@pytest.mark.browser
def test_readout_changes_when_the_threshold_slider_moves(served):
    url, _ = served
    with chromium_page((1400, 800)) as (page, requests, failures):
        page.goto(url)
        page.wait_for_function(READOUT_TEXT, timeout=60_000)
        wait_settled(page, READOUT_TEXT, quiet_ms=2000)
        before = page.evaluate(READOUT_TEXT)
        page.screenshot(path=str(ARTIFACTS / "tuning_before.png"), full_page=True)
        assert page.evaluate(FOCUS_HANDLE), "no slider handle (.noUi-handle) on the page"
        for _ in range(15):  # noUiSlider moves one step per arrow key
            page.keyboard.press("ArrowRight")
        page.wait_for_function(f"() => ({READOUT_TEXT})() !== {before!r}", timeout=20_000)
        wait_settled(page, READOUT_TEXT)  # the readout has caught up with every key press
        after = page.evaluate(READOUT_TEXT)
        page.screenshot(path=str(ARTIFACTS / "tuning.png"), full_page=True)
    assert "Precision" in before and "Recall" in before and "per camera-hour" in before
    assert after != before
    hosts = {urlparse(u).hostname for u in requests if u.startswith("http")}
    assert hosts <= {"127.0.0.1", "localhost"}, f"requests left the machine: {hosts}"
    assert not failures, failures
