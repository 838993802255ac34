"""The prediction log and shadow scoring, off the request path.

The request handlers append to a deque (no lock, no wake-up); a daemon thread wakes every
``LINGER_SECONDS`` and does the slow parts: hashing the inputs, scoring shadow rows with the
challenger, and writing the log rows in one ``INSERT`` per batch. A request never waits on
SQLite's single writer. The queue is bounded: when the store cannot keep up, log rows are
dropped and counted rather than slowing the answers (``stats()["dropped"]``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from labelloop.core.hashing import content_hash
from labelloop.store.db import Database
from labelloop.store.models import utcnow
from labelloop.store.predictions import insert_predictions

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000  # requests waiting to be logged or shadow-scored
# The thread wakes this often and writes what came meanwhile in one transaction. Handing each
# request to a waiting thread (a queue's notify) cost the request about 0.5 ms: the woken
# thread takes the GIL right away (profiled with bench/bench_predict_api.py).
LINGER_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's answer (or one shadow job when ``outputs`` is None and ``score`` is set)."""

    request_id: str
    rows: Any  # list of rows or a DataFrame, as the request sent them
    model_name: str
    model_version: int
    variant: str
    served: bool
    outputs: list[dict[str, Any]] | None
    latency_ms: float
    score: Callable[[Any], list[dict[str, Any]]] | None = None


class Recorder:
    """Queue answers and shadow jobs; a thread scores and writes them."""

    def __init__(
        self,
        db: Database,
        project_id: int,
        *,
        log_predictions: bool = True,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self.db = db
        self.project_id = project_id
        self.log_predictions = log_predictions
        self.linger_seconds = linger_seconds
        self._pending: deque[Answer] = deque()  # append and popleft are atomic: no lock
        self._writing = threading.Lock()  # one drain at a time, so flush() sees all written
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.written = 0
        self.dropped = 0
        self.shadow_errors = 0
        self.write_errors = 0

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="predictions-log", daemon=True)
            self._thread.start()

    def submit(self, answer: Answer) -> None:
        """Queue an answer (kept only when logging is on) or a shadow job: an append, no
        lock, no wake-up."""
        if answer.score is None and not self.log_predictions:
            return
        if len(self._pending) >= QUEUE_SIZE:
            self.dropped += 1
            return
        self._pending.append(answer)

    def flush(self) -> None:
        """Score and write everything queued so far, in the caller's thread."""
        self._drain()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._drain()

    def stats(self) -> dict[str, int]:
        return {
            "queued": len(self._pending),
            "written": self.written,
            "dropped": self.dropped,
            "shadow_errors": self.shadow_errors,
            "write_errors": self.write_errors,
        }

    def _run(self) -> None:
        while not self._stop.wait(self.linger_seconds):
            self._drain()

    def _drain(self) -> None:
        with self._writing:
            while self._pending:
                batch = []
                while self._pending and len(batch) < 1000:
                    batch.append(self._pending.popleft())
                self._write(batch)

    def _write(self, batch: Sequence[Answer]) -> None:
        rows: list[dict[str, Any]] = []
        for a in batch:
            if a.score is not None:
                try:
                    start = time.perf_counter()
                    outputs = a.score(a.rows)
                    latency = (time.perf_counter() - start) * 1000
                except Exception:  # a broken challenger must not stop the log
                    self.shadow_errors += 1
                    log.exception("shadow scoring failed (request %s)", a.request_id)
                    continue
            else:
                outputs, latency = a.outputs or [], a.latency_ms
            if not self.log_predictions:
                continue
            now = utcnow()
            for ref, out in zip(_input_refs(a.rows), outputs, strict=False):
                rows.append(
                    {
                        "project_id": self.project_id,
                        "request_id": a.request_id,
                        "input_ref": ref,
                        "model_name": a.model_name,
                        "model_version": a.model_version,
                        "variant": a.variant,
                        "served": a.served,
                        "output": out,
                        "latency_ms": latency,  # the whole request's
                        "created_at": now,
                    }
                )
        try:
            self.written += insert_predictions(self.db, rows)
        except Exception:  # the store is down or locked for 30 s: count, go on serving
            self.write_errors += 1
            self.dropped += len(rows)
            log.exception("writing %d prediction rows failed", len(rows))


def _input_refs(rows: Any) -> list[str]:
    """The hash of each input row (its canonical JSON), to join answers with later labels."""
    records = rows.to_dict(orient="records") if isinstance(rows, pd.DataFrame) else list(rows)
    return [content_hash(json.dumps(r, sort_keys=True, default=str)) for r in records]
