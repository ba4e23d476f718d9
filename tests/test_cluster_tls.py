"""A cluster across machines runs over TLS: a real ``dask scheduler`` and ``dask worker`` with certificates.

The tasks carry events, positions and the ingest token: between machines they
travel encrypted. The certificates are made here by ``openssl`` (a private CA
signing one certificate that the scheduler, the workers and the client share),
as a deployment would make its own.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from servers import dask_cluster

from safecity.cluster.scheduler import TLS_SETTINGS
from safecity.data.store import Store

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """(ca.pem, cert.pem, key.pem): a private CA and one certificate it signed for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=safecity test CA",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=folder)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "key.pem",
             "-out", "cert.csr", cwd=folder)
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "cert.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "cert.pem", cwd=folder)
    return folder / "ca.pem", folder / "cert.pem", folder / "key.pem"


def _tls_env(certificates) -> dict:
    ca, cert, key = map(str, certificates)
    env = dict(os.environ)
    env.update(zip(TLS_SETTINGS.values(), (ca, cert, key)))
    env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] = "True"
    return env


@pytest.fixture(scope="module")
def tls_cluster(certificates, tmp_path_factory):
    """A ``dask scheduler`` and one ``dask worker`` speaking TLS only; the scheduler's address."""
    from distributed import Client
    from distributed.security import Security

    ca, cert, key = map(str, certificates)
    with dask_cluster(tmp_path_factory.mktemp("tls-cluster"), 1, (ca, cert, key), _tls_env(certificates)) \
            as (address, _):
        assert address.startswith("tls://")
        security = Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)
        with Client(address, security=security) as client:
            client.wait_for_workers(1, timeout=60)
        yield address


@pytest.mark.timeout(240)
def test_video_run_on_a_tls_cluster(tls_cluster, certificates, tmp_path):
    """``safecity video run --scheduler tls://...`` with the certificates in Dask's environment variables."""
    from test_cluster_cameras import _write_installation

    config = _write_installation(tmp_path, {"one": ("normal", (320, 240))}, n_frames=40)
    result = subprocess.run([sys.executable, "-m", "safecity.cli", "video", "run", "--config", str(config),
                             "--scheduler", tls_cluster, "--data-dir", str(tmp_path / "store"), "--bin", "2"],
                            env=_tls_env(certificates), capture_output=True, text=True, timeout=200)
    assert result.returncode == 0, result.stderr
    (summary,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert summary["status"] == "ok" and summary["frames"] == 40 and summary["worker"].startswith("tls://")
    assert len(Store(tmp_path / "store").read("observations")) == summary["observations"] > 0


def test_a_tls_scheduler_without_certificates_is_a_clear_error(tls_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_DISTRIBUTED__COMM__TLS")}
    counts = tmp_path / "counts.csv"
    counts.write_text("ts,sensor_id,value\n2026-06-01T08:00:00Z,s1,3\n")
    result = subprocess.run([sys.executable, "-m", "safecity.cli", "baseline", "flag", "--observations",
                             str(counts), "--scheduler", tls_cluster],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "tls:// scheduler needs the cluster's certificates" in result.stderr
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in result.stderr and "Traceback" not in result.stderr


def test_a_plain_client_is_refused_by_the_tls_cluster(tls_cluster):
    """Nothing reaches the cluster in clear: a tcp:// client to the same port gets no session."""
    from distributed import Client

    plain = "tcp://" + tls_cluster.removeprefix("tls://")
    with pytest.raises((OSError, TimeoutError)):
        Client(plain, timeout="3s")


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path):
    from test_cluster_cameras import _write_installation

    config = _write_installation(tmp_path, {"one": ("normal", (320, 240))}, n_frames=5)
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    result = subprocess.run([sys.executable, "-m", "safecity.cli", "video", "run", "--config", str(config),
                             "--scheduler", "tcp://127.0.0.1:9", "--data-dir", str(tmp_path / "store")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "tcp://127.0.0.1:9: no Dask scheduler answered" in result.stderr


@pytest.mark.parametrize("value, message", [
    ("dask-host:8786", "expected local:N (N worker processes on this machine) or tcp://HOST:PORT or tls://"),
    ("local:0", "local:N needs at least one worker"),
    ("http://dask-host:8786", "expected local:N"),
])
def test_a_bad_scheduler_is_refused_naming_the_accepted_forms(value, message, tmp_path):
    from click.testing import CliRunner

    from safecity.cli import main

    counts = tmp_path / "counts.csv"
    counts.write_text("ts,sensor_id,value\n2026-06-01T08:00:00Z,s1,3\n")
    result = CliRunner().invoke(main, ["baseline", "flag", "--observations", str(counts), "--scheduler", value])
    assert result.exit_code == 2 and message in result.output and repr(value) in result.output
