"""The operator's console (safecity/app/console.py) in a real ``panel serve`` and Chromium at
1920x1080: one screen without scrolling, an incident chosen in the queue with its routes and
ETAs, the cameras' fields of view on the map, the actions and the alarm verdicts stored."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import CHROMIUM, chromium_page, click_dispatch, served_operations

SCRIPT = "<script>alert(1)</script>"
#: A row of the incident queue (the ledger's tables have rows too).
QUEUE_ROW = ".tabulator-row:has([tabulator-field='ref'])"

#: The first ColumnDataSource of the page's Bokeh document whose data has ``column``, as
#: {column: [...], n: rows}; null while there is none (the page is still drawing).
_SOURCE_WITH = (
    "(column) => { const doc = window.Bokeh && window.Bokeh.documents[0]; if (!doc) return null;"
    " for (const m of doc._all_models.values()) { if (m.type !== 'ColumnDataSource') continue;"
    "   const v = m.data[column]; if (v !== undefined && v.length > 0)"
    "     return {values: Array.from(v).map(String), n: v.length}; } return null; }")


def _urgent_in_title(title: str) -> int:
    """The count of unacknowledged urgent incidents the title shows: "(3) safecity · ..." -> 3."""
    return int(title[1:title.index(")")]) if title.startswith("(") else 0


@pytest.fixture(scope="module")
def console_city(tmp_path_factory):
    """A 1-day city with its cameras (clips, cameras.yml), plus, early in the replay, two
    gunshots far apart (two priority-1 incidents) and a police log entry whose text is markup."""
    from safecity.data.store import Store

    out = tmp_path_factory.mktemp("console") / "data"
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", str(out),
                    "--days", "1"], check=True, capture_output=True)
    store = Store(out)
    first = store.read("events").sort_values("ts").iloc[0]
    t0, lon, lat = first["ts"], 5.38, 43.30
    rows = [
        {"event_id": "ev-shot-1", "ts": t0 + pd.Timedelta(minutes=5), "kind": "gunshot",
         "sensor_id": "acoustic-1", "lon": lon, "lat": lat, "score": 0.9, "source": "acoustic",
         "details": None},
        {"event_id": "ev-shot-2", "ts": t0 + pd.Timedelta(minutes=5, seconds=20), "kind": "gunshot",
         "sensor_id": "acoustic-2", "lon": lon + 0.001, "lat": lat, "score": 0.7,
         "source": "acoustic", "details": None},
        {"event_id": "ev-shot-far", "ts": t0 + pd.Timedelta(minutes=8), "kind": "gunshot",
         "sensor_id": "acoustic-3", "lon": lon + 0.06, "lat": lat + 0.04, "score": 0.8,
         "source": "acoustic", "details": None},
        {"event_id": "ev-test-script", "ts": t0 + pd.Timedelta(minutes=10), "kind": "police_log",
         "sensor_id": None, "lon": lon - 0.03, "lat": lat + 0.03, "score": None,
         "source": "police_log", "details": json.dumps({"text": f"{SCRIPT}<b>bold</b>"})},
    ]
    store.append("events", pd.DataFrame(rows))
    store.state.close()
    return out


@pytest.fixture(scope="module")
def served_console(console_city, tmp_path_factory):
    """The operations page on the city, its replay clock held still (speed 0): the queue stays."""
    with served_operations(console_city, tmp_path_factory.mktemp("console-state"), 0) as served:
        yield served


def _no_page_scroll(page) -> None:
    sizes = page.evaluate("() => [document.scrollingElement.scrollHeight, innerHeight,"
                          " document.scrollingElement.scrollWidth, innerWidth]")
    assert sizes[0] <= sizes[1] and sizes[2] <= sizes[3], f"the page scrolls: {sizes}"
    # and nothing is cut off below: the status bar, the screen's last line, is wholly on screen. A retried
    # assertion: after a tab switch, or on a loaded machine, the bar is laid out a moment after it is attached.
    from playwright.sync_api import expect

    expect(page.locator("span.live-counter").first).to_be_in_viewport(ratio=1.0)


def filter_queue(page, column: int, text: str) -> None:
    """Filter the queue's ``column`` (0 ref, 1 kind, 2 place, 3 status) on ``text`` (Enter applies
    it) and wait until every row shown has it: a click before would land on a row being redrawn."""
    box = page.locator(".tabulator-header-filter input").nth(column)
    box.fill(text)
    box.press("Enter")
    page.wait_for_function(
        """(text) => { const rows = [];
             const find = r => { for (const e of r.querySelectorAll('*')) {
               if (e.classList && e.classList.contains('tabulator-row')) rows.push(e);
               if (e.shadowRoot) find(e.shadowRoot); } };
             find(document);
             const queue = rows.filter(r => r.querySelector("[tabulator-field='ref']") !== null);
             return queue.length > 0 && queue.every(r => r.textContent.includes(text)); }""",
        arg=text)


def _choose(page, column: int, text: str) -> str:
    """Filter the queue on ``text``, click its first row and return that incident's ref once
    the panel shows it."""
    filter_queue(page, column, text)
    row = page.locator(QUEUE_ROW, has_text=text).first
    ref = row.locator(".tabulator-cell[tabulator-field='ref']").text_content().strip()
    row.click()
    page.locator(f'article.selected-incident[data-incident="{ref}"]').wait_for()
    return ref


def _shots_dir(tmp_path):
    shots = os.environ.get("SAFECITY_SCREENSHOTS")
    out = tmp_path if not shots else __import__("pathlib").Path(shots)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.browser
def test_console_on_one_screen_routes_fields_actions_and_verdicts(served_console, tmp_path):
    from playwright.sync_api import expect

    from safecity.data.store import Store

    assert os.path.exists(CHROMIUM)
    url, state_dir = served_console
    dialogs = []
    with chromium_page((1920, 1080)) as (page, _, failures):
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.locator("span.live-counter").first.wait_for(state="attached")
        # two priority-1 gunshots nobody acknowledged: the tab's title counts them
        page.wait_for_function("() => /^\\(\\d+\\) safecity/.test(document.title)")
        urgent = _urgent_in_title(page.title())
        assert urgent >= 2, page.title()
        expect(page.locator("p.queue-count")).to_have_attribute("data-urgent", str(urgent))
        _no_page_scroll(page)

        # the cameras' fields of view are on the map (their polygons' camera ids)
        page.wait_for_function(f"() => ({_SOURCE_WITH})('camera_id') !== null")
        cameras = page.evaluate(f"() => ({_SOURCE_WITH})('camera_id')")
        assert any(c.startswith("cam-") for c in cameras["values"]), cameras

        # the operator picks the two-shot gunshot: routes drawn with their ETAs, ETAs listed
        filter_queue(page, 1, "gunshot")
        rows = page.locator(QUEUE_ROW, has_text="gunshot")
        expect(rows).to_have_count(2)
        two = rows.filter(has=page.locator(".tabulator-cell[tabulator-field='sources']",
                                           has_text="2")).first  # the two shots' incident
        ref = two.locator(".tabulator-cell[tabulator-field='ref']").text_content().strip()
        two.click()
        page.locator(f'article.selected-incident[data-incident="{ref}"]').wait_for()
        recommended = page.locator("table.recommended tbody tr")
        recommended.first.wait_for()
        etas = [r.locator("td").last.text_content().strip() for r in recommended.all()]
        assert all(":" in e for e in etas), etas  # a local clock time for every unit
        page.wait_for_function(
            f"() => {{ const s = ({_SOURCE_WITH})('text');"
            " return s !== null && s.values.some(t => t.includes('ETA')); }")
        labels = page.evaluate(f"() => ({_SOURCE_WITH})('text')")["values"]
        first_unit = recommended.first.locator("td").first.text_content().strip()
        assert any(t.startswith(first_unit) and "ETA" in t for t in labels), (first_unit, labels)
        for ev in ("ev-shot-1", "ev-shot-2"):
            page.locator(f'li.evidence-event[data-event="{ev}"]').wait_for()
        _no_page_scroll(page)
        shots = _shots_dir(tmp_path)
        page.screenshot(path=str(shots / "console.png"))

        # acknowledging it takes one off the title's count
        page.get_by_role("button", name="Acknowledge").click()
        page.locator('p.action-done[data-action="acknowledge"]').wait_for()
        page.wait_for_function(
            "(n) => (document.title.startsWith('(') ? parseInt(document.title.slice(1)) : 0) === n",
            arg=urgent - 1)
        expect(page.locator(f'article.selected-incident[data-incident="{ref}"]')).to_have_attribute(
            "data-status", "acknowledged")

        # the incident is confirmed; one of its events dismissed as a false alarm (shadow)
        page.get_by_role("button", name="Confirm").click()
        page.locator(f'p.action-done[data-verdict="confirmed"][data-alarm="{ref}"]').wait_for()
        page.locator("select", has=page.locator("option", has_text="ev-shot-2")).first \
            .select_option("ev-shot-2")
        page.locator("select", has=page.locator("option", has_text="crowd_occlusion")).first \
            .select_option("shadow")
        page.get_by_role("button", name="False alarm").click()
        page.locator('p.action-done[data-verdict="false_alarm"][data-alarm="ev-shot-2"]').wait_for()

        # a unit dispatched, then the incident closed with an outcome
        message = click_dispatch(page)
        assert message.get_attribute("class") == "dispatch-done", message.text_content()
        unit = message.get_attribute("data-unit")
        page.locator("select", has=page.locator("option", has_text="no_action_needed")).first \
            .select_option("resolved")
        page.get_by_role("button", name="Close").click()
        page.locator('p.action-done[data-action="close"]').wait_for()
        expect(page.locator(f'article.selected-incident[data-incident="{ref}"]')).not_to_have_attribute(
            "data-status", "acknowledged")

        # the ledger tab counts the two verdicts
        page.get_by_text("Alarm ledger", exact=True).first.click()
        summary = page.locator(".ledger-summary").first
        expect(summary).to_contain_text("2 verdicts: 1 confirmed, 1 false alarms, 0 unsure")
        page.get_by_text("Live console", exact=True).first.click()

        # the police log's markup is shown as text, never run
        _choose(page, 1, "police_log")
        shown = page.locator("article.selected-incident", has_text=SCRIPT)
        shown.wait_for()
        page.locator("pre.event-text", has_text="<b>bold</b>").first.wait_for()
        _no_page_scroll(page)
        assert not failures, failures
    assert not dialogs, f"page ran script from incident text: {dialogs}"

    store = Store(state_dir)
    verdicts = store.read("verdicts").set_index("alarm_id")
    assert verdicts.loc[ref, "verdict"] == "confirmed" and verdicts.loc[ref, "alarm_type"] == "incident"
    assert verdicts.loc["ev-shot-2", "verdict"] == "false_alarm"
    assert verdicts.loc["ev-shot-2", "reason"] == "shadow"
    assert verdicts.loc["ev-shot-2", "alarm_type"] == "event"
    assert (verdicts["actor"] == "operator").all()
    incidents = store.read("incidents").set_index("incident_id")
    assert incidents.loc[ref, "status"] == "closed"
    log = store.read("audit_log")
    for action, target in (("dispatch", unit),):
        assert ((log["action"] == action) & (log["target"] == target)).any(), log.tail()
    assert {"acknowledge", "close"} <= set(log["action"]), set(log["action"])
