"""Hardening of the served pages and of access control (issue 16, items 2, 6, 10 and 12).

Browser tests run a real ``panel serve`` / ``safecity serve`` and drive Debian's Chromium;
the server's output goes to a file, read after the fact for tracebacks.
"""
from __future__ import annotations

import contextlib
import os
import re
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
    assert "NameError" not in out and "Error running" not in out, out[-5000:]
    # Tornado's own noise when a message races a closing tab's socket is not ours; anything else is
    out = re.sub(r"Task exception was never retrieved\n.*?tornado\.websocket\.WebSocketClosedError\n",
                 "", out, flags=re.S)
    assert "Traceback" not in out, out[-5000:]


# -- item 6: hashed passwords, throttling, audited failures --------------------------------

PASSWORDS = {"alice": ("operator", "alice-right-pw"), "bob": ("analyst", "bob-right-pw"),
             "dave": ("operator", "dave-right-pw"), "carol": (None, "carol-right-pw")}


def _users_add(*args, password: str | None = None):
    return subprocess.run([sys.executable, "-m", "safecity.cli", "users", "add", *args],
                          cwd=ROOT, input=password, capture_output=True, text=True)


def test_users_add_writes_scrypt_hashes_in_a_private_file(tmp_path):
    import json
    import stat

    from safecity.app import login

    users = tmp_path / "users.json"
    done = _users_add("alice", "--file", str(users), "--role", "operator", "--password-stdin",
                      password="alice-right-pw\n")
    assert done.returncode == 0, done.stderr
    assert _users_add("bob", "--file", str(users), "--password-stdin",
                      password="bob-right-pw\n").returncode == 0
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    text = users.read_text()
    assert "right-pw" not in text
    data = json.loads(text)
    assert set(data) == {"alice", "bob"} and data["alice"]["role"] == "operator"
    scheme, params, salt, digest = data["alice"]["hash"].split("$")
    assert scheme == "scrypt" and params == "n=16384,r=8,p=1"
    assert salt != data["bob"]["hash"].split("$")[2], "salts must differ per user"
    read = login.read_users(users)
    assert login.check(read, "alice", "alice-right-pw")
    assert not login.check(read, "alice", "bob-right-pw") and not login.check(read, "eve", "x")
    # a short password, a bad role, a broken file: clear errors, nothing written
    short = _users_add("carol", "--file", str(users), "--password-stdin", password="short\n")
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    assert _users_add("carol", "--file", str(users), "--role", "admin", "--password-stdin",
                      password="carol-right-pw\n").returncode != 0
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    broken.chmod(0o600)
    bad = _users_add("carol", "--file", str(broken), "--password-stdin", password="carol-right-pw\n")
    assert bad.returncode != 0 and "broken.json" in bad.stderr and "Traceback" not in bad.stderr
    assert broken.read_text() == "{not json"
    assert json.loads(users.read_text()) == data


def test_users_add_prompts_twice(tmp_path):
    from click.testing import CliRunner

    from safecity.app import login
    from safecity.cli import main

    users = tmp_path / "users.json"
    result = CliRunner().invoke(main, ["users", "add", "erin", "--file", str(users)],
                                input="erin-right-pw\nerin-typo-pw\nerin-right-pw\nerin-right-pw\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output
    assert login.check(login.read_users(users), "erin", "erin-right-pw")


def test_throttle_locks_a_name_for_a_growing_delay():
    from safecity.app.login import LoginThrottle

    now = [0.0]
    t = LoginThrottle(user_limit=5, address_limit=20, base_delay_s=30, clock=lambda: now[0])
    started = [t.failed("alice", "10.0.0.1") for _ in range(5)]
    assert started[:4] == [[]] * 4 and started[4] == [("user", "alice", 30)]
    assert t.locked("alice", "10.0.0.1") > 0 and t.locked("alice", "10.0.0.9") > 0
    assert t.locked("bob", "10.0.0.1") == 0, "one name's lockout must not lock the address"
    now[0] = 31
    assert t.locked("alice", "10.0.0.1") == 0
    assert t.failed("alice", "10.0.0.1") == [("user", "alice", 60)]  # doubled
    # an address spraying many names is locked too
    for i in range(14):
        t.failed(f"user{i}", "10.0.0.1")
    assert t.locked("zoe", "10.0.0.1") > 0 and t.locked("zoe", "10.0.0.2") == 0


@pytest.fixture(scope="module")
def secured_hashed(live_city, tmp_path_factory):  # noqa: F811
    """``safecity serve`` of two dashboards with a hashed users file carrying the roles."""
    from safecity.app import login

    folder = tmp_path_factory.mktemp("logins")
    users = folder / "users.json"
    for user, (role, pw) in PASSWORDS.items():
        login.add_user(users, user, pw, role)
    state = folder / "state"
    port = free_port()
    cmd = [sys.executable, "-m", "safecity.cli", "serve", "dashboards/operations.py",
           "dashboards/tuning.py", "--port", str(port), "--basic-auth", str(users),
           "--state-dir", str(state), "--allow-websocket-origin", f"127.0.0.1:{port}"]
    env = {"SAFECITY_DATA_DIR": str(live_city), "SAFECITY_REPLAY_SPEED": "60"}
    log = folder / "server.log"
    url = f"http://127.0.0.1:{port}"
    with serving(cmd, log, env) as proc:
        wait_http(f"{url}/login", proc)
        yield url, state, log


def _post_login(url: str, user: str, password: str) -> bool:
    """A login form post as a browser sends it; True if accepted (a redirect without error=)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        urllib.request.build_opener(NoRedirect).open(f"{url}/login", data=data, timeout=60)
    except urllib.error.HTTPError as exc:
        return exc.code in (301, 302, 303) and "error=" not in exc.headers.get("Location", "")
    return False


def test_repeated_failures_lock_the_name_and_are_audited(secured_hashed):
    from safecity.data.store import Store

    url, state, _ = secured_hashed
    assert _post_login(url, "dave", "dave-right-pw")
    wrong = [f"guess-{i}-secret" for i in range(7)]
    assert not any(_post_login(url, "dave", pw) for pw in wrong)
    assert not _post_login(url, "dave", "dave-right-pw"), "the right password got in while locked"
    assert _post_login(url, "bob", "bob-right-pw"), "another user was locked out with dave"
    log = Store(state).read("audit_log")
    failed = log[log["action"] == "login_failed"]
    locked = log[log["action"] == "login_locked"]
    assert len(failed[failed["actor"] == "dave"]) == 5, "failures after the lockout were checked"
    assert set(failed["target"]) == {"127.0.0.1"}
    assert len(locked) == 1 and locked["actor"].iloc[0] == "dave"
    assert '"by": "user"' in locked["details"].iloc[0]
    everything = log.to_string() + (state / "state.sqlite").read_bytes().decode("latin-1")
    assert not any(pw in everything for pw in [*wrong, "dave-right-pw", "bob-right-pw"])


def test_plain_text_users_file_is_served_with_a_warning(tmp_path):
    import json

    users = tmp_path / "plain.json"
    users.write_text(json.dumps({"alice": "alice-right-pw"}))
    users.chmod(0o600)
    roles = tmp_path / "roles.yaml"
    roles.write_text("alice: operator\n")
    port = free_port()
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "safecity.cli", "serve", "dashboards/tuning.py", "--port",
           str(port), "--basic-auth", str(users), "--roles", str(roles)]
    with serving(cmd, log) as proc:
        wait_http(f"http://127.0.0.1:{port}/login", proc)
        assert _post_login(f"http://127.0.0.1:{port}", "alice", "alice-right-pw")
        assert not _post_login(f"http://127.0.0.1:{port}", "alice", "alice-wrong-pw")
    out = log.read_text()
    assert "plain text" in out and "safecity users add" in out and "alice-right-pw" not in out


# -- item 10: the pages around the dashboards load nothing from outside ---------------------

def _only_local(requests) -> None:
    from urllib.parse import urlparse

    hosts = {urlparse(u).hostname for u in requests if u.startswith("http")}
    assert hosts <= {"127.0.0.1"}, f"requests left the machine: {sorted(hosts)}"


@pytest.mark.browser
def test_index_logout_and_refusal_pages_are_offline(secured_hashed):
    from conftest import chromium_page

    url, _, _ = secured_hashed
    with chromium_page((900, 600)) as (page, requests, _failures):
        page.goto(f"{url}/login")
        page.locator("input[name=username]").fill("alice")
        page.locator("input[name=password]").fill("alice-right-pw")
        page.get_by_role("button", name="Log in").click()
        page.locator("ul.apps a", has_text="operations").wait_for(timeout=60_000)  # the index
        assert page.locator("ul.apps a", has_text="tuning").count() == 1
        page.goto(f"{url}/logout")
        page.get_by_text("signed out").first.wait_for(timeout=30_000)
        # carol has no role: the authorization error page
        page.goto(f"{url}/operations")
        page.locator("input[name=username]").fill("carol")
        page.locator("input[name=password]").fill("carol-right-pw")
        page.get_by_role("button", name="Log in").click()
        page.get_by_text("not authorized").first.wait_for(timeout=60_000)
        assert page.locator("span.live-counter").count() == 0
    _only_local(requests)


# -- item 12: who served without authentication ----------------------------------------

def _wait_for_audit(state_dir: Path, proc, timeout: float = 120) -> None:
    import sqlite3
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        db = state_dir / "state.sqlite"
        if db.exists():
            with contextlib.closing(sqlite3.connect(db)) as conn:
                try:
                    if conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]:
                        return
                except sqlite3.OperationalError:  # the table is being created
                    pass
        assert proc.poll() is None, (state_dir / "server.log").read_text()
        time.sleep(0.2)
    raise AssertionError("no audit record")


def test_unauthenticated_serving_is_audited_with_the_os_user(tmp_path):
    import pwd

    from safecity.data.store import Store

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    cmd = [sys.executable, "-m", "safecity.cli", "serve", "dashboards/tuning.py", "--address",
           "0.0.0.0", "--port", str(port), "--allow-unauthenticated", "--state-dir", str(tmp_path)]
    with open(tmp_path / "server.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            _wait_for_audit(tmp_path, proc)  # written before panel serve starts
        finally:
            stop(proc)
    row = Store(tmp_path).read("audit_log").query("action == 'serve_unauthenticated'")
    try:
        expected = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        expected = f"uid:{os.getuid()}"
    assert list(row["actor"]) == [expected]
