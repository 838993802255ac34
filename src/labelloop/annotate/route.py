"""Route: machines label what they can settle, the rest queues for people.

``route`` calibrates the ensemble's confidence on human labels, picks per-label thresholds
whose lower confidence bound on precision meets the project's target, auto-labels what clears
them (a share of those also goes to people as an audit), and queues the rest, most useful
first.

The precision estimate comes from the calibration sample (``routing.sample``): a random share of
the pool that people label first, whatever the model thinks of it, so the estimate represents
the items machines will label rather than the hard items active learning picks. Per-class
thresholds borrow strength across classes (``fit_sample_thresholds``), and audits of machine
labels tighten a class through a sequential test (``routing.sequential``). The LLM's stored answers, where the cascade asked it, are pooled in with a weight learned
on human labels, from every entrance (CLI, notebook, API, worker).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from labelloop.active.acquisition import label_set_uncertainty, margin_score
from labelloop.active.dedup import near_duplicate_groups, representatives
from labelloop.active.diversity import density, typiclust_cold_start
from labelloop.active.priority import combined_priority
from labelloop.annotate.calibration_sample import (
    CalibrationSample,
    calibration_evidence,
)
from labelloop.annotate.checks import labeler_bias
from labelloop.annotate.reviewers import reviewer_accuracy_high
from labelloop.annotate.suggest import refresh_suggestions
from labelloop.core.probs import encode_labels, is_multi_label
from labelloop.embed.base import Embedder
from labelloop.embed.factory import project_embedder
from labelloop.labelers.ensemble import combine_probs, cross_validated_lift
from labelloop.labelers.factory import LabelerSet, current_labelers
from labelloop.review.gold import gold_answers
from labelloop.review.queue import WRITE_CHUNK, ReviewQueue
from labelloop.routing.calibration import Calibrator, fit_calibrator
from labelloop.routing.router import (
    Decisions,
    SetDecisions,
    adjust_set_threshold,
    adjust_thresholds,
    route_sets,
)
from labelloop.routing.router import route as route_probs
from labelloop.routing.sample import keyed_uniforms
from labelloop.routing.sequential import tighten_thresholds
from labelloop.routing.thresholds import (
    SetThreshold,
    ThresholdSet,
    class_alpha,
    fit_calibrated_thresholds,
    fit_sample_thresholds,
    fit_set_threshold,
    fit_thresholds,
)
from labelloop.store.context import ProjectContext
from labelloop.store.events import log_event
from labelloop.store.labels import set_final_labels
from labelloop.store.machine_labels import revoke_machine_labels
from labelloop.store.models import ItemState
from labelloop.store.reads import (
    audit_results,
    final_labels_frame,
    group_items,
    items_in,
    items_queued_for_purpose,
    latest_labeler_like,
    latest_suggestion_versions,
    latest_valid_probs,
)


@dataclass
class RouteReport:
    pending: int = 0
    auto: int = 0
    audit: int = 0
    queued: int = 0
    grouped: int = 0  # near-duplicates waiting for their representative's label
    llm_weight: float = 0.0  # weight of the LLM's answers in the pooled probabilities
    llm_weight_note: str = ""  # what that weight was measured on (ExpensiveWeight.note)
    overlap: int = 0  # review items that k people label (agreement)
    gold: int = 0  # gold items mixed into the queue (reviewer scoring)
    human_labels: int = 0
    refreshed: int = 0  # items whose stored suggestions were replaced by the current models'
    calibration_sample: int = 0  # items in the random calibration sample (labeled or waiting)
    calibration_labeled: int = 0  # of those, the ones people labeled: the thresholds' evidence
    calibration_queued: int = 0  # sample items this routing sent to people
    calibration: str = ""
    revoked: int = 0  # machine labels the current models and thresholds no longer support
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stored_llm_labeler(ctx: ProjectContext) -> str | None:
    """The LLM whose stored answers routing pools in, when ``labelers.llm`` is enabled: the
    configured model's (labeler id ``llm:<model>``; for the local model, whichever local model
    answered last), never a model the project file no longer names."""
    cfg = ctx.config.labelers.llm
    if not cfg.enabled:
        return None
    if cfg.backend == "openai":
        return f"llm:{cfg.model}" if cfg.model else None
    return latest_labeler_like(ctx.db, ctx.id, "llm:")


def expensive_probs(
    ctx: ProjectContext, labeler: str, ids: list[int], label_names: list[str], multi: bool = False
) -> dict[int, np.ndarray]:
    """The latest valid answer of ``labeler`` per item, as probability rows (summing to one,
    or with ``multi`` per-label probabilities as they are)."""
    out: dict[int, np.ndarray] = {}
    for item_id, probs in latest_valid_probs(ctx.db, labeler, ids).items():
        row = np.array([float(probs.get(n, 0.0)) for n in label_names])
        if multi:
            out[item_id] = np.clip(row, 0.0, 1.0)
        elif row.sum() > 0:
            out[item_id] = row / row.sum()
    return out


BIASED_WEIGHT_CAP = 0.2  # the most a labeler the bias checks flag may weigh in the pool


@dataclass(frozen=True)
class ExpensiveWeight:
    """The expensive labeler's weight in the pool and what it was measured on."""

    weight: float
    items: int  # human-labeled items it answered that the weight was fit on
    basis: str  # "calibration sample", "human labels" or "" (not measured)
    loss_alone: float = math.nan  # held-out log-loss of the cheap ensemble on those items
    loss_pooled: float = math.nan  # and of the pool with the expensive labeler in it
    flagged: bool = False  # the bias checks flag it: weight capped at BIASED_WEIGHT_CAP
    needed: int = 20  # items it must have answered before a weight is fit

    def note(self) -> str:
        if not self.basis:
            return (
                f"not measured yet: {self.items} items it answered carry a human label it can "
                f"be compared with, {self.needed} needed"
            )
        lift = f"held-out log-loss {self.loss_alone:.3f} without it, {self.loss_pooled:.3f} with it"
        capped = f"; bias checks flag it, capped at {BIASED_WEIGHT_CAP}" if self.flagged else ""
        return f"fit on {self.items} {self.basis} items it answered; {lift}{capped}"


def expensive_weight(
    ctx: ProjectContext, labeler: str, labelers: LabelerSet, min_items: int = 20
) -> ExpensiveWeight:
    """The weight of the expensive labeler in the pool, learned on human-labeled items it
    also answered (against the cheap ensemble's held-out probabilities).

    On an unbiased basis: where the project keeps a calibration sample, only sampled items
    count (actively chosen items are the hard ones, where the cheap labelers are weakest, so
    any second opinion looks good there). The weight is 0 with fewer than ``min_items`` such
    items, and 0 unless pooling lowers the held-out log-loss under cross-validation (measured
    lift, not in-sample fit); a labeler the bias checks flag (``labeler_bias``: one label far
    more often than people give it) weighs at most ``BIASED_WEIGHT_CAP``."""
    multi = is_multi_label(labelers.task)
    human_ids = [int(i) for i in labelers.humans.item_ids]
    answered = expensive_probs(ctx, labeler, human_ids, labelers.label_names, multi)
    rows = [k for k, i in enumerate(human_ids) if i in answered]
    evidence = calibration_evidence(ctx, labelers.humans.item_ids)
    basis = "human labels"
    if evidence is not None:
        rows = [k for k in rows if evidence[k]]
        basis = "calibration sample"
    if len(rows) < min_items or not len(labelers.held_out_probs):
        return ExpensiveWeight(0.0, len(rows), "", needed=min_items)
    stack = np.stack(
        [labelers.held_out_probs[rows], np.stack([answered[human_ids[k]] for k in rows])]
    )
    y = (
        encode_labels(labelers.humans.labels, labelers.label_names, labelers.task)
        if multi
        else labelers.held_out_y()
    )
    weights, alone, pooled = cross_validated_lift(stack, y[rows], labelers.task)
    weight = float(weights[1]) if pooled < alone else 0.0
    bias = labeler_bias(ctx)
    flagged = bool(len(bias) and bias.loc[bias["labeler"] == labeler, "flagged"].astype(bool).any())
    if flagged:
        weight = min(weight, BIASED_WEIGHT_CAP)
    return ExpensiveWeight(weight, len(rows), basis, alone, pooled, flagged, min_items)


def blend_expensive(
    ctx: ProjectContext,
    labeler: str,
    label_names: list[str],
    ids: np.ndarray,
    probs: np.ndarray,
    weight: float,
    task: str = "single_label",
) -> np.ndarray:
    """Pool the expensive labeler's answers (where it gave one) into ``probs``."""
    if weight <= 0.0:
        return probs
    multi = task == "multi_label"
    answered = expensive_probs(ctx, labeler, [int(i) for i in ids], label_names, multi)
    out = probs.copy()
    for k, item_id in enumerate(ids):
        row = answered.get(int(item_id))
        if row is not None:
            pair = np.stack([probs[k : k + 1], row[None, :]])
            out[k] = combine_probs(pair, np.array([1 - weight, weight]), task)[0]
    return out


class ItemScores:
    """Items' vectors and the labelers' outputs (member stack, ensemble probabilities,
    disagreement), each item computed once in a route: the calibrated threshold rule, taking
    machine labels back and routing itself look at overlapping sets of items."""

    def __init__(self, embedder: Embedder, labelers: LabelerSet) -> None:
        self.embedder = embedder
        self.labelers = labelers
        self.row: dict[int, int] = {}  # item id -> row of the arrays below
        self.vectors = self.stack = self.probs = self.split = np.zeros(0)
        self.seconds = 0.0  # spent computing, for the suggestions' time per item
        self.computed = 0

    @property
    def ms_per_item(self) -> float:
        return self.seconds * 1000 / max(self.computed, 1)

    def of(
        self, items: list[tuple[int, str, str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vectors, member stack, probabilities, disagreement) of ``items``, in their order."""
        new = list({it[0]: it for it in items if it[0] not in self.row}.values())
        if new:
            started = time.perf_counter()
            vectors = self.embedder.embed([it[1] for it in new])
            stack, probs, split = self.labelers.probs(vectors)
            self.seconds += time.perf_counter() - started
            self.computed += len(new)
            first = len(self.row)
            self.row.update({it[0]: first + k for k, it in enumerate(new)})
            if first == 0:
                self.vectors, self.stack, self.probs, self.split = vectors, stack, probs, split
            else:
                self.vectors = np.concatenate([self.vectors, vectors])
                self.stack = np.concatenate([self.stack, stack], axis=1)
                self.probs = np.concatenate([self.probs, probs])
                self.split = np.concatenate([self.split, split])
        at = [self.row[it[0]] for it in items]
        return self.vectors[at], self.stack[:, at], self.probs[at], self.split[at]


def route(
    ctx: ProjectContext,
    *,
    embedder: Embedder | None = None,
    labelers: LabelerSet | None = None,
    min_support: int = 30,
    llm_labeler: str | None = None,
    use_stored_llm: bool = True,
    refresh: bool = True,
) -> RouteReport:
    """Auto-label what meets the precision target; queue the rest with active-learning priority.

    Single-label: per-label thresholds on calibrated probabilities. Multi-label: one threshold
    on the confidence of whole predicted label sets, fit on held-out probabilities as they are
    (identity calibration), and an item's final label is its whole set.

    ``llm_labeler``: whose stored answers to pool in; by default (``use_stored_llm``) the
    configured LLM's. ``refresh``: pending items whose stored suggestions came from older
    models get the current models' suggestions (what reviewers and exports see).
    """
    started = time.perf_counter()
    cfg = ctx.config
    multi = cfg.task == "multi_label"
    embedder = embedder or project_embedder(ctx)
    labelers = labelers or current_labelers(ctx, embedder)[0]
    report = RouteReport(human_labels=len(labelers.humans))
    pending = items_in(ctx.db, ctx.id, (ItemState.suggested, ItemState.queued))
    report.pending = len(pending)
    if not pending:
        return report

    names = labelers.label_names
    held_out = labelers.held_out_probs
    weight = 0.0
    if llm_labeler is None and use_stored_llm:
        llm_labeler = stored_llm_labeler(ctx)
    if llm_labeler is not None:
        measured = expensive_weight(ctx, llm_labeler, labelers)
        weight = measured.weight
        report.llm_weight_note = measured.note()
        held_out = blend_expensive(
            ctx, llm_labeler, names, labelers.humans.item_ids, held_out, weight, cfg.task
        )
        report.llm_weight = weight
    can_auto = len(held_out) >= min_support
    scores = ItemScores(embedder, labelers)
    sample = CalibrationSample.draw(ctx, len(labelers.humans))
    report.calibration_sample = int(sample.size)
    # None: too few human labels, auto-accept nothing.
    calibrator: Calibrator | None = None
    thresholds: ThresholdSet | None = None  # single-label: one per label
    set_threshold: SetThreshold | None = None  # multi-label: one for whole sets
    if can_auto and multi:
        set_threshold = _set_threshold(ctx, labelers, held_out, min_support)
        report.calibration = "IdentityCalibrator"
        report.thresholds = [set_threshold.as_row()]
    elif can_auto:
        pool_probs = pool_scale = None
        if cfg.metrics.threshold_rule == "calibrated" and sample.active:
            # The items machines may label: those waiting and those machines labeled.
            pool_items = pending + items_in(ctx.db, ctx.id, (ItemState.auto,))
            pool_vectors, _, pool_probs, _ = scores.of(pool_items)
            # The same items as the held-out probabilities' fold models see them.
            pool_scale = labelers.held_out_scale_probs(pool_vectors)
            if llm_labeler is not None:
                pool_ids = np.array([p[0] for p in pool_items], dtype=np.int64)
                pool_probs = blend_expensive(
                    ctx, llm_labeler, names, pool_ids, pool_probs, weight, cfg.task
                )
                if pool_scale is not None:
                    pool_scale = blend_expensive(
                        ctx, llm_labeler, names, pool_ids, pool_scale, weight, cfg.task
                    )
        calibrator, thresholds, report.calibration_labeled = _label_thresholds(
            ctx, labelers, held_out, min_support, sample, pool_probs, pool_scale
        )
        report.calibration = type(calibrator).__name__
        report.thresholds = [asdict(t) for t in thresholds.labels]
        back = revisit_machine_labels(
            ctx, labelers, scores, calibrator, thresholds, llm_labeler, weight
        )
        report.revoked = len(back)
        pending = sorted(pending + back)

    ids = np.array([p[0] for p in pending], dtype=np.int64)
    vectors, stack, probs, split = scores.of(pending)
    if refresh:
        ms = scores.ms_per_item
        report.refreshed = _refresh_stale(ctx, labelers, pending, stack, probs, ms)
        waiting = items_queued_for_purpose(ctx.db, ctx.id)
        if waiting:  # audits, the calibration sample, rechecks: people see current suggestions
            _, w_stack, w_probs, _ = scores.of(waiting)
            report.refreshed += _refresh_stale(ctx, labelers, waiting, w_stack, w_probs, ms)
    if llm_labeler is not None:
        probs = blend_expensive(ctx, llm_labeler, names, ids, probs, weight, cfg.task)
    calibrated = calibrator.transform(probs) if calibrator is not None else probs
    keys = [int(i) for i in ids]
    decisions: Decisions | SetDecisions
    if multi:
        decisions = route_sets(
            probs,
            set_threshold if set_threshold is not None else np.inf,
            audit_rate=cfg.metrics.audit_rate,
            keys=keys,
        )
        machine_sets = [[names[j] for j in np.flatnonzero(row)] for row in decisions.labels]
    else:
        decisions = route_probs(
            calibrated,
            thresholds if thresholds is not None else np.full(probs.shape[1], np.inf),
            audit_rate=cfg.metrics.audit_rate,
            keys=keys,
        )
        machine_sets = [[names[int(lab)]] for lab in decisions.label]
    if sample.active:  # sampled items go to people, whatever the machine thinks of them
        sampled = sample.contains(ids)
        decisions = replace(
            decisions, auto=decisions.auto & ~sampled, audit=decisions.audit & ~sampled
        )
    else:
        sampled = np.zeros(len(ids), dtype=bool)
    priority = review_priority(ctx, calibrated, split, vectors, len(labelers.humans))

    def machine_label(k: int) -> dict[str, Any]:
        return {
            "project_id": ctx.id,
            "item_id": int(ids[k]),
            "labels": machine_sets[k],
            "source_kind": "machine",
            "source_name": "ensemble",
            "source_version": labelers.ensemble.version,
            "confidence": float(decisions.confidence[k]),
        }

    unaudited = [machine_label(k) for k in np.flatnonzero(decisions.auto & ~decisions.audit)]
    for start in range(0, len(unaudited), WRITE_CHUNK):  # short transactions (one writer)
        with ctx.db.short_write() as conn:
            set_final_labels(conn, unaudited[start : start + WRITE_CHUNK])
    with ctx.db.engine.begin() as conn:
        # An audited item's machine label and its audit record are written together, so the
        # person's later answer is always compared with what the machine said.
        set_final_labels(conn, [machine_label(k) for k in np.flatnonzero(decisions.audit)])
        for k in np.flatnonzero(decisions.audit):
            payload: dict[str, Any] = {
                "machine_label": ", ".join(machine_sets[k]) if multi else machine_sets[k][0],
                "confidence": float(decisions.confidence[k]),
                "labeler": "ensemble",
                "version": labelers.ensemble.version,
            }
            if multi:  # the whole set: an audit is right only if the person gives this set
                payload["machine_labels"] = machine_sets[k]
            log_event(conn, ctx.id, "audit", payload, int(ids[k]))
    review = decisions.needs_review
    audit = decisions.audit
    # A sampled near-duplicate waits for its group's label like any other: one person's
    # answer for the group, as promised, sample or not.
    waiting = group_near_duplicates(ctx, ids, vectors, priority, review & ~audit)
    review &= ~waiting
    sampled &= ~waiting
    report.grouped = int(waiting.sum())
    queue = ReviewQueue(ctx.db, ctx.id, cfg.task)
    plain = review & ~audit & ~sampled
    overlap = plain & (
        keyed_uniforms([int(i) for i in ids], salt="overlap") < cfg.review.overlap_share
    )
    queue.enqueue(
        ids[plain & ~overlap].tolist(), priority[plain & ~overlap].tolist(), reason="review"
    )
    queue.enqueue(
        ids[overlap].tolist(),
        priority[overlap].tolist(),
        reason="overlap",
        reviews_needed=cfg.review.overlap_k,
    )
    report.overlap = int(overlap.sum())
    report.gold = mix_in_gold(ctx, int(plain.sum()), priority)
    # Audit items jump the queue: their answers measure the precision of machine labels.
    queue.enqueue(ids[audit].tolist(), (priority[audit] + 10.0).tolist(), reason="audit")
    report.calibration_queued = sample.enqueue(ctx, ids[sampled])
    report.auto = int(decisions.auto.sum())
    report.audit = int(audit.sum())
    report.queued = int(review.sum())
    report.seconds = time.perf_counter() - started
    return report


def revisit_machine_labels(
    ctx: ProjectContext,
    labelers: LabelerSet,
    scores: ItemScores,
    calibrator: Calibrator,
    thresholds: ThresholdSet,
    llm_labeler: str | None,
    weight: float,
) -> list[tuple[int, str, str]]:
    """Take back the machine labels the current models and thresholds no longer give: those
    whose item's calibrated confidence is now below its predicted label's threshold, or whose
    predicted label changed. They return to the routing pool (returned, as ``items_in`` rows),
    where the current rule labels them again or sends them to people.

    Why: a machine label is a decision of the models and thresholds of its day. Kept as it was,
    labels an early model gave under thresholds later raised stay wrong: on banking77 (issue
    10), 17 of 75 intents ended below target in the loop while the final models, applied to
    the same pool, left 5 below. Revisiting costs no human work, where sending contradicted
    machine labels to a second person (as before) spent the recheck budget on them."""
    done = items_in(ctx.db, ctx.id, (ItemState.auto,))
    if not done:
        return []
    given_frame = final_labels_frame(ctx.db, ctx.id, ("machine",))
    given_by_id = {
        int(i): (ls[0] if ls else None)
        for i, ls in zip(given_frame["item_id"], given_frame["labels"], strict=True)
    }
    ids = np.array([d[0] for d in done], dtype=np.int64)
    probs = scores.of(done)[2]
    if llm_labeler is not None:
        probs = blend_expensive(
            ctx, llm_labeler, labelers.label_names, ids, probs, weight, labelers.task
        )
    calibrated = calibrator.transform(probs)
    pred = calibrated.argmax(axis=1)
    conf = calibrated.max(axis=1)
    names = labelers.label_names
    keep = (conf >= thresholds.values[pred]) & np.array(
        [given_by_id.get(int(i)) == names[j] for i, j in zip(ids, pred, strict=True)]
    )
    back = [int(i) for i in ids[~keep]]
    if not back:
        return []
    with ctx.db.engine.begin() as conn:
        taken = revoke_machine_labels(conn, ctx.id, back)
        log_event(conn, ctx.id, "machine_labels_revoked", {"items": taken})
    taken_ids = set(back)
    return [d for d in done if d[0] in taken_ids]


def _refresh_stale(
    ctx: ProjectContext,
    labelers: LabelerSet,
    items: list[tuple[int, str, str]],
    stack: np.ndarray,
    probs: np.ndarray,
    ms: float,
) -> int:
    """Replace the suggestions of ``items`` that older models made; returns how many."""
    ids = [it[0] for it in items]
    current = labelers.ensemble.version
    versions = latest_suggestion_versions(ctx.db, "ensemble", ids)
    stale = [k for k, v in enumerate(versions) if v != current]
    if stale:
        refresh_suggestions(
            ctx,
            [ids[k] for k in stale],
            [items[k][2] for k in stale],
            stack[:, stale],
            probs[stale],
            labelers,
            ms,
        )
    return len(stale)


def _label_thresholds(
    ctx: ProjectContext,
    labelers: LabelerSet,
    held_out: np.ndarray,
    min_support: int,
    sample: CalibrationSample,
    pool_probs: np.ndarray | None = None,
    pool_scale: np.ndarray | None = None,
) -> tuple[Calibrator, ThresholdSet, int]:
    """Single-label: a calibrator fit on every human label's held-out probabilities, and
    per-label thresholds fit on the calibration sample's (with shrinkage across labels), each
    raised where the sequential test on its audits says precision is below target. Also
    returns how many sampled items were labeled. Without a sample (``calibration_share`` 0)
    thresholds are fit on every human label, as before issue 10. With ``pool_probs`` (the
    probabilities of the items machines may label) and ``metrics.threshold_rule`` "calibrated",
    thresholds come from a correctness model fit on every human label, averaged over the pool,
    the sample guarding (``fit_calibrated_thresholds``); ``pool_scale``: the pool's
    probabilities from the held-out probabilities' fold models
    (``LabelerSet.held_out_scale_probs``), which that model reads."""
    y = labelers.held_out_y()
    calibrator = fit_calibrator(held_out, y)
    metrics = ctx.config.metrics
    names = labelers.label_names
    alpha = class_alpha(0.05, len(names), metrics.class_guarantee)
    in_sample = calibration_evidence(ctx, labelers.humans.item_ids) if sample.active else None
    if in_sample is not None and pool_probs is not None and metrics.threshold_rule == "calibrated":
        sample_w = np.full(int(in_sample.sum()), 1.0 / max(sample.inclusion, 1e-12))
        pool = calibrator.transform(pool_probs)
        pool_conf = None
        if pool_scale is not None:
            pred = pool.argmax(axis=1)
            pool_conf = calibrator.transform(pool_scale)[np.arange(len(pred)), pred]
        thresholds = fit_calibrated_thresholds(
            calibrator.transform(held_out),
            y,
            pool,
            pool_conf=pool_conf,
            target=metrics.precision_target,
            alpha=alpha,
            guard_probs=calibrator.transform(held_out[in_sample]),
            guard_y=y[in_sample],
            guard_weights=sample_w,
            label_names=names,
            reviewer_accuracy=reviewer_accuracy_high(ctx),
        )
        labeled = int(in_sample.sum())
    elif in_sample is not None:
        thresholds = fit_sample_thresholds(
            calibrator.transform(held_out[in_sample]),
            y[in_sample],
            weights=np.full(int(in_sample.sum()), 1.0 / max(sample.inclusion, 1e-12)),
            target=metrics.precision_target,
            alpha=alpha,
            max_strength=metrics.prior_strength,
            min_prior_wrong=metrics.prior_min_wrong,
            reviewer_accuracy=reviewer_accuracy_high(ctx),
            label_names=names,
        )
        labeled = int(in_sample.sum())
    else:
        thresholds = fit_thresholds(
            calibrator.transform(held_out),
            y,
            target=metrics.precision_target,
            alpha=alpha,
            min_support=min_support,
            label_names=names,
        )
        labeled = 0
    audit = audit_results(ctx.db, ctx.id, ctx.config.task)
    if len(audit):
        index = {n: i for i, n in enumerate(names)}
        audit = audit[audit["machine_label"].isin(index) & audit["confidence"].notna()]
        args = (
            audit["machine_label"].map(index).to_numpy(),
            audit["confidence"].astype(float).to_numpy(),
            audit["correct"].to_numpy(),
        )
        if sample.active:  # an always-valid test: checking on every retrain is fine
            thresholds = tighten_thresholds(thresholds, *args)
        else:
            thresholds = adjust_thresholds(thresholds, *args)
    return calibrator, thresholds, labeled


def _set_threshold(
    ctx: ProjectContext, labelers: LabelerSet, held_out: np.ndarray, min_support: int
) -> SetThreshold:
    """Multi-label: one threshold on whole-set confidence, fit on the held-out probabilities
    against the people's label sets, raised where audits of machine sets fall short."""
    Y = encode_labels(labelers.humans.labels, labelers.label_names, labelers.task)
    threshold = fit_set_threshold(
        held_out,
        Y,
        target=ctx.config.metrics.precision_target,
        min_support=min_support,
    )
    audit = audit_results(ctx.db, ctx.id, ctx.config.task)
    audit = audit[audit["confidence"].notna()] if len(audit) else audit
    if len(audit):
        threshold = adjust_set_threshold(
            threshold,
            audit["confidence"].astype(float).to_numpy(),
            audit["correct"].to_numpy(),
        )
    return threshold


def mix_in_gold(ctx: ProjectContext, n_queued: int, priority: np.ndarray) -> int:
    """Put gold items (known answers) into the queue, spread through its priorities."""
    share = ctx.config.review.gold_share
    if not share or not n_queued:
        return 0
    gold = gold_answers(ctx)
    if not gold:
        return 0
    n = min(len(gold), max(1, round(share * n_queued)))
    picked = sorted(gold)[:: max(1, len(gold) // n)][:n]
    rng = np.random.default_rng(0)
    spread = rng.uniform(float(np.min(priority)), float(np.max(priority)), size=len(picked))
    ReviewQueue(ctx.db, ctx.id, ctx.config.task).enqueue(
        picked, spread.tolist(), reason="gold", reviews_needed=10_000
    )
    return len(picked)


def group_near_duplicates(
    ctx: ProjectContext,
    ids: np.ndarray,
    vectors: np.ndarray,
    priority: np.ndarray,
    candidates: np.ndarray,
) -> np.ndarray:
    """Among items bound for review, near-duplicates wait for their group's representative
    (its most useful member) and take its label. Returns a mask of the items that wait."""
    waiting = np.zeros(len(ids), dtype=bool)
    idx = np.flatnonzero(candidates)
    if len(idx) < 2:
        return waiting
    groups = near_duplicate_groups(
        vectors[idx], threshold=ctx.config.active.near_duplicate_threshold
    )
    reps = representatives(groups, priority[idx])
    rep_of = reps[groups]  # position (within idx) of each item's representative
    members = rep_of != np.arange(len(idx))
    if not members.any():
        return waiting
    waiting[idx[members]] = True
    group_items(
        ctx.db, [(int(ids[idx[j]]), int(ids[idx[rep_of[j]]])) for j in np.flatnonzero(members)]
    )
    return waiting


def review_priority(
    ctx: ProjectContext, probs: np.ndarray, split: np.ndarray, vectors: np.ndarray, n_human: int
) -> np.ndarray:
    """Higher first: uncertainty, disagreement and density, or typical items at cold start."""
    a = ctx.config.active
    n = len(probs)
    multi = ctx.config.task == "multi_label"
    uncertainty = label_set_uncertainty(probs) if multi else margin_score(probs)
    scores = {"uncertainty": uncertainty, "disagreement": split}
    weights = {"uncertainty": a.uncertainty, "disagreement": a.disagreement}
    if a.density and n <= 50_000:  # density is O(n^2): skip it on very large pools
        scores["density"] = density(vectors)
        weights["density"] = a.density
    priority = combined_priority(scores, weights)
    if n_human < a.cold_start_labels and n > 1:
        picks = typiclust_cold_start(vectors, batch_size=min(a.cold_start_labels - n_human, n))
        priority[picks] += 100.0 + np.linspace(1.0, 0.0, len(picks))
    return priority
