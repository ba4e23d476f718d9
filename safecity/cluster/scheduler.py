"""What ``--scheduler`` names, and a Dask client connected to it, for the length of a command."""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

#: ``local:N``: a LocalCluster of N single-threaded worker processes on this machine.
_LOCAL = re.compile(r"^local:(\d+)$")
#: ``tcp://HOST:PORT`` (or tls://): the address of a running ``dask scheduler``.
_REMOTE = re.compile(r"^(tcp|tls)://[^\s/:]+(:\d+)?$")


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed ``--scheduler``: either ``local_workers`` worker processes here, or an ``address``."""

    address: str | None = None
    local_workers: int | None = None

    def __str__(self) -> str:
        return self.address or f"local:{self.local_workers}"


def parse_scheduler(value: str) -> SchedulerSpec:
    """``local:N``, ``tcp://HOST:PORT`` or ``tls://HOST:PORT``; a ValueError that says what is wrong."""
    text = str(value).strip()
    local = _LOCAL.match(text)
    if local:
        n = int(local.group(1))
        if n < 1:
            raise ValueError(f"{text!r}: local:N needs at least one worker")
        return SchedulerSpec(local_workers=n)
    if _REMOTE.match(text):
        if text.startswith("tls://"):
            _check_tls(text)
        return SchedulerSpec(address=text)
    raise ValueError(f"{text!r}: expected local:N (N worker processes on this machine) "
                     "or tcp://HOST:PORT or tls://HOST:PORT (a running dask scheduler)")


#: The Dask settings a client needs to reach a ``tls://`` scheduler, and their environment variables.
TLS_SETTINGS = {"distributed.comm.tls.ca-file": "DASK_DISTRIBUTED__COMM__TLS__CA_FILE",
                "distributed.comm.tls.client.cert": "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT",
                "distributed.comm.tls.client.key": "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"}


def _check_tls(address: str) -> None:
    """A ``tls://`` scheduler needs the cluster's CA and this client's certificate and key (Dask's config).

    Between machines the tasks carry events, positions and the ingest token:
    a cluster that spans machines runs over TLS (see docs/cluster.md).
    """
    import dask

    missing = [f"{key} ({env})" for key, env in TLS_SETTINGS.items() if not dask.config.get(key, None)]
    if missing:
        raise ValueError(f"{address!r}: a tls:// scheduler needs the cluster's certificates; "
                         f"not set: {', '.join(missing)}")
    for key in TLS_SETTINGS:
        path = dask.config.get(key)
        if not os.path.isfile(path):
            raise ValueError(f"{address!r}: {key} names {path!r}, which is not a file")


@contextlib.contextmanager
def connect(spec: SchedulerSpec | str, *, memory_limit: str | None = "auto",
            worker_kwargs: dict | None = None) -> Iterator["distributed.Client"]:  # noqa: F821
    """A ``distributed.Client`` on ``spec``, closed (with its LocalCluster) when the block ends.

    A local cluster has one thread per worker process: the work is numpy and
    OpenCV, which release the GIL only in parts, and one process per core keeps
    a worker's memory its own (and killable alone, as a machine would die).
    """
    from distributed import Client, LocalCluster

    spec = parse_scheduler(spec) if isinstance(spec, str) else spec
    if spec.address is not None:
        try:
            client = Client(spec.address)
        except (OSError, TimeoutError) as err:  # unreachable, refused, or a TLS handshake refused
            raise ConnectionError(f"{spec.address}: no Dask scheduler answered ({err})") from None
        with client:
            yield client
        return
    with LocalCluster(n_workers=spec.local_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit=memory_limit,
                      **(worker_kwargs or {})) as cluster, Client(cluster) as client:
        yield client
