"""The tuning dashboard under a real ``panel serve``: moving the threshold slider changes the readout."""
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import chromium_page, panel_serve, wait_settled

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def ledger_dir(tmp_path_factory):
    """A served city's state directory whose alarms were all reviewed (from a synthetic truth)."""
    from safecity.evaluation.ledger import simulated_ledger_dir

    out = tmp_path_factory.mktemp("ledger-state")
    simulated_ledger_dir(out, days=2, n_cameras=40)
    return out


@pytest.fixture(scope="module")
def served(ledger_dir):
    with panel_serve("tuning", env={"SAFECITY_STATE_DIR": str(ledger_dir)}) as page:
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


def _find(css_class: str) -> str:
    return ("let found = null; const walk = r => { r.querySelectorAll('*').forEach(e => {"
            f" if (!found && e.classList && e.classList.contains('{css_class}')) found = e;"
            " if (e.shadowRoot) walk(e.shadowRoot); }); };")


LEDGER_READOUT = (
    "() => { " + _find("ledger-readout") + " walk(document); if (!found) return null;"
    " const t = (found.shadowRoot || found).textContent || found.textContent; return t.trim(); }")

FOCUS_LEDGER_HANDLE = (
    "() => { " + _find("ledger-tuner") + " walk(document); if (!found) return false;"
    " const box = found; found = null; const inner = r => { r.querySelectorAll('*').forEach(e => {"
    " if (!found && e.classList && e.classList.contains('noUi-handle')) found = e;"
    " if (e.shadowRoot) inner(e.shadowRoot); }); }; inner(box.shadowRoot || box);"
    " if (!found) inner(box); if (!found) return false; found.focus(); return true; }")


def _shown(text: str) -> dict:
    import re

    head = re.search(r"(\w+) at threshold ([0-9.]+)", text)
    numbers = {name: int(re.search(pattern, text).group(1)) for name, pattern in {
        "confirmed_lost": r"Confirmed alarms lost: (\d+)", "confirmed_kept": r"lost: \d+ \(kept (\d+)",
        "false_alarms_avoided": r"False alarms avoided: (\d+)",
        "false_alarms_kept": r"avoided: \d+ \(kept (\d+)"}.items()}
    precision = re.search(r"Precision: ([0-9.]+|n/a)", text).group(1)
    return {"kind": head.group(1), "threshold": float(head.group(2)), "precision": precision, **numbers}


@pytest.mark.browser
def test_ledger_threshold_shows_the_alarms_lost_and_avoided(served, ledger_dir):
    """Moving the ledger's threshold shows what ``threshold_effect`` computes on the same verdicts."""
    from safecity.evaluation.ledger import read_verdicts, threshold_effect

    url, _ = served
    verdicts = read_verdicts(ledger_dir)
    with chromium_page((1400, 1100)) as (page, requests, failures):
        page.goto(url)
        page.wait_for_function(LEDGER_READOUT, timeout=60_000)
        wait_settled(page, LEDGER_READOUT, quiet_ms=2000)
        before = _shown(page.evaluate(LEDGER_READOUT))
        assert page.evaluate(FOCUS_LEDGER_HANDLE), "no slider handle in the ledger tuner"
        for _ in range(50):  # one step (0.01) per arrow key
            page.keyboard.press("ArrowRight")
        page.wait_for_function(f"() => ({LEDGER_READOUT})() !== {page.evaluate(LEDGER_READOUT)!r}",
                               timeout=20_000)
        wait_settled(page, LEDGER_READOUT, quiet_ms=1500)
        after = _shown(page.evaluate(LEDGER_READOUT))
        page.screenshot(path=str(ARTIFACTS / "tuning_ledger.png"), full_page=True)
    assert after["kind"] == before["kind"] and after["threshold"] > before["threshold"]
    for shown in (before, after):
        effect = threshold_effect(verdicts, shown["kind"], shown["threshold"])
        assert {k: shown[k] for k in ("confirmed_lost", "confirmed_kept", "false_alarms_avoided",
                                      "false_alarms_kept")} == {
            "confirmed_lost": effect.confirmed_lost, "confirmed_kept": effect.confirmed_kept,
            "false_alarms_avoided": effect.false_alarms_avoided,
            "false_alarms_kept": effect.false_alarms_kept}
        assert shown["precision"] == ("n/a" if effect.precision != effect.precision
                                      else f"{effect.precision:.2f}")
    assert after["false_alarms_avoided"] > before["false_alarms_avoided"], \
        "the threshold moved past no false alarm: the check shows nothing"
    hosts = {urlparse(u).hostname for u in requests if u.startswith("http")}
    assert hosts <= {"127.0.0.1", "localhost"}, f"requests left the machine: {hosts}"
    assert not failures, failures
