"""Real servers for tests, each started on a free local port in a temporary folder.

A missing server program skips its tests with the reason, and fails them under
``SAFECITY_REQUIRE_DATA=1`` (CI), so that CI never passes by skipping what it checks.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def _require(program: str, candidates: tuple[str, ...]) -> str:
    """The path of ``program``, or skip (fail under ``SAFECITY_REQUIRE_DATA=1``)."""
    found = shutil.which(program) or next((c for c in candidates if Path(c).is_file()), None)
    if found:
        return found
    message = f"{program} is not installed (Debian: apt-get install {program})"
    if os.environ.get("SAFECITY_REQUIRE_DATA") == "1":
        pytest.fail(f"{message} (SAFECITY_REQUIRE_DATA=1)", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s: {log.read_text()[-2000:]}")


# --------------------------------------------------------------------------- mosquitto


class Mosquitto:
    """A real Mosquitto broker on 127.0.0.1: anonymous, or with ``users`` {name: password}.

    ``stop()`` and ``start()`` again keep the port, to test clients through a broker restart.
    """

    def __init__(self, folder: str | os.PathLike, users: dict[str, str] | None = None):
        self.binary = _require("mosquitto", ("/usr/sbin/mosquitto",))
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.log = self.folder / "mosquitto.log"
        self.proc: subprocess.Popen | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence false",
                 f"log_dest file {self.log}", "log_type all"]
        if os.geteuid() == 0:  # as root, mosquitto would become user 'mosquitto', who cannot read here
            lines.append("user root")
        if users:
            passwd = _require("mosquitto_passwd", ("/usr/bin/mosquitto_passwd",))
            pwfile = self.folder / "passwords"
            pwfile.touch(mode=0o600)
            for name, password in users.items():
                subprocess.run([passwd, "-b", str(pwfile), name, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        self.config = self.folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([self.binary, "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
