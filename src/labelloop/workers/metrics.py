"""Operations for the stream workers: Prometheus metrics, the lag of a consumer group, and
structured JSON logs.

The metrics live in the default ``prometheus_client`` registry (what ``start_http_server``
and the web app's ``/metrics`` serve): batch sizes, seconds per stage (``read``, ``ingest``,
``label``, ``store``, ``publish``), decisions by kind, dead letters, and the group's lag
(entries not yet delivered to the group plus those delivered and not acknowledged).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

STAGES = ("read", "ingest", "label", "store", "publish")
log = logging.getLogger("labelloop.stream")

BATCH_SIZE = Histogram(
    "labelloop_stream_batch_size",
    "Entries per micro-batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
STAGE_SECONDS = Histogram(
    "labelloop_stream_stage_seconds", "Seconds per batch spent in each stage.", ["stage"]
)
LAG = Gauge(
    "labelloop_stream_lag_entries",
    "Entries not yet delivered to the consumer group plus those pending (unacknowledged).",
)
DECISIONS = Counter(
    "labelloop_stream_decisions", "Decisions made (not found stored), by kind.", ["decision"]
)
DEAD_LETTERS = Counter("labelloop_stream_dead_letters", "Entries set aside (dead-lettered).")

# The project's items per state (refreshed by the loop worker's steps and by the review app's
# /metrics on each scrape) and the loop worker's own work.
ITEMS = Gauge("labelloop_items", "Items per state.", ["project", "state"])
LOOP_STEPS = Counter(
    "labelloop_loop_steps", "Loop worker steps that did something, by kind.", ["kind"]
)
RETRAIN_SECONDS = Histogram(
    "labelloop_retrain_seconds",
    "Seconds per retrain of the loop worker.",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)


def observe_items(db: Any, project_id: int, project: str) -> None:
    """Set ``labelloop_items{project, state}`` from the store (one grouped count)."""
    from labelloop.store.items import counts_by_state

    with db.engine.connect() as conn:
        states = counts_by_state(conn, project_id)
    for state, n in states.items():
        ITEMS.labels(project, state).set(n)


@contextmanager
def stage(name: str, seconds: dict[str, float] | None = None) -> Iterator[None]:
    """Time the block into ``labelloop_stream_stage_seconds{stage=name}``; with ``seconds``,
    also add the time to ``seconds[name]`` (the batch's log line)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        observe_stage(name, time.perf_counter() - started, seconds)


def observe_stage(name: str, took: float, seconds: dict[str, float] | None = None) -> None:
    STAGE_SECONDS.labels(stage=name).observe(took)
    if seconds is not None:
        seconds[name] = seconds.get(name, 0.0) + took


def batch_done(
    source: Any, size: int, seconds: dict[str, float], decisions: dict[str, int]
) -> None:
    """After a batch: update the lag and log the batch's line."""
    observe_lag(source)
    log.info(
        "batch decided",
        extra={
            "event": "batch",
            "batch_size": size,
            "seconds": {k: round(v, 6) for k, v in seconds.items()},
            "decisions": dict(decisions),
        },
    )


def group_lag(client: Any, stream: str, group: str) -> int | None:
    """Entries of ``stream`` not yet delivered to ``group`` plus those pending, from XINFO
    GROUPS (Redis 7 reports the lag); None when the group is missing or its lag is unknown."""
    groups = client.xinfo_groups(stream)
    mine = next((g for g in groups if str(g["name"]) == group), None)
    if mine is None or mine.get("lag") is None:
        return None
    return int(mine["lag"]) + int(mine["pending"])


def source_lag(source: Any) -> int | None:
    """The lag of a stream worker's source: a Redis consumer group's, or the in-process
    queue's waiting plus pending entries; None when unknown."""
    if hasattr(source, "client") and hasattr(source, "group"):
        return group_lag(source.client, source.stream, source.group)
    if hasattr(source, "queue") and hasattr(source, "pending"):
        return int(source.queue.qsize()) + len(source.pending)
    return None


def observe_lag(source: Any) -> None:
    """Set ``labelloop_stream_lag_entries`` from ``source``; a failure to read it is logged,
    never raised (metrics must not stop the worker)."""
    try:
        lag = source_lag(source)
    except Exception as exc:  # noqa: BLE001 - a metric, not the worker's business
        log.warning("cannot read the stream's lag: %s", exc)
        return
    if lag is not None:
        LAG.set(lag)


def dead_lettered(entry_id: str, external_id: str | None, error: str) -> None:
    """Count one dead letter and log it with the entry's ids and error."""
    DEAD_LETTERS.inc()
    log.warning(
        "entry set aside",
        extra={
            "event": "dead_letter",
            "entry_id": entry_id,
            "external_id": external_id,
            "error": error,
        },
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's extras."""

    _PLAIN = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in self._PLAIN})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_json_logging(level: int = logging.INFO) -> None:
    """Log JSON lines to stderr from the root logger (``--log-json``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# -- health ------------------------------------------------------------------------------------
def store_status(db: Any, project_id: int) -> str:
    """ "ok" when the store answers a trivial query, else the error (one line)."""
    from labelloop.store.stream_decisions import count_decisions

    try:
        with db.engine.connect() as conn:
            count_decisions(conn, project_id)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"error: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    return "ok"


def stream_health(
    redis_url: str,
    stream: str,
    group: str,
    *,
    store: str,
    max_lag: int | None = None,
) -> dict[str, Any]:
    """A stream worker's health: Redis reachable, ``store`` ("ok" or the error from
    ``store_status``), and the group's lag (at most ``max_lag`` when given). ``healthy`` is
    True when all hold."""
    out: dict[str, Any] = {"redis": "ok", "store": store, "stream": stream, "group": group}
    out["lag"] = None
    try:
        import redis

        client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)
        client.ping()
        if client.exists(stream):
            out["lag"] = group_lag(client, stream, group)
        client.close()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out["redis"] = f"error: cannot reach Redis at {redis_url}: {exc}".splitlines()[0][:300]
    lag_ok = max_lag is None or (out["lag"] is not None and out["lag"] <= max_lag)
    out["healthy"] = out["redis"] == "ok" and store == "ok" and lag_ok
    return out
