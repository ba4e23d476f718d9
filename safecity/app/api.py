"""The ingest API (``/api/v1/``), served in the dashboards' process by ``safecity serve --live``.

``panel serve --plugins safecity.app.api`` adds ``ROUTES`` to Panel's Tornado server,
so the API and the operator's page share one engine (``engine.get_engine``) and no
second port. Environment (set by ``safecity serve --live``):

- ``SAFECITY_INGEST_TOKENS``: the token file (``safecity ingest token``); unset: no API.
- ``SAFECITY_DATA_DIR``: the city's roads and zones; ``SAFECITY_STATE_DIR`` / ``SAFECITY_STATE``:
  where the engine keeps what it receives.
- ``SAFECITY_INGEST_MAX_BYTES`` (default 4 MB) and ``SAFECITY_INGEST_RATE`` (rows per
  second per source, default 5,000, bursts of two seconds' worth) bound each source.

Answers: ``202 {"accepted": n, "duplicates": m}`` once the rows are on disk; ``400`` naming
the row and field (nothing of the request stored); ``401`` without a valid token;
``403`` for a table the token may not write; ``409`` for a known key with other values;
``413`` past the size limit; ``429`` with ``Retry-After`` when a source floods (other
sources keep their own budget). Storing runs in a thread pool, so a slow disk never
stalls the page's sessions on the same event loop.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from safecity.app.camera_feed import feed_handler, get_feed
from safecity.app.engine import get_engine
from safecity.data.inbox import json_rows
from safecity.data.schema import SchemaError
from safecity.ingest.rows import RowError
from safecity.ingest.tokens import Source, TokenBook

TOKENS_ENV = "SAFECITY_INGEST_TOKENS"
MAX_BYTES = int(os.environ.get("SAFECITY_INGEST_MAX_BYTES", 4 * 1024 * 1024))
RATE = float(os.environ.get("SAFECITY_INGEST_RATE", 5000))
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="safecity-ingest")


class Budget:
    """A token bucket per source: ``rate`` rows per second, bursts of ``burst_s`` seconds."""

    def __init__(self, rate: float, burst_s: float = 2.0):
        self.rate, self.capacity = rate, rate * burst_s
        self._level: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, source: Source, n: int) -> float:
        """0 when ``n`` rows may pass now, else the seconds to wait before trying again."""
        rate = source.rate or self.rate
        capacity = rate * self.capacity / self.rate
        with self._lock:
            now = time.monotonic()
            level, since = self._level.get(source.name, (capacity, now))
            level = min(capacity, level + (now - since) * rate)
            if n <= level:
                self._level[source.name] = (level - n, now)
                return 0.0
            self._level[source.name] = (level, now)
            return (min(n, capacity) - level) / rate


def _engine():
    return get_engine(os.environ.get("SAFECITY_DATA_DIR", Path(__file__).resolve().parents[2]
                                     / "demo-data"))


class _Api(RequestHandler):
    book: TokenBook | None = None
    budget = Budget(RATE)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def answer(self, status: int, body) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, default=str))

    def source(self) -> Source | None:
        """The caller's source, or None after answering 401."""
        found = self.book.check(self.request.headers.get("Authorization"))
        if found is None:
            self.set_header("WWW-Authenticate", 'Bearer realm="safecity"')
            self.answer(401, {"error": "a valid bearer token is required "
                                       "(Authorization: Bearer <token>)"})
        return found

    def check_xsrf_cookie(self) -> None:  # bearer tokens, not cookies: no CSRF to guard against
        pass


class IngestHandler(_Api):
    """``POST /api/v1/{events,observations,units,police-log}``; ``GET /api/v1/units``."""

    async def post(self, table: str) -> None:
        source = self.source()
        if source is None:
            return
        if not source.may_write(table):
            return self.answer(403, {"error": f"the token of '{source.name}' may not write "
                                              f"{table} (it may write {', '.join(sorted(source.tables))})"})
        size = len(self.request.body)
        if size > MAX_BYTES:
            return self.answer(413, {"error": f"body of {size} bytes is over the limit of "
                                              f"{MAX_BYTES}; send smaller batches"})
        try:
            rows = json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as err:
            return self.answer(400, {"error": f"invalid JSON: {err}"})
        wait = self.budget.take(source, len(rows) if isinstance(rows, list) else 1)
        if wait:
            self.set_header("Retry-After", str(max(1, math.ceil(wait))))
            return self.answer(429, {"error": f"'{source.name}' is over its rate of "
                                              f"{source.rate or RATE:.0f} rows/s; retry later"})
        try:
            result = await IOLoop.current().run_in_executor(
                _POOL, _engine().ingest, table, rows, source.name)
        except RowError as err:
            return self.answer(400, {"error": str(err), "row": err.row, "field": err.field})
        except SchemaError as err:  # a key already stored with other values, or a unit rule
            return self.answer(409, {"error": str(err)})
        except (KeyError, ValueError) as err:  # unknown unit, impossible status change
            return self.answer(400, {"error": str(err).strip("'\"")})
        self.answer(202, result)

    def get(self, table: str) -> None:
        if table != "units":
            return self.answer(405, {"error": "GET is for /api/v1/units and /api/v1/incidents"})
        if self.source() is None:
            return
        self.answer(200, json_rows(_engine().positions()))


class IncidentsHandler(_Api):
    """``GET /api/v1/incidents?since=ISO``: the incidents (merged ones included), oldest first."""

    def get(self) -> None:
        if self.source() is None:
            return
        since = self.get_argument("since", None)
        if since is not None:
            try:
                since = pd.Timestamp(since)
            except ValueError:
                return self.answer(400, {"error": f"since={since!r}: not an ISO 8601 time"})
            if since.tz is None:
                return self.answer(400, {"error": "since: add the zone (Z or +01:00)"})
        self.answer(200, json_rows(_engine().incidents_since(since)))


class HealthHandler(_Api):
    """``GET /api/v1/health`` (no token): status, uptime, lag, queue depth, sources last seen."""

    def get(self) -> None:
        self.answer(200, _engine().health())


def _camera_token(request, table: str) -> str:
    """The camera feed's check: the posting source's name, else 401/403."""
    found = _Api.book.check(request.headers.get("Authorization"))
    if found is None:
        raise HTTPError(401, "a valid bearer token is required")
    if not found.may_write(table):
        raise PermissionError(f"the token of '{found.name}' may not post camera tiles")
    _engine().last_seen[found.name] = pd.Timestamp.now(tz="UTC")
    return found.name


def routes() -> list[tuple]:
    """The API's routes, or none when no token file is configured."""
    path = os.environ.get(TOKENS_ENV)
    if not path:
        return []
    _Api.book = TokenBook.load(path)
    return [
        (r"/api/v1/health", HealthHandler),
        (r"/api/v1/incidents", IncidentsHandler),
        (r"/api/v1/(events|observations|units|police-log)", IngestHandler),
        (r"/api/v1/cameras/([A-Za-z0-9_.-]+)", feed_handler(get_feed(), _camera_token)),
    ]


ROUTES = routes()
if ROUTES:  # the engine runs from the start, not from the first page or post
    _engine()
