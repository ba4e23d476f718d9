"""An MQTT bridge: messages from a broker become rows posted to a sink, at least once.

``MqttBridge`` subscribes to one topic with QoS 1 and a persistent session, turns each
message into ``(table, rows)`` batches with a mapper (``frigate_mapper`` for Frigate
NVR's ``frigate/events``, ``safecity_mapper`` for rows already in safecity's form) and
posts them to a ``Sink`` (``HttpSink`` to a running server, ``StoreSink`` to a data
directory). A message is acknowledged to the broker (paho's manual acks) only once the
sink acknowledged its rows, so a message whose rows were not stored is delivered again
when the bridge reconnects; as ingestion is idempotent, a message delivered twice is
stored once. While the sink is unreachable the bridge waits and retries the same
message. A malformed message (not JSON, not the format, a row the sink refuses) is
logged with its topic and the reason, counted and acknowledged: sending it again would
not make it right, and it must not stop the messages behind it.

paho reconnects by itself when the broker goes away; the bridge subscribes again on
every connection, since a restarted broker may have lost the session.

``IncidentPublisher`` goes the other way: it polls the live incidents (the server's
``GET /api/v1/incidents?since=...``, or a data directory's state) and publishes each
new or changed one as JSON (QoS 1, not retained), for Home Assistant or a CAD.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import paho.mqtt.client as mqtt

from safecity.ingest.client import IngestError, Sink
from safecity.ingest.frigate import FrigateConfig, decode, frigate_rows, safecity_batches

log = logging.getLogger(__name__)

#: A mapper turns one message's payload into ``[(api table, rows)]`` (empty: nothing to store).
Mapper = Callable[[bytes], list[tuple[str, list]]]

#: HTTP answers that mean "this message's rows are wrong": skipped, never retried.
_REFUSED = (400, 409, 413, 422)
#: CONNACK reasons that retrying with the same settings cannot fix.
_CONNECT_REFUSALS = {"Bad user name or password", "Not authorized", "Client identifier not valid",
                     "Unsupported protocol version", "Bad authentication method", "Banned"}


def frigate_mapper(config: FrigateConfig | None = None) -> Mapper:
    """Frigate's ``frigate/events`` messages to events rows (see ``safecity.ingest.frigate``)."""
    config = config or FrigateConfig()

    def to_batches(payload: bytes) -> list[tuple[str, list]]:
        rows = frigate_rows(decode(payload), config)
        return [("events", rows)] if rows else []

    return to_batches


def safecity_mapper(payload: bytes) -> list[tuple[str, list]]:
    """``{"table": ..., "rows": [...]}`` or a bare array of events, posted as is."""
    return safecity_batches(decode(payload))


def parse_broker(text: str, default_port: int = 1883) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, or ``[IPv6]:PORT``) as (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or "]" in port:
        host, port = text.strip(), str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"broker {text!r}: expected HOST:PORT, like localhost:1883")
    return host, int(port)


@dataclass
class BridgeStats:
    """What the bridge did, for its summary line and for tests."""

    messages: int = 0        # messages handled (stored, empty or skipped)
    accepted: int = 0        # rows the sink stored
    duplicates: int = 0      # rows the sink already had
    skipped: int = 0         # malformed messages
    retries: int = 0         # posts tried again because the sink was unreachable
    reasons: Counter = field(default_factory=Counter)  # skipped messages per first words of reason
    connections: int = 0
    subscriptions: int = 0
    published: int = 0       # incidents published

    def as_dict(self) -> dict:
        return {"messages": self.messages, "accepted": self.accepted,
                "duplicates": self.duplicates, "skipped": self.skipped,
                "skip_reasons": dict(self.reasons), "retries": self.retries,
                "connections": self.connections,
                "published_incidents": self.published}


class BridgeError(RuntimeError):
    """The bridge cannot go on with these settings (refused login, a token without rights)."""


class _Stopping(Exception):
    pass


class MqttBridge:
    """Subscribe to ``topic`` on ``host:port`` and post every message's rows to ``sink``.

    ``run()`` blocks until ``stop()`` (from a signal handler or another thread), until
    ``max_messages`` messages were handled, or until a ``BridgeError``.
    """

    def __init__(self, host: str, port: int, topic: str, mapper: Mapper, sink: Sink, *,
                 username: str | None = None, password: str | None = None,
                 client_id: str | None = None, qos: int = 1, max_messages: int | None = None,
                 reconnect_max_s: float = 30.0, retry_max_s: float = 30.0, keepalive: int = 30):
        self.host, self.port, self.topic, self.qos = host, port, topic, qos
        self.mapper, self.sink, self.max_messages = mapper, sink, max_messages
        self.retry_max_s = retry_max_s
        self.stats = BridgeStats()
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._fatal: str | None = None
        self._inbox: queue.Queue = queue.Queue()
        self._generation = 0  # one per connection: an ack belongs to the connection it came on
        client_id = client_id or "safecity-" + hashlib.sha1(
            f"{host}:{port}/{topic}".encode()).hexdigest()[:12]
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, manual_ack=True)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(reconnect_max_s)))
        self._keepalive = keepalive
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # ---------------------------------------------------------------- paho callbacks
    # (paho's network thread: they only record and queue; the posting is in run())

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("broker %s:%s refused the connection: %s", self.host, self.port, reason)
            if str(reason) in _CONNECT_REFUSALS:
                self._fail(f"broker {self.host}:{self.port} refused the connection: {reason}")
            return
        self._generation += 1
        self.stats.connections += 1
        log.info("connected to %s:%s (session present: %s)", self.host, self.port,
                 flags.session_present)
        client.subscribe(self.topic, qos=self.qos)

    def _on_connect_fail(self, client, userdata) -> None:
        log.warning("cannot reach the broker %s:%s; trying again", self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("lost the broker %s:%s (%s); reconnecting", self.host, self.port, reason)

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:
        if any(r.is_failure for r in reasons):
            self._fail(f"broker {self.host}:{self.port} refused the subscription to "
                       f"{self.topic!r}: {reasons[0]}")
            return
        self.stats.subscriptions += 1
        log.info("subscribed to %s", self.topic)
        self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        self._inbox.put((self._generation, message))

    # ---------------------------------------------------------------- the loop

    def run(self) -> BridgeStats:
        """Handle messages until stopped; raises ``BridgeError`` when it cannot go on."""
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self.client.loop_start()
        try:
            while not self._stop.is_set():
                if self.max_messages is not None and self.stats.messages >= self.max_messages:
                    break
                try:
                    generation, message = self._inbox.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    self._handle(message)
                except _Stopping:
                    break  # not acknowledged: delivered again on the next connection
                self.stats.messages += 1
                if message.qos > 0 and generation == self._generation:
                    self.client.ack(message.mid, message.qos)
        finally:
            self._stop.set()
            self.client.disconnect()
            self.client.loop_stop()
        if self._fatal:
            raise BridgeError(self._fatal)
        return self.stats

    def stop(self) -> None:
        """Stop after the message in hand (safe from a signal handler or another thread)."""
        self._stop.set()

    def _fail(self, reason: str) -> None:
        self._fatal = reason
        self._stop.set()

    def _handle(self, message) -> None:
        try:
            batches = self.mapper(message.payload)
            for table, rows in batches:
                if rows:
                    result = self._post(table, rows)
                    self.stats.accepted += int(result.get("accepted", 0))
                    self.stats.duplicates += int(result.get("duplicates", 0))
        except IngestError as err:
            if err.status not in _REFUSED:
                self._fail(f"the server refused the bridge's rows: {err}")
                raise _Stopping() from None
            self._skip(message, str(err))
        except ValueError as err:  # MessageError, RowError, a conflicting re-use of a key
            self._skip(message, str(err))

    def _post(self, table: str, rows: Sequence[dict]) -> dict:
        """The sink's answer; waits and tries again while it is unreachable."""
        delay = 0.5
        while True:
            try:
                return self.sink.post(table, rows)
            except (ConnectionError, TimeoutError, OSError) as err:
                self.stats.retries += 1
                log.warning("%s not acknowledged (%s); trying again in %.0f s", table, err, delay)
            if self._stop.wait(delay):
                raise _Stopping()
            delay = min(delay * 2, self.retry_max_s)

    def _skip(self, message, reason: str) -> None:
        self.stats.skipped += 1
        self.stats.reasons[reason.split(":")[0][:60]] += 1
        log.warning("skipped a message on %s: %s", message.topic, reason[:500])


# --------------------------------------------------------------------------- incidents out


class IncidentChanges:
    """Which incidents are new or changed since the last look (by their full content)."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def update(self, rows: Sequence[dict]) -> list[dict]:
        """The rows not seen before with this content; forgets incidents no longer listed."""
        changed, listed = [], set()
        for row in rows:
            key = row.get("incident_id") if isinstance(row, dict) else None
            if not isinstance(key, str) or not key:
                log.warning("an incident without incident_id was ignored")
                continue
            listed.add(key)
            fingerprint = json.dumps(row, sort_keys=True, default=str)
            if self._seen.get(key) != fingerprint:
                self._seen[key] = fingerprint
                changed.append(row)
        for key in set(self._seen) - listed:
            del self._seen[key]
        return changed


@dataclass
class HttpIncidents:
    """The server's ``GET /api/v1/incidents?since=ISO`` (a JSON array of incident rows)."""

    url: str
    token: str
    timeout_s: float = 30.0

    def fetch(self, since: str) -> list[dict]:
        query = urllib.parse.urlencode({"since": since})
        request = urllib.request.Request(f"{self.url.rstrip('/')}/api/v1/incidents?{query}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
            rows = json.loads(resp.read())
        if not isinstance(rows, list):
            raise ValueError(f"{self.url}: /api/v1/incidents answered {type(rows).__name__}, "
                             "not a JSON array")
        return rows


@dataclass
class StoreIncidents:
    """A data directory's incidents (its state store), as the server would answer them."""

    data_dir: str

    def fetch(self, since: str) -> list[dict]:
        import pandas as pd

        from safecity.data.store import Store

        df = Store(self.data_dir).read("incidents")
        df = df[df["ts"] >= pd.Timestamp(since)]
        return [{k: _plain(v) for k, v in row.items()} for row in df.to_dict("records")]


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class IncidentPublisher:
    """Every ``poll_s`` seconds, publish the incidents of the last ``window_s`` that are new
    or changed to ``topic`` (QoS 1, not retained), one JSON object per message.

    The first look publishes every incident of the window: a subscriber that starts
    with the bridge learns the current state. Consumers key on ``incident_id``.
    """

    def __init__(self, source, client: mqtt.Client, topic: str, poll_s: float = 2.0,
                 window_s: float = 86400.0, stats: BridgeStats | None = None):
        self.source, self.client, self.topic = source, client, topic
        self.poll_s, self.window_s = poll_s, window_s
        self.changes = IncidentChanges()
        self.stats = stats or BridgeStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> int:
        """One look: publish what changed; return how many were published."""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - self.window_s))
        changed = self.changes.update(self.source.fetch(since))
        for row in changed:
            self.client.publish(self.topic, json.dumps(row, default=str), qos=1, retain=False)
        self.stats.published += len(changed)
        return len(changed)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="incident-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_s + 35)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as err:  # a server restart must not end the publishing
                log.warning("incidents not read (%s); trying again in %.0f s", err, self.poll_s)
            self._stop.wait(self.poll_s)
