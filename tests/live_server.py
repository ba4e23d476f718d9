"""A real ``safecity serve --live`` for the tests: tokens, a city, a state directory."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from conftest import ROOT, free_port, stop

#: The sources the tests use: name -> (tables, rate in rows/s or None).
SOURCES = {
    "acoustic": ("events", None),
    "cameras": ("events,observations,cameras", None),
    "avl": ("units", None),
    "police": ("police-log", None),
    "flood": ("events", 20.0),
}


def make_city(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "safecity.cli", "simulate", "--out", str(out),
                    "--days", "1", "--no-clips"], check=True, capture_output=True)
    return out


def make_tokens(path: Path) -> dict[str, str]:
    from safecity.ingest.tokens import create_token

    return {name: create_token(path, name, tables, rate) for name, (tables, rate) in SOURCES.items()}


@dataclass
class LiveServer:
    url: str
    tokens: dict[str, str]
    state_dir: Path
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, body=None, token: str | None = "acoustic",
                raw: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | list]:
        """(status, parsed JSON answer) of one request; ``token`` names a source (None: none)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        if token is not None:
            req.add_header("Authorization", f"Bearer {self.tokens.get(token, token)}")
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def post(self, table: str, rows, token: str = "acoustic") -> tuple[int, dict]:
        return self.request("POST", f"/api/v1/{table}", rows, token)

    def get(self, path: str, token: str | None = "acoustic"):
        return self.request("GET", path, None, token)


def start(city: Path, state_dir: Path, tokens_file: Path, tokens: dict[str, str],
          port: int | None = None, state: str | None = None) -> LiveServer:
    port = port or free_port()
    cmd = [sys.executable, "-m", "safecity.cli", "serve", str(ROOT / "dashboards" / "operations.py"),
           "--live", "--ingest-tokens", str(tokens_file), "--state-dir", str(state_dir),
           "--data-dir", str(city), "--port", str(port),
           "--allow-websocket-origin", f"127.0.0.1:{port}"]
    if state:
        cmd += ["--state", state]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ})
    server = LiveServer(f"http://127.0.0.1:{port}", tokens, state_dir, proc)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            status, _ = server.get("/api/v1/health", token=None)
            if status == 200:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise AssertionError("the live server did not answer /api/v1/health in 180 s")


@contextlib.contextmanager
def live_server(city: Path, state_dir: Path, tokens_file: Path, tokens: dict[str, str], **kw):
    server = start(city, state_dir, tokens_file, tokens, **kw)
    try:
        yield server
    finally:
        stop(server.proc)
