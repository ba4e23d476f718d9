"""The live part of the operations dashboard: one shared engine, a ticking counter,
an escaped incident queue and a dispatch that changes a unit and writes an audit record.

Runs a real ``panel serve`` on a small simulated city and drives it in Chromium.
"""
import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import click_dispatch, served_operations
from conftest import CHROMIUM, CHROMIUM_ARGS, ROOT
from test_console import QUEUE_ROW, filter_queue

ARTIFACTS = ROOT / "test-artifacts"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def live_city(tmp_path_factory):
    """A 3-day city with one police log entry whose text is markup, early in the replay."""
    from safecity.data.store import Store

    out = tmp_path_factory.mktemp("live") / "data"
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", str(out),
                    "--days", "3", "--no-clips"], check=True, capture_output=True)
    store = Store(out)
    first = store.read("events").sort_values("ts").iloc[0]
    store.append("events", pd.DataFrame([{
        "event_id": "ev-test-script", "ts": first["ts"] + pd.Timedelta(minutes=10),
        "kind": "police_log", "sensor_id": None, "lon": float(first["lon"]) + 0.05,
        "lat": float(first["lat"]) + 0.05, "score": None, "source": "police_log",
        "details": json.dumps({"text": f"{SCRIPT}<b>bold</b>"})}]))
    store.state.close()
    return out


def test_one_engine_per_process(live_city, tmp_path):
    from safecity.app.engine import get_engine

    engine = get_engine(live_city, state_dir=tmp_path, run=False)
    assert get_engine(live_city) is engine
    tick, now = engine.tick, engine.now
    engine.step(10)
    assert engine.tick == tick + 1 and engine.now > now
    queue = engine.incident_queue()
    assert queue["summary"].str.contains(SCRIPT, regex=False).any()
    target = queue.iloc[0]
    unit = engine.recommended(target["incident_id"])["unit_id"].iloc[0]
    engine.dispatch(unit, target["incident_id"], actor="tester")
    status = engine.unit_status().set_index("unit_id")["status"]
    assert status[unit] == "dispatched"
    audit = engine.audit()
    assert (audit["action"] == "dispatch").any() and (audit["target"] == unit).any()


@pytest.fixture(scope="module")
def served_live(live_city, tmp_path_factory):
    with served_operations(live_city, tmp_path_factory.mktemp("state"), 60) as served:
        yield served


def _tick(page) -> int:
    """The engine's update count as the page shows it (``updates: N``)."""
    counter = page.locator("span.live-counter").first
    counter.wait_for(state="attached", timeout=60_000)
    return int(counter.text_content().split(":")[1])


@pytest.mark.browser
def test_live_counter_queue_and_dispatch(served_live):
    from playwright.sync_api import expect, sync_playwright

    from safecity.data.store import Store

    url, state_dir = served_live
    dialogs = []
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        first = _tick(page)
        # updates come every second; a loaded machine may delay them: wait on the counter itself
        page.wait_for_function(
            f"""() => {{ const find = r => {{ for (const e of r.querySelectorAll('*')) {{
                 if (e.classList && e.classList.contains('live-counter')) return e;
                 if (e.shadowRoot) {{ const f = find(e.shadowRoot); if (f) return f; }} }} return null; }};
               const c = find(document);
               return c !== null && parseInt(c.textContent.split(':')[1]) >= {first + 2}; }}""",
            timeout=120_000, polling=500)
        second = _tick(page)
        assert second >= first + 2, f"the live counter did not advance: {first} -> {second}"

        # a second session shows the same engine, not a fresh copy starting at 0
        other = browser.new_page()
        other.goto(url)
        # (a fresh engine would start again from 0; the shared one only counts up)
        assert _tick(other) >= second, "the second session did not show the shared engine"
        other.close()

        # the police log text is shown as text, never run: the operator picks its incident
        filter_queue(page, 1, "police_log")
        rows = page.locator(QUEUE_ROW, has_text="police_log")
        shown = page.locator("article.selected-incident", has_text=SCRIPT)
        for i in range(rows.count()):  # the city's own police logs too: each in turn
            ref = rows.nth(i).locator("[tabulator-field='ref']").text_content().strip()
            rows.nth(i).click()
            page.locator(f'article.selected-incident[data-incident="{ref}"]').wait_for()
            if shown.count():
                break
        shown.first.wait_for(timeout=30_000)
        assert "<b>bold</b>" in shown.first.text_content()

        message = click_dispatch(page)
        assert message.get_attribute("class") == "dispatch-done", message.text_content()
        unit = message.get_attribute("data-unit")
        assert unit and f"{unit} dispatched to" in message.text_content()
        expect(page.locator("article.selected-incident")).to_have_attribute(
            "data-status", "dispatched", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "operations_live.png"), full_page=True)
        browser.close()
    assert not dialogs, f"page ran script from incident text: {dialogs}"
    log = Store(state_dir).read("audit_log")
    assert ((log["action"] == "dispatch") & (log["target"] == unit)).any()
