"""Commands feeding a running city from live sources (``safecity ingest ...``): tokens, bridges."""
from __future__ import annotations

import json

import click

from safecity.cli.root import main


@main.group("ingest")
def ingest_group() -> None:
    """Live sources: their tokens for the ingest API, and bridges from other systems."""


@ingest_group.command("token")
@click.option("--file", "tokens_file", required=True, type=click.Path(dir_okay=False),
              help="The token file 'safecity serve --live --ingest-tokens' reads (mode 600).")
@click.option("--name", required=True, help="The source's name (a camera group, a detector network...).")
@click.option("--tables", required=True,
              help="What it may write, comma-separated: events, observations, units, police-log, cameras.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Rows per second it may send; beyond, the server answers 429 "
                   "(default: the server's, 5,000).")
def ingest_token(tokens_file, name, tables, rate) -> None:
    """Create a source's token: printed once, on the last line; only its hash is kept.

    Giving an existing name again replaces its token (the old one stops working
    when the server restarts).
    """
    from safecity.ingest.tokens import create_token

    try:
        token = create_token(tokens_file, name, tables, rate)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{tokens_file}: token for '{name}' (may write {tables}); it is not stored, "
               "keep it now:", err=True)
    click.echo(token)


@ingest_group.command("mqtt")
@click.option("--broker", required=True, metavar="HOST:PORT", help="The MQTT broker, e.g. localhost:1883.")
@click.option("--topic", required=True, help="Topic to subscribe to (QoS 1), e.g. frigate/events.")
@click.option("--format", "fmt", type=click.Choice(["frigate", "safecity"]), required=True,
              help="frigate: Frigate NVR's frigate/events messages; safecity: "
                   '{"table": ..., "rows": [...]} or an array of events.')
@click.option("--server", metavar="URL", help="A running server's base URL (its /api/v1/ ingest API).")
@click.option("--token", "token_path", type=click.Path(exists=True, dir_okay=False),
              help="File holding the bearer token for --server.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Write straight into this store instead of a server.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Frigate mapping (YAML): zones, labels, limits, camera positions.")
@click.option("--publish-incidents", "incidents_topic", metavar="TOPIC",
              help="Also publish each new or changed incident to this topic (QoS 1, not retained).")
@click.option("--poll", "poll_s", type=click.FloatRange(0.1), default=2.0, show_default=True,
              help="Seconds between two looks at the incidents (with --publish-incidents).")
@click.option("--username", help="Broker login.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False),
              help="File holding the broker password (first line).")
@click.option("--client-id", help="MQTT client id: the broker keeps its session while it is away. "
                                  "Default: derived from broker and topic.")
@click.option("--max-messages", type=click.IntRange(1), default=None,
              help="Stop after this many messages (default: run until SIGINT or SIGTERM).")
def ingest_mqtt(broker, topic, fmt, server, token_path, data_dir, config_path, incidents_topic,
                poll_s, username, password_file, client_id, max_messages) -> None:
    """Subscribe to a broker and store every message's rows, at least once.

    A message is acknowledged only after the server (or the store) acknowledged its
    rows; a malformed one is logged with the reason and skipped. Prints a JSON
    summary when it stops: messages, accepted, duplicates, skipped, skip_reasons.
    """
    import logging
    import signal

    from safecity.ingest.client import HttpSink, StoreSink, read_token
    from safecity.ingest.frigate import FrigateConfig
    from safecity.ingest.mqtt import (BridgeError, HttpIncidents, IncidentPublisher, MqttBridge,
                                      StoreIncidents, frigate_mapper, parse_broker, safecity_mapper)

    if (server is None) == (data_dir is None):
        raise click.UsageError("give either --server URL --token FILE, or --data-dir DIR")
    if server is not None and token_path is None:
        raise click.UsageError("--server needs --token FILE")
    if config_path and fmt != "frigate":
        raise click.UsageError("--config is the Frigate mapping: it goes with --format frigate")
    try:
        host, port = parse_broker(broker)
        token = read_token(token_path) if server else None
        password = read_token(password_file) if password_file else None
        config = FrigateConfig.from_yaml(config_path) if config_path else FrigateConfig()
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if password is not None and username is None:
        raise click.UsageError("--password-file needs --username")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sink = HttpSink(server, token) if server else StoreSink(data_dir, source="mqtt")
    mapper = frigate_mapper(config) if fmt == "frigate" else safecity_mapper
    bridge = MqttBridge(host, port, topic, mapper, sink, username=username, password=password,
                        client_id=client_id, max_messages=max_messages)
    publisher = None
    if incidents_topic:
        source = HttpIncidents(server, token) if server else StoreIncidents(data_dir)
        publisher = IncidentPublisher(source, bridge.client, incidents_topic, poll_s=poll_s,
                                      stats=bridge.stats)
        publisher.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: bridge.stop())
    try:
        stats = bridge.run()
    except BridgeError as err:
        raise click.ClickException(str(err)) from None
    finally:
        if publisher is not None:
            publisher.stop()
    click.echo(json.dumps(stats.as_dict()))
