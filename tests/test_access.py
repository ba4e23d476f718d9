"""Access control: roles, refusing to serve openly, and logins in a real browser.

The browser tests run ``safecity serve`` (which execs a real ``panel serve``)
with Panel's basic auth on a small simulated city, and log in as an operator,
an analyst and a user with no role.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import chromium_page, click_dispatch, free_port, stop, wait_http, wait_settled
from test_operations_live import live_city  # noqa: F401  the small simulated city, as a fixture
from test_tuning_browser import FOCUS_HANDLE, READOUT_TEXT

from safecity.app import access

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
USERS = {"alice": ("operator", "alice-pw-1"), "bob": ("analyst", "bob-pw-2"),
         "carol": (None, "carol-pw-3")}


# -- roles and exposure, without a server ----------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", None])
def test_loopback_addresses(address):
    assert access.is_loopback(address)
    access.check_exposure(address, authenticated=False, allow_unauthenticated=False)


@pytest.mark.parametrize("address", ["0.0.0.0", "", "::", "192.168.1.20", "ops.example.org"])
def test_open_address_without_authentication_is_refused(address):
    assert not access.is_loopback(address)
    with pytest.raises(access.OpenServingError, match="without authentication"):
        access.check_exposure(address, authenticated=False, allow_unauthenticated=False)
    access.check_exposure(address, authenticated=True, allow_unauthenticated=False)
    access.check_exposure(address, authenticated=False, allow_unauthenticated=True)


def test_roles_grant_one_power_each():
    assert access.can_dispatch("operator") and not access.can_tune("operator")
    assert access.can_tune("analyst") and not access.can_dispatch("analyst")
    assert access.can_dispatch("local") and access.can_tune("local")
    assert not access.can_dispatch(None) and not access.can_tune(None)
    assert not access.can_dispatch("admin")


def test_roles_file_yaml_json_and_groups(tmp_path):
    yml = tmp_path / "roles.yaml"
    yml.write_text("users:\n  alice: operator\n  bob: analyst\n")
    js = tmp_path / "roles.json"
    js.write_text(json.dumps({"alice": "operator"}))
    roles = access.read_roles(yml)
    assert roles == {"alice": "operator", "bob": "analyst"}
    assert access.read_roles(js) == {"alice": "operator"}
    assert access.role_of("bob", roles) == "analyst"
    assert access.role_of("dave", roles) is None
    assert access.role_of("dave", roles, groups=["staff", "analyst"]) == "analyst"
    assert not access.authorize({"user": "dave"}) and not access.authorize(None)


def test_unknown_role_is_refused_naming_file_and_user(tmp_path):
    bad = tmp_path / "roles.yaml"
    bad.write_text("alice: operator\nmallory: admin\n")
    with pytest.raises(ValueError, match=r"roles\.yaml.*'mallory'.*'admin'"):
        access.read_roles(bad)


def test_readable_passwords_file_is_refused(tmp_path):
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"alice": "secret"}))
    creds.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        access.check_credentials_file(creds)
    creds.chmod(0o600)
    assert access.check_credentials_file(creds) == {"alice": "***"}


def test_served_address_from_the_command_line(monkeypatch):
    monkeypatch.delenv(access.ADDRESS_ENV, raising=False)
    monkeypatch.setattr(access, "listening_addresses", lambda: [])
    assert access.served_address(["serve", "app.py", "--address", "0.0.0.0"]) == "0.0.0.0"
    assert access.served_address(["serve", "--address=10.1.2.3"]) == "10.1.2.3"
    assert access.served_address(["serve", "app.py"]) is None
    monkeypatch.setattr(access, "listening_addresses", lambda: ["127.0.0.1", "0.0.0.0"])
    assert access.served_address([]) == "0.0.0.0"


def test_only_an_operator_dispatches(live_city, tmp_path):  # noqa: F811
    from safecity.app.dashboard import LiveView
    from safecity.app.engine import get_engine

    engine = get_engine(live_city, state_dir=tmp_path, run=False)
    engine.step(600)
    analyst = LiveView(engine, role="analyst", actor="bob")
    before = len(engine.audit(1000))
    assert analyst.button.disabled
    analyst.dispatch()
    assert "may not dispatch" in analyst.message.object
    assert len(engine.audit(1000)) == before, "a refused dispatch wrote to the audit log"
    assert not LiveView(engine, role="operator").button.disabled
    assert not LiveView(engine).button.disabled, "local demo (no login) may dispatch"
    assert LiveView(engine, role=None).button.disabled


def test_only_an_operator_acts_on_the_console(live_city, tmp_path):  # noqa: F811
    """The console's buttons: an analyst sees why they are grey, and a forced click does nothing."""
    from safecity.app.console import Console
    from safecity.app.engine import get_engine

    engine = get_engine(live_city, state_dir=tmp_path, run=False)
    engine.step(600)
    analyst = Console(engine, role="analyst", actor="bob")
    assert analyst.selected is not None, "the most urgent open incident is shown"
    assert all(b.disabled for b in analyst.buttons.values())
    assert "role-note" in analyst.message.object
    before = len(engine.audit(1000))
    for act in (analyst.dispatch, analyst.acknowledge, analyst.close,
                lambda: analyst.judge("confirmed")):
        act()
        assert "may not" in analyst.message.object, analyst.message.object
    assert len(engine.audit(1000)) == before and engine.verdicts().empty
    operator = Console(engine, role="operator")
    assert not operator.buttons["acknowledge"].disabled and not operator.buttons["confirmed"].disabled
    operator.acknowledge()
    assert 'data-action="acknowledge"' in operator.message.object
    assert engine.audit(1)["action"].iloc[0] == "acknowledge"


def test_only_an_analyst_tunes():
    import numpy as np

    from safecity.evaluation.tuning import AlarmTuner

    scores, labels = [np.linspace(0, 3, 40)], [np.arange(40) > 30]
    operator = AlarmTuner(["clip"], scores, labels, role="operator")
    with pytest.raises(TypeError, match="threshold"):
        operator.threshold = 1.0
    analyst = AlarmTuner(["clip"], scores, labels, role="analyst")
    analyst.threshold = 1.0
    assert analyst.metrics()["recall"] == 1.0


# -- safecity serve ------------------------------------------------------------------

def _cli(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "safecity.cli", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


def _page(url: str, proc, timeout: float = 240) -> str:
    """``wait_http`` with a patient request: the tuning page renders clips, ~20 s on a busy machine."""
    import time
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}: {proc.stdout.read()}"
        try:
            with urllib.request.urlopen(url, timeout=120) as resp:
                return resp.read().decode()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_serve_on_all_interfaces_without_login_is_refused():
    port = free_port()
    proc = _cli("serve", "dashboards/operations.py", "--address", "0.0.0.0", "--port", str(port))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "refusing to serve on address '0.0.0.0' without authentication" in out
    assert "--allow-unauthenticated" in out
    assert not _listening(port), "something listens although serving was refused"


def test_serve_refuses_basic_auth_without_roles_and_readable_passwords(tmp_path):
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"alice": "pw"}))
    creds.chmod(0o600)
    proc = _cli("serve", "dashboards/tuning.py", "--basic-auth", str(creds))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "--basic-auth needs --roles" in out
    creds.chmod(0o640)
    roles = tmp_path / "roles.yaml"
    roles.write_text("alice: operator\n")
    proc = _cli("serve", "dashboards/tuning.py", "--basic-auth", str(creds), "--roles", str(roles))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "credentials.json" in out and "chmod 600" in out
    assert "pw" not in out.replace("--basic-auth", "")


def test_allow_unauthenticated_starts_loudly_and_is_audited(tmp_path):
    from safecity.data.store import Store

    port = free_port()
    proc = _cli("serve", "dashboards/tuning.py", "--address", "0.0.0.0", "--port", str(port),
                "--allow-unauthenticated", "--state-dir", str(tmp_path),
                "--allow-websocket-origin", f"127.0.0.1:{port}")
    try:
        page = _page(f"http://127.0.0.1:{port}/tuning", proc)
        assert "safecity · alarm tuning" in page
    finally:
        stop(proc)
    assert "SERVING WITHOUT AUTHENTICATION on 0.0.0.0" in proc.stdout.read()
    log = Store(tmp_path).read("audit_log")
    row = log[log["action"] == "serve_unauthenticated"]
    assert len(row) == 1 and row["target"].iloc[0] == f"0.0.0.0:{port}"


def test_bare_panel_serve_on_all_interfaces_serves_no_page():
    """``panel serve --address 0.0.0.0`` without safecity serve: the app's guard refuses the page."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", "dashboards/tuning.py", "--address", "0.0.0.0",
         "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, env={k: v for k, v in os.environ.items()
                                                 if not k.startswith("SAFECITY_")})
    try:
        page = _page(f"http://127.0.0.1:{port}/tuning", proc)
    finally:
        stop(proc)
    assert "Authorization Error" in page and "not authorized" in page
    assert "alarm tuning" not in page
    assert "refusing to serve on address '0.0.0.0' without authentication" in proc.stdout.read()


# -- logins in a browser -------------------------------------------------------------

@pytest.fixture(scope="module")
def secured(live_city, tmp_path_factory):  # noqa: F811
    """``safecity serve`` of both dashboards with basic auth and a roles file."""
    folder = tmp_path_factory.mktemp("access")
    creds = folder / "credentials.json"
    creds.write_text(json.dumps({u: pw for u, (_, pw) in USERS.items()}))
    creds.chmod(0o600)
    roles = folder / "roles.yaml"
    roles.write_text("".join(f"{u}: {r}\n" for u, (r, _) in USERS.items() if r))
    state_dir = folder / "state"
    port = free_port()
    proc = _cli("serve", "dashboards/operations.py", "dashboards/tuning.py",
                "--address", "127.0.0.1", "--port", str(port), "--basic-auth", str(creds),
                "--roles", str(roles), "--allow-websocket-origin", f"127.0.0.1:{port}",
                env={"SAFECITY_DATA_DIR": str(live_city), "SAFECITY_STATE_DIR": str(state_dir),
                     "SAFECITY_REPLAY_SPEED": "60"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/login", proc)
        yield url, state_dir
    finally:
        stop(proc)


def _log_in(page, url: str, app: str, user: str) -> None:
    page.goto(f"{url}/{app}")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(USERS[user][1])
    # the click waits for the app's page, whose first session loads the city: 15-30 s when loaded
    page.get_by_role("button", name="Log in").click(timeout=60_000)
    page.wait_for_url(f"**/{app}*", timeout=60_000)


def _offline(requests, failures) -> None:
    hosts = {urlparse(u).hostname for u in requests if u.startswith("http")}
    assert hosts <= {"127.0.0.1", "localhost"}, f"requests left the machine: {hosts}"
    assert not failures, failures


@pytest.mark.browser
def test_unauthenticated_browser_gets_the_login_page(secured):
    url, _ = secured
    with chromium_page((900, 600)) as (page, requests, failures):
        page.goto(f"{url}/operations")
        assert "/login" in page.url
        page.locator("input[name=password]").wait_for()
        assert page.locator("span.live-counter").count() == 0
        page.screenshot(path=str(ARTIFACTS / "access_login.png"))
        page.locator("input[name=username]").fill("alice")
        page.locator("input[name=password]").fill("wrong")
        page.get_by_role("button", name="Log in").click()
        page.locator("p.errormessage", has_text="Invalid").wait_for(timeout=10_000)
    _offline(requests, failures)


@pytest.mark.browser
def test_operator_dispatches_and_is_named_in_the_audit(secured):
    from playwright.sync_api import expect

    from safecity.data.store import Store

    url, state_dir = secured
    with chromium_page((1400, 1200)) as (page, requests, failures):
        _log_in(page, url, "operations", "alice")
        button = page.get_by_role("button", name="Dispatch")
        button.wait_for(timeout=60_000)
        page.locator("article.incident").first.wait_for(timeout=30_000)
        page.locator("span.live-counter").first.wait_for(timeout=60_000)
        expect(button).to_be_enabled(timeout=60_000)
        outcome = click_dispatch(page)
        page.screenshot(path=str(ARTIFACTS / "access_operator.png"))
        assert outcome.get_attribute("class") == "dispatch-done", outcome.text_content()
        unit = outcome.get_attribute("data-unit")
        expect(page.locator("article.selected-incident")).to_have_attribute(
            "data-status", "dispatched", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "access_operator.png"))
    _offline(requests, failures)
    log = Store(state_dir).read("audit_log")
    mine = log[(log["action"] == "dispatch") & (log["target"] == unit)]
    assert list(mine["actor"]) == ["alice"]


@pytest.mark.browser
def test_analyst_cannot_dispatch(secured):
    url, _ = secured
    with chromium_page((1400, 1200)) as (page, requests, failures):
        _log_in(page, url, "operations", "bob")
        button = page.get_by_role("button", name="Dispatch")
        button.wait_for(timeout=60_000)
        page.locator("span.live-counter").first.wait_for(timeout=60_000)
        assert button.is_disabled()
        note = page.locator("p.role-note").first
        note.wait_for(timeout=10_000)
        assert "bob (analyst): only an operator may dispatch" in note.text_content()
        page.screenshot(path=str(ARTIFACTS / "access_analyst.png"))
    _offline(requests, failures)


@pytest.mark.browser
def test_user_without_a_role_gets_no_page(secured):
    url, _ = secured
    with chromium_page((900, 600)) as (page, _, _failures):
        _log_in(page, url, "operations", "carol")
        page.get_by_text("not authorized").first.wait_for(timeout=30_000)
        assert page.locator("span.live-counter").count() == 0


def _readout(page) -> str:
    page.wait_for_function(READOUT_TEXT, timeout=60_000)
    _settle(page)
    return page.evaluate(READOUT_TEXT)


def _settle(page) -> None:
    """Wait until the readout stops changing (the server has caught up with the slider)."""
    wait_settled(page, READOUT_TEXT, quiet_ms=1500)


@pytest.mark.browser
def test_analyst_tunes_operator_cannot(secured):
    url, _ = secured
    with chromium_page((1400, 800)) as (page, requests, failures):
        _log_in(page, url, "tuning", "bob")
        before = _readout(page)
        assert page.evaluate(FOCUS_HANDLE), "no slider handle (.noUi-handle) on the page"
        for _ in range(15):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(f"() => ({READOUT_TEXT})() !== {before!r}", timeout=20_000)
        _settle(page)  # on a busy machine the readout trails the key presses
        page.screenshot(path=str(ARTIFACTS / "access_tuning_analyst.png"))
    _offline(requests, failures)
    with chromium_page((1400, 800)) as (page, requests, failures):
        _log_in(page, url, "tuning", "alice")
        before = _readout(page)
        disabled = page.evaluate(
            "() => { let n = 0; const walk = r => r.querySelectorAll('*').forEach(e => {"
            " if (e.classList && e.classList.contains('noUi-target') && e.hasAttribute('disabled')) n++;"
            " if (e.shadowRoot) walk(e.shadowRoot); }); walk(document); return n; }")
        assert disabled >= 1, "the operator's threshold slider is not disabled"
        page.evaluate(FOCUS_HANDLE)
        for _ in range(15):
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(3000)
        assert page.evaluate(READOUT_TEXT) == before
        page.screenshot(path=str(ARTIFACTS / "access_tuning_operator.png"))
    _offline(requests, failures)
