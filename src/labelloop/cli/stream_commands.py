"""``labelloop stream-worker``: items in from a Redis Stream, decisions out to another.

Registered in ``cli/main.py`` with ``app.command("stream-worker")(stream_worker)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from labelloop.cli.common import ProjectOpt, console, friendly_errors
from labelloop.cli.common import open_project as _open


@friendly_errors
def stream_worker(
    project: ProjectOpt = Path("."),
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="Redis URL (default: LABELLOOP_ITEMS_REDIS, stream.redis_url, else "
            "redis://127.0.0.1:6379/0).",
        ),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(
            help="Input stream (entries: external_id + content; default stream.items_stream)."
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(help="Consumer group shared by the workers (default stream.group)."),
    ] = None,
    out_stream: Annotated[
        str | None,
        typer.Option(help="Output stream of decisions (default stream.decisions_stream)."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Entries per micro-batch at most (default stream.batch_size)."),
    ] = None,
    max_wait_ms: Annotated[
        int | None,
        typer.Option(help="Longest wait to fill a micro-batch (default stream.max_wait_ms)."),
    ] = None,
    linger_ms: Annotated[
        int | None,
        typer.Option(
            help="Once a batch has entries, wait this long for more (default stream.linger_ms)."
        ),
    ] = None,
    claim_idle_ms: Annotated[
        int, typer.Option(help="Claim another consumer's entries pending this long.")
    ] = 60_000,
    max_tries: Annotated[int, typer.Option(help="Tries before an entry is dead-lettered.")] = 3,
    until_idle: Annotated[
        bool, typer.Option(help="Exit when the stream has nothing waiting or pending.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics."),
    ] = None,
    log_json: Annotated[
        bool, typer.Option(help="Log JSON lines to stderr (one per batch, per dead letter).")
    ] = False,
    health: Annotated[
        bool,
        typer.Option(
            "--health",
            help="Check Redis, the store and the group's lag; print one JSON line; exit 0 "
            "when healthy, 1 otherwise.",
        ),
    ] = False,
    max_lag: Annotated[
        int | None, typer.Option(help="With --health: unhealthy when the lag exceeds this.")
    ] = None,
    publish_labels: Annotated[
        bool,
        typer.Option(help="Also publish people's later labels on streamed items (once each)."),
    ] = True,
) -> None:
    """Decide items from a Redis Stream (consumer group) in micro-batches and publish one
    decision per item to OUT_STREAM. Many workers may share a stream; SIGTERM finishes and
    acknowledges the current batch, then exits."""
    import os

    from labelloop.core.config import StreamSettings, load_project_config
    from labelloop.core.errors import LabelloopError
    from labelloop.workers.stream import (
        RedisStreamSink,
        RedisStreamSource,
        StreamWorker,
        redis_client,
        stop_on_sigterm,
    )

    try:
        settings = load_project_config(project).stream
    except LabelloopError:
        if not health:
            raise
        settings = StreamSettings()  # --health reports the missing project as its store
    redis_url = (
        redis_url
        or os.environ.get("LABELLOOP_ITEMS_REDIS")
        or settings.redis_url
        or "redis://127.0.0.1:6379/0"
    )
    stream = stream or os.environ.get("LABELLOOP_ITEMS_STREAM") or settings.items_stream
    group = group or settings.group
    out_stream = out_stream or settings.decisions_stream
    batch_size = batch_size or settings.batch_size
    max_wait_ms = max_wait_ms or settings.max_wait_ms
    linger_ms = settings.linger_ms if linger_ms is None else linger_ms
    if health:
        _health(project, redis_url, stream, group, max_lag)
    if log_json:
        from labelloop.workers.metrics import configure_json_logging

        configure_json_logging()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    client = redis_client(redis_url)
    source = RedisStreamSource(
        client, stream, group, claim_idle_ms=claim_idle_ms, max_tries=max_tries
    )
    with _open(project) as p:
        sink = RedisStreamSink(client, out_stream)
        publisher = None
        if publish_labels:
            from labelloop.workers.label_publisher import LabelPublisher

            publisher = LabelPublisher(p.ctx, sink, name=f"label-publisher:{out_stream}")
        w = StreamWorker(
            p.ctx,
            source,
            sink,
            batch_size=batch_size,
            max_wait_ms=max_wait_ms,
            linger_ms=linger_ms,
            after_batch=publisher.step if publisher is not None else None,
        )
        if not as_json:
            console.print(
                f"labelloop stream-worker {source.consumer} on project {p.config.name}: "
                f"{stream} (group {group}) -> {out_stream}, batches of {batch_size} or "
                f"{max_wait_ms} ms, dead letters to {source.dead_letter} (SIGTERM stops)",
                highlight=False,
            )
        with stop_on_sigterm(w):
            r = w.run(until_idle=until_idle)
    if as_json:
        console.print_json(json.dumps(r.as_dict(), default=str))
        return
    console.print(
        f"{r.entries:,} entries in {r.batches:,} batches: {r.decided:,} decided, "
        f"{r.published:,} published ({r.already_published:,} published before), "
        f"{r.set_aside:,} set aside, {r.retried:,} to retry. {r.seconds:.1f} s",
        highlight=False,
    )


def _health(project: Path, redis_url: str, stream: str, group: str, max_lag: int | None) -> None:
    """Print the stream worker's health as one JSON line; exit 0 when healthy, else 1."""
    from labelloop.workers.metrics import store_status, stream_health

    try:
        with _open(project) as p:
            store = store_status(p.db, p.id)
    except Exception as exc:  # noqa: BLE001 - a health check reports, never raises
        store = f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    out = stream_health(redis_url, stream, group, store=store, max_lag=max_lag)
    typer.echo(json.dumps(out, default=str))
    raise typer.Exit(0 if out["healthy"] else 1)


@friendly_errors
def webhook_relay(
    url: Annotated[str, typer.Argument(help="The webhook: decisions are POSTed here as JSON.")],
    redis_url: Annotated[
        str, typer.Option("--redis", help="Redis URL.")
    ] = "redis://127.0.0.1:6379/0",
    stream: Annotated[str, typer.Option(help="The decisions stream the workers publish to.")] = (
        "labelloop:decisions"
    ),
    group: Annotated[str, typer.Option(help="The relays' consumer group.")] = "webhooks",
    secret_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the HMAC secret (signs each body)."),
    ] = None,
    tries: Annotated[int, typer.Option(min=1, max=20, help="POSTs per delivery attempt.")] = 3,
    max_tries: Annotated[
        int, typer.Option(min=1, max=100, help="Failed attempts before dead-lettering.")
    ] = 5,
    claim_idle_ms: Annotated[
        int, typer.Option(help="Retry (or take over) entries pending this long.")
    ] = 60_000,
    until_idle: Annotated[bool, typer.Option(help="Exit when nothing is left to send.")] = False,
) -> None:
    """Send every decision of the stream to a webhook, at least once (receivers deduplicate
    by X-Labelloop-Key): signed with HMAC-SHA256 when --secret-env is set, retried with
    backoff, dead-lettered to <stream>:webhook-dead after --max-tries failed attempts."""
    import os
    import signal

    from labelloop.workers.stream import RedisStreamSource, redis_client
    from labelloop.workers.webhook_relay import WebhookRelay

    secret = None
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            raise typer.BadParameter(f"environment variable {secret_env} is not set")
    source = RedisStreamSource(
        redis_client(redis_url),
        stream,
        group,
        claim_idle_ms=claim_idle_ms,
        max_tries=max_tries,
        dead_letter=f"{stream}:webhook-dead",
    )
    relay = WebhookRelay(source, url, secret=secret, tries=tries)
    signal.signal(signal.SIGTERM, lambda *_: relay.stop())
    report = relay.run(until_idle=until_idle)
    console.print_json(json.dumps(report.as_dict()))


@friendly_errors
def watch(
    folder: Annotated[Path, typer.Argument(help="The folder files are dropped into.")],
    project: ProjectOpt = Path("."),
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks.")] = 2.0,
    polls: Annotated[int | None, typer.Option(min=1, help="Stop after this many looks.")] = None,
) -> None:
    """Ingest table files (CSV, TSV, JSONL, Parquet) dropped into FOLDER once they stop
    changing, then move them to FOLDER/done (FOLDER/failed with the error when unreadable).
    The loop worker or the stream workers decide the new items. SIGTERM stops it."""
    import signal

    from labelloop.workers.folder_watch import FolderWatcher

    with _open(project) as p:
        watcher = FolderWatcher(folder, p.ingest)
        signal.signal(signal.SIGTERM, lambda *_: watcher.stop())
        console.print(f"watching {folder} every {interval:g} s for project {p.config.name}")
        r = watcher.run(interval=interval, polls=polls)
    console.print(
        f"{len(r.files)} files ingested ({r.items_added:,} new items, {r.quarantined:,} rows "
        f"quarantined), {len(r.failed)} failed",
        highlight=False,
    )
