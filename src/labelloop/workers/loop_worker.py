"""The loop worker: reads a project's events outbox and runs the loop's stages when they are due.

New items (from any entrance: CLI ingest, API upload, import) are suggested and routed within
a poll interval; every ``loop.retrain_every`` human label actions trigger a retrain that stores
a model version, re-routes and re-scores the queue and sends suspected label errors to people;
between retrains, every ``loop.update_every`` labels re-score the queue incrementally.

Many workers may serve one project (``labelloop serve`` on two machines over one PostgreSQL,
or ``labelloop worker`` processes): the work is done under a lease in the store, so one worker
at a time runs it, and one retrain happens per trigger. Each worker keeps a cursor (the last
event it has seen); the cursor moves only after the work those events asked for is done, and
what is due is read from the store, not from memory, so a worker killed mid-retrain leaves the
work to the next lease holder: its model version (keyed by its training labels) is reused, the
retrain event is written once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from labelloop.annotate.feedback import (
    FeedbackLoop,
    RetrainReport,
    last_retrain,
    retrain_due,
)
from labelloop.annotate.route import route
from labelloop.annotate.suggest import suggest
from labelloop.embed.base import Embedder
from labelloop.labelers.base import Labeler
from labelloop.labelers.factory import MODEL_KIND, current_labelers
from labelloop.registry.student import student_registration
from labelloop.store.context import ProjectContext
from labelloop.store.db import background_writer
from labelloop.store.events import log_event
from labelloop.store.loop_state import (
    acquire_lease,
    cursors,
    event_lag,
    events_after,
    get_cursor,
    latest_model_version,
    lease_holder,
    release_lease,
    renew_lease,
    set_cursor,
)
from labelloop.store.models import ItemState, utcnow
from labelloop.store.reads import human_label_count, items_in

log = logging.getLogger("labelloop.worker")

LEASE = "loop"  # one lease for the loop's work on a project: suggest, route, retrain
# Events the worker writes itself: they wake nobody.
OWN_EVENTS = {
    "retrain",
    "update",
    "audit",
    "calibration",
    "label_issue",
    "worker_error",
    "suggest",
    "route",
}


# How often an idle worker asks the store whether work is due without an event saying so.
SAFETY_CHECK_SECONDS = 60.0
# The longest pause after failed steps in a row (a broken model file must not flood the log).
MAX_ERROR_PAUSE_SECONDS = 300.0


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _observe_step(ctx: ProjectContext, report: Any) -> None:
    """Prometheus: what the step did, the retrain's seconds, items per state. A metric never
    stops the worker."""
    from labelloop.workers import metrics

    try:
        if report.retrain is not None:
            metrics.LOOP_STEPS.labels("retrain").inc()
            metrics.RETRAIN_SECONDS.observe(report.retrain.seconds)
        elif report.suggested or report.routed or getattr(report, "updated", 0):
            metrics.LOOP_STEPS.labels("suggest_route").inc()
        metrics.observe_items(ctx.db, ctx.id, ctx.config.name)
    except Exception as exc:  # noqa: BLE001
        logging.getLogger("labelloop.loop").warning("loop metrics: %s", exc)


@dataclass
class StepReport:
    """What one worker step did."""

    events: int = 0
    suggested: int = 0
    routed: int = 0
    retrain: RetrainReport | None = None
    updated: int = 0
    seconds: float = 0.0
    skipped: str | None = None  # why nothing was done ("idle", "lease held by ...")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Heartbeat:
    """Renews the lease while work runs; notes when it was lost to another holder."""

    def __init__(self, ctx: ProjectContext, holder: str, token: int, seconds: float) -> None:
        self.ctx, self.holder, self.token, self.seconds = ctx, holder, token, seconds
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labelloop-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            ok = renew_lease(self.ctx.db, self.ctx.id, LEASE, self.holder, self.token, self.seconds)
            if not ok:
                self.lost = True
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class LoopWorker:
    """Drives a project's loop from its events outbox (see the module docstring).

    >>> worker = LoopWorker(ProjectContext.open("spam-project"))
    >>> worker.step()          # one pass: returns a StepReport
    >>> worker.run(stop_event) # until stop_event is set (labelloop worker / serve)
    """

    def __init__(
        self,
        ctx: ProjectContext,
        *,
        name: str | None = None,
        embedder: Embedder | None = None,
        llm: Labeler | None | str = "config",
        retrain_every: int | None = None,
        poll_seconds: float | None = None,
        lease_seconds: float | None = None,
        on_step: Callable[[StepReport], None] | None = None,
    ) -> None:
        """``llm``: the expensive labeler for the cascade; "config" builds the one the project
        file enables (on first use), None runs without one."""
        settings = ctx.config.loop
        self.ctx = ctx
        self.name = name or default_worker_name()
        self.retrain_every = retrain_every or settings.retrain_every
        self.poll_seconds = poll_seconds or settings.poll_seconds
        self.lease_seconds = lease_seconds or settings.lease_seconds
        self._llm_setting = llm
        self._embedder = embedder
        self._loop: FeedbackLoop | None = None
        self._last_safety_check: float | None = None
        self.on_step = on_step

    # -- the parts built on first use (a model load is not free) -----------------------------
    @property
    def loop(self) -> FeedbackLoop:
        if self._loop is None:
            llm: Labeler | None = None
            if self._llm_setting == "config":
                if self.ctx.config.labelers.llm.enabled:
                    from labelloop.labelers.llm.factory import project_llm_labeler

                    llm = project_llm_labeler(self.ctx)
            elif self._llm_setting is not None and not isinstance(self._llm_setting, str):
                llm = self._llm_setting
            self._loop = FeedbackLoop(
                self.ctx,
                retrain_every=self.retrain_every,
                embedder=self._embedder,
                llm=llm,
                on_retrain=student_registration(self.ctx),
            )
        return self._loop

    # -- one pass ------------------------------------------------------------------------------
    def step(self) -> StepReport:
        """Read the outbox; if anything is due, take the lease and do it; move the cursor."""
        started = time.perf_counter()
        report = StepReport()
        cursor = get_cursor(self.ctx.db, self.ctx.id, self.name)
        events = events_after(self.ctx.db, self.ctx.id, cursor)
        report.events = len(events)
        wake = [e for e in events if e[1] not in OWN_EVENTS]
        if not wake and not self._safety_check_due():
            if events:
                set_cursor(self.ctx.db, self.ctx.id, self.name, events[-1][0])
            report.skipped = "idle"
            return report
        token = acquire_lease(self.ctx.db, self.ctx.id, LEASE, self.name, self.lease_seconds)
        if token is None:
            holder = lease_holder(self.ctx.db, self.ctx.id, LEASE)
            report.skipped = f"lease held by {holder[0] if holder else 'another worker'}"
            return report
        try:
            with (
                _Heartbeat(self.ctx, self.name, token, self.lease_seconds) as beat,
                background_writer(),  # reviewers' writes go first
            ):
                self._work(report)
                if beat.lost:  # another worker took over: it redoes what is still due
                    report.skipped = "lease lost"
                    return report
            if events:
                set_cursor(self.ctx.db, self.ctx.id, self.name, events[-1][0])
        finally:
            release_lease(self.ctx.db, self.ctx.id, LEASE, self.name, token)
        report.seconds = time.perf_counter() - started
        _observe_step(self.ctx, report)
        if self.on_step is not None:
            self.on_step(report)
        return report

    def _safety_check_due(self) -> bool:
        """Events wake the worker; this is the net under them. Every ``SAFETY_CHECK_SECONDS``
        (and on the first step) ask the store whether work is due that no unread event
        announces (say, a worker died after moving its cursor past work it then never did)."""
        now = time.monotonic()
        if self._last_safety_check is not None and (
            now - self._last_safety_check < SAFETY_CHECK_SECONDS
        ):
            return False
        self._last_safety_check = now
        return self._work_due()

    @property
    def retrains(self) -> bool:
        """False when ``loop.retrain_by`` hands retraining to the automation's policies."""
        return self.ctx.config.loop.retrain_by == "loop"

    def _work_due(self) -> bool:
        if items_in(self.ctx.db, self.ctx.id, (ItemState.new,), limit=1):
            return True
        return self.retrains and retrain_due(self.ctx, self.retrain_every)

    def _work(self, report: StepReport) -> None:
        loop = self.loop
        if self.retrains and retrain_due(self.ctx, self.retrain_every):
            # A retrain also suggests and routes new items with the new models.
            report.retrain = loop.retrain()
            report.suggested = report.retrain.suggested
            report.routed = report.retrain.route.pending
            return
        if items_in(self.ctx.db, self.ctx.id, (ItemState.new,), limit=1):
            latest = latest_model_version(self.ctx.db, self.ctx.id, MODEL_KIND)
            held = loop.labelers.stored if loop.labelers is not None else None
            if loop.labelers is None or (
                latest is not None and (held is None or held.id != latest.id)
            ):  # none loaded yet, or another worker has stored a newer version since
                loop.labelers = current_labelers(self.ctx, loop.embedder)[0]
            s = suggest(
                self.ctx, embedder=loop.embedder, labelers=loop.labelers, expensive=loop.llm
            )
            r = route(
                self.ctx,
                embedder=loop.embedder,
                labelers=loop.labelers,
                llm_labeler=loop.llm.labeler_id if loop.llm is not None else None,
            )
            report.suggested, report.routed = s.items, r.pending
        if loop.update_every and loop.labelers is not None:
            n = human_label_count(self.ctx.db, self.ctx.id)
            since = n - max(loop.labels_at_last_update, loop.labels_at_last_retrain)
            if since >= loop.update_every:
                report.updated = loop.update()

    # -- running -------------------------------------------------------------------------------
    def run(self, stop: threading.Event, max_steps: int | None = None) -> None:
        """Step until ``stop`` is set, waiting ``poll_seconds`` when there was nothing to do.
        A failing step is logged (and written to the events as ``worker_error``); the worker
        goes on, and the work stays due, so it is tried again, after a pause that doubles with
        each failure in a row (up to ``MAX_ERROR_PAUSE_SECONDS``)."""
        steps = failures = 0
        while not stop.is_set() and (max_steps is None or steps < max_steps):
            steps += 1
            try:
                report = self.step()
            except Exception as exc:  # keep the worker alive; say what happened
                failures += 1
                log.exception("loop worker step failed (%d in a row)", failures)
                try:
                    with self.ctx.db.engine.begin() as conn:
                        log_event(
                            conn,
                            self.ctx.id,
                            "worker_error",
                            {"error": repr(exc)[:2000], "worker": self.name, "in_a_row": failures},
                        )
                except Exception:
                    log.exception("could not record the failure")
                pause = self.poll_seconds * 2 ** min(failures - 1, 16)
                stop.wait(min(pause, MAX_ERROR_PAUSE_SECONDS))
                continue
            failures = 0
            if report.skipped:
                stop.wait(self.poll_seconds)

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread beside the review app."""
        thread = threading.Thread(
            target=self.run, args=(stop,), name=f"labelloop-worker-{self.name}", daemon=True
        )
        thread.start()
        return thread


def _age_seconds(when: datetime | None) -> float | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=utcnow().tzinfo)
    return max((utcnow() - when).total_seconds(), 0.0)


def loop_status(ctx: ProjectContext) -> dict[str, Any]:
    """The loop as the store sees it: model version in use and its metrics, the last retrain,
    the workers (events not yet processed, lag), who holds the lease, labels until the next
    retrain."""
    model = latest_model_version(ctx.db, ctx.id, MODEL_KIND)
    last = last_retrain(ctx)
    workers = {}
    for name, (event_id, moved) in cursors(ctx.db, ctx.id).items():
        pending, oldest = event_lag(ctx.db, ctx.id, event_id, OWN_EVENTS)
        workers[name] = {
            "last_event_id": event_id,
            "seen_at": moved,
            "pending_events": pending,
            "lag_seconds": _age_seconds(oldest) if pending else 0.0,
        }
    holder = lease_holder(ctx.db, ctx.id, LEASE)
    actions = human_label_count(ctx.db, ctx.id)
    done = int(last.get("label_actions", 0)) if last else 0
    return {
        "model_version": model.version if model else None,
        "model_version_id": model.id if model else None,
        "model_metrics": {
            k: v
            for k, v in (model.metrics if model else {}).items()
            if k in ("held_out_macro_f1", "held_out_accuracy", "measured_on", "student_algorithm")
        },
        "model_n_labels": model.n_labels if model else None,
        "model_created_at": model.created_at if model else None,
        "last_retrain_at": last["at"] if last else None,
        "last_retrain": {k: v for k, v in (last or {}).items() if k not in ("selection", "at")},
        "labels_until_retrain": max(ctx.config.loop.retrain_every - (actions - done), 0),
        "workers": workers,
        "lease_holder": holder[0] if holder else None,
    }
