"""Real servers for the tests, each on a free local port in its own temporary folder.

The tests start what they talk to (PostgreSQL, Mosquitto),
never a mock, and never the machine's own service: a Debian package may have
started a cluster on the default port, which the tests neither use nor need.

Servers that refuse to run as root (PostgreSQL) run as an unprivileged user
when the tests run as root, as CI does: ``runuser -u postgres`` (or
``nobody``) on a folder given to that user. A server that is not installed
skips its tests, or fails them with ``SAFECITY_REQUIRE_DATA=1`` (CI), so that
CI never passes by skipping what it is meant to check.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable(message: str):
    """Skip the test for want of ``message``'s server, or fail it in CI."""
    if os.environ.get("SAFECITY_REQUIRE_DATA") == "1":
        pytest.fail(f"{message} (SAFECITY_REQUIRE_DATA=1)", pytrace=False)
    pytest.skip(message)


def find_binary(name: str, dirs: list[str] = ()) -> Path | None:
    """``name`` in the first of ``dirs`` (globs allowed, newest version first) holding it, else PATH."""
    for pattern in dirs:
        for folder in sorted(glob.glob(pattern), reverse=True):
            path = Path(folder) / name
            if path.is_file() and os.access(path, os.X_OK):
                return path
    found = shutil.which(name)
    return Path(found) if found else None


def service_user() -> str | None:
    """Whom to run a server as: None (ourselves) unless we are root, then postgres or nobody."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root, and neither user 'postgres' nor 'nobody' exists "
                       "to run the test servers as")


def as_user(command: list, user: str | None) -> list[str]:
    return [str(c) for c in command] if user is None else ["runuser", "-u", user, "--",
                                                            *map(str, command)]


def private_dir(prefix: str, user: str | None) -> Path:
    """A new folder under the system's temporary folder (reachable by ``user``), owned by ``user``.

    Not under pytest's tmp_path: that lives in a folder only its owner may enter.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def run(command: list[str], what: str, cwd: Path, log: Path | None = None) -> None:
    """Run a setup command; on failure raise with its output (and the server's log)."""
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{what} failed ({out.returncode}): {out.stdout[-3000:]}"
                           f"{out.stderr[-3000:]}\n{tail}")


# --------------------------------------------------------------------------- PostgreSQL

POSTGRES_DIRS = ["/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"]


def postgres_bindir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, Debian's, or PATH."""
    dirs = list(POSTGRES_DIRS)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                timeout=30).stdout.strip()
        if bindir:
            dirs.insert(0, bindir)
    initdb = find_binary("initdb", dirs)
    if initdb is None or not (initdb.parent / "pg_ctl").exists():
        return None
    return initdb.parent


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster: superuser ``user`` with a password, TCP on 127.0.0.1."""

    bindir: Path
    root: Path
    port: int
    run_as: str | None
    user: str = "safecity"
    password: str = ""
    database: str = "safecity_test"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str | None = None) -> str:
        return (f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/"
                f"{database or self.database}")

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as is not None:
            shutil.chown(pwfile, self.run_as)
        pwfile.chmod(0o600)
        try:
            run(as_user([self.bindir / "initdb", "-D", self.data, "-U", self.user,
                         f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                         "--locale=C"], self.run_as), "initdb", self.root)
        finally:
            pwfile.unlink()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-k {shlex.quote(str(self.root))} -c fsync=off")
        run(as_user([self.bindir / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "120",
                     "-o", options, "start"], self.run_as), "pg_ctl start", self.root, self.log)
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            run(as_user([self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "120",
                         "stop"], self.run_as), "pg_ctl stop", self.root, self.log)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server with an empty database, removed afterwards.

    Skips (fails in CI) when PostgreSQL is not installed.
    """
    bindir = postgres_bindir()
    if bindir is None:
        unavailable("PostgreSQL is not installed (no initdb/pg_ctl via pg_config, "
                    f"{', '.join(POSTGRES_DIRS)} or PATH; Debian: apt-get install postgresql)")
    user = service_user()
    root = private_dir("safecity-pg-", user)
    server = PostgresServer(bindir, root, free_port(), user, password=secrets.token_hex(12))
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """``url`` on a new, empty schema of its database (the URL's search_path), dropped afterwards.

    Tests share one server but never each other's tables.
    """
    import uuid

    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{url}?options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


# --------------------------------------------------------------------------- Mosquitto

def _require(program: str, candidates: tuple[str, ...]) -> str:
    """The path of ``program``, or skip (fail under ``SAFECITY_REQUIRE_DATA=1``)."""
    found = shutil.which(program) or next((c for c in candidates if Path(c).is_file()), None)
    if found:
        return found
    unavailable(f"{program} is not installed (Debian: apt-get install {program})")


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
        self.port = free_port()
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


def wait_for_line(stream, text: str) -> list[str]:
    """Read a process's output until a line holding ``text`` (what it printed so far), or fail
    with that output when the stream ends first."""
    log = []
    for line in stream:
        log.append(line)
        if text in line:
            return log
    raise AssertionError(f"no line with {text!r} in:\n" + "".join(log))


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 1, tls: tuple[str, str, str] | None = None,
                 env: dict | None = None) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A ``dask scheduler`` and ``workers`` one-thread ``dask worker`` processes, as a deployment starts
    them (over TLS with ``tls`` = (CA, certificate, key)); (the scheduler's address, [scheduler, workers...])."""
    dask = str(Path(sys.executable).parent / "dask")
    options = [] if tls is None else ["--tls-ca-file", tls[0], "--tls-cert", tls[1], "--tls-key", tls[2]]
    scheduler_file = folder / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--protocol", "tls" if tls else "tcp", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file),
                               *options], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(folder / "scheduler.log", "w"))]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert procs[0].poll() is None and time.monotonic() < deadline, \
                (folder / "scheduler.log").read_text()
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for k in range(workers):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--host", "127.0.0.1", *options], env=env,
                                          stdout=subprocess.DEVNULL,
                                          stderr=open(folder / f"worker-{k}.log", "w")))
        yield address, procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)  # a test may have frozen it
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
