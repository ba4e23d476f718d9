"""How a source sends rows: to a running server's ingest API, or straight into a store.

Both sinks have one method, ``post(table, rows) -> {"accepted": n, "duplicates": m}``,
so a camera worker or a bridge is written once and pointed at either. Rows are plain
JSON-able dicts in the data model's columns (timestamps as ISO 8601 strings with a zone).
The HTTP sink retries what the server did not acknowledge (connection refused, 429,
5xx) with backoff: ingestion is idempotent, so sending a batch again is always safe.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

#: The tables a source may post, as the API names them.
TABLES = ("events", "observations", "units", "police-log")


class Sink(Protocol):
    def post(self, table: str, rows: Sequence[dict]) -> dict: ...


class IngestError(RuntimeError):
    """The server refused a batch (bad input, bad token): retrying would not help."""

    def __init__(self, status: int, body: str):
        self.status = status
        super().__init__(f"HTTP {status}: {body[:500]}")


def read_token(path: str | os.PathLike) -> str:
    """The bearer token kept in ``path`` (its first line), never echoed in errors."""
    text = Path(path).read_text(encoding="utf-8").strip().splitlines()
    if not text or not text[0].strip():
        raise ValueError(f"{path}: no token in the file")
    return text[0].strip()


@dataclass
class HttpSink:
    """Posts to ``{url}/api/v1/{table}`` with a bearer token; retries until acknowledged."""

    url: str
    token: str
    timeout_s: float = 30.0
    retries: int = 8

    def post(self, table: str, rows: Sequence[dict]) -> dict:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r} (expected one of {', '.join(TABLES)})")
        body = json.dumps(list(rows), default=str).encode()
        request = urllib.request.Request(
            f"{self.url.rstrip('/')}/api/v1/{table}", data=body, method="POST",
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                text = err.read().decode(errors="replace")
                if err.code != 429 and err.code < 500:
                    raise IngestError(err.code, text) from None
                retry_after = err.headers.get("Retry-After")
                wait = float(retry_after) if retry_after else delay
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                wait = delay
            if attempt == self.retries:
                break
            time.sleep(wait)
            delay = min(delay * 2, 5.0)
        raise ConnectionError(f"{self.url}: {table} not acknowledged after {self.retries + 1} tries")


@dataclass
class StoreSink:
    """Writes straight into a data directory's store (no server running)."""

    data_dir: str | os.PathLike
    source: str = "direct"

    def post(self, table: str, rows: Sequence[dict]) -> dict:
        from safecity.data.store import Store
        from safecity.ingest.rows import parse_rows

        parsed = parse_rows(table, list(rows))
        stored_table = "events" if table == "police-log" else table
        accepted = Store(self.data_dir).append(stored_table, parsed)
        return {"accepted": int(accepted), "duplicates": len(parsed) - int(accepted)}
