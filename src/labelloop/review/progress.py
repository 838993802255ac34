"""A reviewer's progress (done, left, items per hour), cheap enough to send with every item.

Counting a million queued items costs ~0.1 s on SQLite, about a whole review step there
(``bench/bench_review_step.py``), so the numbers are kept in memory and read again from the
store at most every ``ttl_seconds``:

- the project's counts (``left``, ``done``) once per project, shared by all its reviewers;
- each reviewer's own (``mine`` and the basis of items per hour) once per reviewer.

When kept numbers are older than that, the caller gets them at once and a background thread
reads fresh ones (the step never waits for a count; only the very first read does). The
reviewer's own answers through this process are added as they happen (``note_answer``), so
their numbers move at once; other people's work and other processes show at the next read.
An undo drops the kept numbers (``forget``): it is rare, and what it took back is not known.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from labelloop.store.db import Database
from labelloop.store.reviews import queue_progress_counts, reviewer_answer_counts

# Items per hour are measured over the answers of the last 8 hours (a working day) ...
RATE_WINDOW = timedelta(hours=8)
# ... from the time spent on each, cut at 10 minutes: a tab left open over lunch is not work.
TIME_CAP_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class ReviewProgress:
    """``done``: items people have decided in the project; ``left``: items queued for people;
    ``mine``: the reviewer's answers in the project; ``timed`` / ``timed_ms``: their recent
    answers with a time spent, and that time (the basis of ``per_hour``); ``as_of``: when the
    older of the two parts was read from the store."""

    done: int
    left: int
    mine: int
    timed: int
    timed_ms: int
    as_of: datetime

    @property
    def per_hour(self) -> float | None:
        """The reviewer's items per hour of time spent on items, None before any timed answer."""
        if self.timed == 0 or self.timed_ms <= 0:
            return None
        return self.timed * 3_600_000 / self.timed_ms

    def as_dict(self) -> dict[str, object]:
        return {
            "done": self.done,
            "left": self.left,
            "mine": self.mine,
            "per_hour": None if self.per_hour is None else round(self.per_hour, 1),
            "as_of": self.as_of.isoformat(),
        }


def _project_part(db: Database, project_id: int) -> dict[str, Any]:
    return {**queue_progress_counts(db, project_id), "as_of": datetime.now(UTC)}


def _reviewer_part(db: Database, project_id: int, annotator: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    counts = reviewer_answer_counts(db, project_id, annotator, now - RATE_WINDOW, TIME_CAP_MS)
    return {**counts, "as_of": now}


def _combine(project: dict[str, Any], mine: dict[str, Any]) -> ReviewProgress:
    return ReviewProgress(
        done=project["done"],
        left=project["left"],
        mine=mine["mine"],
        timed=mine["timed"],
        timed_ms=mine["timed_ms"],
        as_of=min(project["as_of"], mine["as_of"]),
    )


def read_progress(db: Database, project_id: int, annotator: str) -> ReviewProgress:
    """The progress as the store has it now (nothing kept)."""
    return _combine(_project_part(db, project_id), _reviewer_part(db, project_id, annotator))


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="labelloop-progress", daemon=True).start()


@dataclass
class _Slot:
    value: dict[str, Any]
    read_at: float
    refreshing: bool = False


class ProgressCache:
    """Progress numbers kept per project and per reviewer (see the module's doc).

    ``clock`` and ``spawn`` (how a refresh runs: a daemon thread by default) are injectable,
    so tests neither sleep nor race: ``spawn=lambda work: work()`` refreshes in place.
    """

    def __init__(
        self,
        ttl_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] = _in_thread,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.spawn = spawn
        self._lock = threading.Lock()
        self._slots: dict[tuple[Any, ...], _Slot] = {}

    def get(self, db: Database, project_id: int, annotator: str) -> ReviewProgress:
        project = self._kept(("project", db.url, project_id), lambda: _project_part(db, project_id))
        mine = self._kept(
            ("reviewer", db.url, project_id, annotator),
            lambda: _reviewer_part(db, project_id, annotator),
        )
        return _combine(project, mine)

    def _kept(self, key: tuple[Any, ...], read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The kept value of ``key`` (read now if there is none); a stale one starts a refresh."""
        now = self.clock()
        with self._lock:
            slot = self._slots.get(key)
            stale = slot is not None and now - slot.read_at >= self.ttl_seconds
            start = stale and not slot.refreshing
            if start:
                slot.refreshing = True
        if slot is None:
            value = read()
            with self._lock:
                self._slots[key] = _Slot(value, now)
            return value
        if start:
            self.spawn(lambda: self._refresh(key, read))
        with self._lock:  # a refresh run in place has already replaced it
            return self._slots.get(key, slot).value

    def _refresh(self, key: tuple[Any, ...], read: Callable[[], dict[str, Any]]) -> None:
        started = self.clock()
        try:
            value = read()
        except Exception:  # the store is busy or gone: keep the old numbers, try again later
            with self._lock:
                if key in self._slots:
                    self._slots[key].refreshing = False
            return
        with self._lock:
            self._slots[key] = _Slot(value, started)

    def note_answer(
        self,
        db: Database,
        project_id: int,
        annotator: str,
        *,
        decided: bool,
        time_spent_ms: int | None,
    ) -> None:
        """Count an answer ``annotator`` just gave (``decided``: it settled the item's label,
        which left the queue) in the kept numbers, if any are kept."""
        with self._lock:
            project = self._slots.get(("project", db.url, project_id))
            if project is not None and decided:
                v = project.value
                v["done"], v["left"] = v["done"] + 1, max(0, v["left"] - 1)
            mine = self._slots.get(("reviewer", db.url, project_id, annotator))
            if mine is not None:
                v = mine.value
                v["mine"] += 1
                if time_spent_ms is not None:
                    v["timed"] += 1
                    v["timed_ms"] += min(time_spent_ms, TIME_CAP_MS)

    def forget(self, db: Database, project_id: int, annotator: str) -> None:
        """Drop the kept numbers of the project and the reviewer: the next ``get`` reads them."""
        with self._lock:
            self._slots.pop(("project", db.url, project_id), None)
            self._slots.pop(("reviewer", db.url, project_id, annotator), None)


# The API process's numbers (each worker process of a server keeps its own).
progress_cache = ProgressCache()
