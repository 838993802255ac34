"""Suggest: machine labelers over new items, every suggestion stored with its provenance.

The cheap labelers (zero-shot, student, their ensemble) answer every item; the expensive one
(the LLM), through the cascade, only the items where it pays. Trained labelers come from
``labelers.factory.current_labelers``: the stored model version for the current human labels,
refit only when those labels changed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from labelloop.annotate.calibration_sample import CalibrationSample
from labelloop.core.progress import Progress
from labelloop.core.types import Item, Suggestion
from labelloop.embed.base import Embedder
from labelloop.embed.factory import project_embedder
from labelloop.labelers.base import Labeler
from labelloop.labelers.cascade import Cascade, CascadePolicy
from labelloop.labelers.factory import LabelerSet, current_labelers, stack_to_suggestion_rows
from labelloop.labelers.llm.labeler import endpoint_refusal
from labelloop.store.context import ProjectContext
from labelloop.store.labels import add_suggestions
from labelloop.store.models import ItemState
from labelloop.store.reads import (
    answered_by,
    items_in,
    items_queued_for_purpose,
    replace_suggestions,
    set_state,
)

BATCH = 1024
REFRESH_CHUNK = 100  # items whose suggestions are swapped per transaction


@dataclass
class SuggestReport:
    items: int = 0
    suggestions: int = 0
    expensive_calls: int = 0
    invalid: int = 0
    cost_usd: float = 0.0
    human_labels: int = 0
    labelers: list[str] = field(default_factory=list)
    model_version: str | None = None  # the stored labelers used (None: not stored, cold start)
    model_version_id: int | None = None
    trained: bool = False  # True when the labelers were fit for this call (labels changed)
    # The LLM endpoint's error when it refused every request of a batch (a setup problem).
    llm_error: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cascade_for(ctx: ProjectContext, expensive: Labeler, labelers: LabelerSet) -> Cascade:
    policy = ctx.config.labelers.cascade
    return Cascade(
        expensive,
        labelers.label_names,
        labelers.task,
        CascadePolicy(
            policy.min_human_labels,
            policy.confidence_threshold,
            policy.disagreement_threshold,
            policy.measure_share,
        ),
    )


def _ask(
    cascade: Cascade,
    batch: list[tuple[int, str, str]],
    probs: np.ndarray,
    split: np.ndarray,
    n_human: int,
    report: SuggestReport,
    sample: CalibrationSample,
) -> list[Suggestion]:
    items = [Item(content=b[1], content_hash=b[2], id=b[0]) for b in batch]
    prefer = sample.contains(np.array([b[0] for b in batch], dtype=np.int64))
    _, out = cascade.ask(items, probs, split, n_human, prefer)
    report.expensive_calls += len(out)
    report.invalid += sum(s.status != "ok" for s in out)
    report.llm_error = report.llm_error or endpoint_refusal(out)
    report.cost_usd += sum(s.cost_usd for s in out)
    return out


def suggest(
    ctx: ProjectContext,
    *,
    limit: int | None = None,
    expensive: Labeler | None = None,
    embedder: Embedder | None = None,
    labelers: LabelerSet | None = None,
    progress: Progress | None = None,
) -> SuggestReport:
    """Suggest labels for items in state ``new``; they move to ``suggested``."""
    started = time.perf_counter()
    embedder = embedder or project_embedder(ctx)
    trained = False
    if labelers is None:
        labelers, trained = current_labelers(ctx, embedder)
    report = SuggestReport(human_labels=len(labelers.humans), trained=trained)
    report.model_version = labelers.stored.version if labelers.stored else None
    report.model_version_id = labelers.stored.id if labelers.stored else None
    report.labelers = [m.labeler_id for m in labelers.members] + ["ensemble"]
    todo = items_in(ctx.db, ctx.id, (ItemState.new,), limit)
    cascade = cascade_for(ctx, expensive, labelers) if expensive is not None else None
    sample = CalibrationSample.draw(ctx, len(labelers.humans)) if cascade is not None else None
    if sample is not None:
        todo = sample.members_first(todo)
    for start in range(0, len(todo), BATCH):
        batch = todo[start : start + BATCH]
        ids = [b[0] for b in batch]
        t0 = time.perf_counter()
        vectors = embedder.embed([b[1] for b in batch])
        stack, probs, split = labelers.probs(vectors)
        ms = (time.perf_counter() - t0) * 1000 / max(len(batch), 1)
        rows = stack_to_suggestion_rows(ids, [b[2] for b in batch], stack, probs, labelers, ms)
        if cascade is not None and sample is not None:
            rows += _ask(cascade, batch, probs, split, len(labelers.humans), report, sample)
        # An item's suggestions and its new state in one transaction; a few hundred items a
        # transaction, so reviewers' writes get in between.
        by_item: dict[int | None, list[Suggestion]] = {}
        for row in rows:
            by_item.setdefault(row.item_id, []).append(row)
        for k in range(0, len(ids), REFRESH_CHUNK):
            part = ids[k : k + REFRESH_CHUNK]
            with ctx.db.short_write() as conn:
                add_suggestions(conn, [r for i in part for r in by_item.get(i, [])])
                set_state(conn, part, ItemState.suggested)
        report.items += len(batch)
        report.suggestions += len(rows)
        if progress is not None:
            progress(report.items, len(todo))
    report.seconds = time.perf_counter() - started
    return report


def refresh_suggestions(
    ctx: ProjectContext,
    ids: list[int],
    hashes: list[str],
    stack: np.ndarray,
    probs: np.ndarray,
    labelers: LabelerSet,
    ms: float,
) -> None:
    """Replace the cheap labelers' stored suggestions of ``ids`` with the current models'
    (what reviewers, the queue and exports see after a retrain). The LLM's answers stay.

    Each chunk of items is swapped in its own short transaction (an item's old and new rows
    never show together), so reviewers' writes are not held up behind thousands of rows."""
    names = [m.labeler_id for m in labelers.members] + [labelers.ensemble.labeler_id]
    for start in range(0, len(ids), REFRESH_CHUNK):
        part = slice(start, start + REFRESH_CHUNK)
        rows = stack_to_suggestion_rows(
            ids[part], hashes[part], stack[:, part], probs[part], labelers, ms
        )
        with ctx.db.short_write() as conn:
            replace_suggestions(conn, ids[part], names)
            add_suggestions(conn, rows)


def ask_expensive(
    ctx: ProjectContext,
    expensive: Labeler,
    *,
    embedder: Embedder,
    labelers: LabelerSet,
) -> SuggestReport:
    """The cascade over pending items: the expensive labeler (the LLM) answers where the
    policy says it pays and on the calibration sample's members waiting for people (its
    answers there are the unbiased basis its weight is learned on,
    ``annotate.route.expensive_weight``; see ``Cascade.pick``), once per item (items it has
    already answered are skipped)."""
    report = SuggestReport(human_labels=len(labelers.humans), labelers=[expensive.labeler_id])
    sample = CalibrationSample.draw(ctx, len(labelers.humans))
    pending = items_in(ctx.db, ctx.id, (ItemState.suggested, ItemState.queued))
    pending += [it for it in items_queued_for_purpose(ctx.db, ctx.id) if it[0] in sample.members]
    pending = sample.members_first(pending)
    asked = answered_by(ctx.db, expensive.labeler_id, [p[0] for p in pending])
    pending = [p for p in pending if p[0] not in asked]
    cascade = cascade_for(ctx, expensive, labelers)
    for start in range(0, len(pending), BATCH):
        if getattr(expensive, "remaining_calls", None) == 0:
            break
        batch = pending[start : start + BATCH]
        _, probs, split = labelers.probs(embedder.embed([b[1] for b in batch]))
        rows = _ask(cascade, batch, probs, split, len(labelers.humans), report, sample)
        with ctx.db.engine.begin() as conn:
            add_suggestions(conn, rows)
        report.items += len(rows)
        report.suggestions += len(rows)
    return report
