"""Benchmark of password guessing against ``safecity serve --basic-auth``.

Serves the tuning page on 127.0.0.1 with one operator, ``alice``, then posts
``--attempts`` wrong passwords for her to the login endpoint as fast as one
client can, and prints:

* wrong-password attempts per second;
* how many were checked and audited (``login_failed`` records) and how many
  lockouts began (``login_locked``): the rest were refused unchecked;
* whether alice's right password is then accepted (it is not while locked),
  and whether another user, ``bob``, still logs in from the same address.

Run it against the code on ``PYTHONPATH`` (the branch, or main for "before"):

    PYTHONPATH=. .venv/bin/python bench/login.py [--attempts 100]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import safecity

ROOT = Path(safecity.__file__).resolve().parents[1]
PASSWORDS = {"alice": "alice-right-pw", "bob": "bob-right-pw"}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(_NoRedirect)


def post_login(url: str, user: str, password: str) -> bool:
    """True if the server accepts the login (a redirect without ``error=``)."""
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        OPENER.open(url, data=data, timeout=60)
    except urllib.error.HTTPError as exc:
        return exc.code in (301, 302, 303) and "error=" not in exc.headers.get("Location", "")
    return False


def users_file(folder: Path) -> Path:
    """Hashed entries where ``safecity users add`` exists (the branch), else Panel's plain text."""
    path = folder / "users.json"
    try:
        from safecity.app.login import add_user
    except ImportError:
        path.write_text(json.dumps(PASSWORDS))
        path.chmod(0o600)
        return path
    for user, pw in PASSWORDS.items():
        add_user(path, user, pw)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=100)
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-login-"))
    roles = folder / "roles.yaml"
    roles.write_text("alice: operator\nbob: analyst\n")
    state = folder / "state"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "safecity.cli", "serve", "dashboards/tuning.py", "--port", str(port),
         "--basic-auth", str(users_file(folder)), "--roles", str(roles), "--state-dir", str(state)],
        cwd=ROOT, env={**os.environ, "SAFECITY_STATE_DIR": str(state)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/login"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                sys.exit(f"safecity serve exited with {proc.returncode}")
            try:
                urllib.request.urlopen(url, timeout=10).read()
                break
            except OSError:
                time.sleep(0.5)
        start = time.perf_counter()
        accepted = sum(post_login(url, "alice", f"wrong-{i}") for i in range(args.attempts))
        elapsed = time.perf_counter() - start
        alice_ok = post_login(url, "alice", PASSWORDS["alice"])
        bob_ok = post_login(url, "bob", PASSWORDS["bob"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    audited = {"login_failed": 0, "login_locked": 0}
    if (state / "state.sqlite").exists():
        from safecity.data.store import Store

        log = Store(state).read("audit_log")
        audited = {a: int((log["action"] == a).sum()) for a in audited}
    print(json.dumps({
        "safecity": str(ROOT), "attempts": args.attempts, "seconds": round(elapsed, 2),
        "attempts_per_s": round(args.attempts / elapsed, 1), "wrong_accepted": accepted,
        "checked_and_audited": audited["login_failed"], "lockouts": audited["login_locked"],
        "refused_unchecked": args.attempts - audited["login_failed"] if audited["login_failed"] else None,
        "alice_right_password_after": alice_ok, "bob_same_address_after": bob_ok}, indent=1))


if __name__ == "__main__":
    main()
