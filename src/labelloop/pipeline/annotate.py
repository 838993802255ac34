"""Suggest and route: machines label what they can settle, the rest queues for people.

``suggest`` runs the cheap labelers (and, where the cascade says it pays, the LLM) over items
without suggestions and stores every suggestion with its provenance. ``route`` calibrates the
ensemble's confidence on human labels, picks per-label thresholds whose lower confidence bound
on precision meets the project's target, auto-labels what clears them (a share of those also
goes to people as an audit), and queues the rest, most useful first.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import bindparam, func, select, update

from labelloop.pipeline.labelers import (
    LabelerSet,
    build_labelers,
    project_embedder,
    stack_to_suggestion_rows,
)
from labelloop.store.events import log_event
from labelloop.store.labels import add_suggestions, set_final_labels
from labelloop.store.models import ItemRow, ItemState, SuggestionRow

if TYPE_CHECKING:
    from labelloop.embed.base import Embedder
    from labelloop.labelers.base import Labeler
    from labelloop.project import Project
    from labelloop.routing.calibration import Calibrator
    from labelloop.routing.router import Decisions, SetDecisions
    from labelloop.routing.thresholds import SetThreshold, ThresholdSet

BATCH = 1024


@dataclass
class SuggestReport:
    items: int = 0
    suggestions: int = 0
    expensive_calls: int = 0
    invalid: int = 0
    cost_usd: float = 0.0
    human_labels: int = 0
    labelers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RouteReport:
    pending: int = 0
    auto: int = 0
    audit: int = 0
    queued: int = 0
    grouped: int = 0  # near-duplicates waiting for their representative's label
    llm_weight: float = 0.0  # weight of the LLM's answers in the pooled probabilities
    overlap: int = 0  # review items that k people label (agreement)
    gold: int = 0  # gold items mixed into the queue (reviewer scoring)
    human_labels: int = 0
    calibration: str = ""
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _items_in(
    project: Project, states: tuple[str, ...], limit: int | None = None
) -> list[tuple[int, str, str]]:
    t = ItemRow.__table__
    # What the embedder reads: the image file for images, the text otherwise.
    stmt = (
        select(t.c.id, func.coalesce(t.c.media_path, t.c.content), t.c.content_hash)
        .where(t.c.project_id == project.id, t.c.state.in_(states))
        .order_by(t.c.id)
    )
    if ItemState.queued in states:
        # Items queued for a purpose (audit, recheck, gold, overlap) wait for people; only
        # plain review items may be re-decided by machines.
        stmt = stmt.where(
            (t.c.state != ItemState.queued)
            | t.c.queue_reason.is_(None)
            | (t.c.queue_reason == "review")
        )
    if limit is not None:
        stmt = stmt.limit(limit)
    with project.db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(stmt)]


def _set_state(conn: Any, ids: list[int], state: str) -> None:
    stmt = (
        update(ItemRow.__table__)
        .where(ItemRow.__table__.c.id == bindparam("i"))
        .values(state=state)
    )
    conn.execute(stmt, [{"i": int(i)} for i in ids])


def suggest(
    project: Project,
    *,
    limit: int | None = None,
    expensive: Labeler | None = None,
    embedder: Embedder | None = None,
    labelers: LabelerSet | None = None,
    progress: bool = False,
) -> SuggestReport:
    """Suggest labels for items in state ``new``; they move to ``suggested``."""
    from rich.progress import Progress

    started = time.perf_counter()
    embedder = embedder or project_embedder(project)
    labelers = labelers or build_labelers(project, embedder)
    report = SuggestReport(human_labels=len(labelers.humans))
    report.labelers = [m.labeler_id for m in labelers.members] + ["ensemble"]
    todo = _items_in(project, (ItemState.new,), limit)
    cascade_policy = project.config.labelers.cascade
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("suggest", total=len(todo))
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            ids = [b[0] for b in batch]
            hashes = [b[2] for b in batch]
            t0 = time.perf_counter()
            vectors = embedder.embed([b[1] for b in batch])
            stack, probs, split = labelers.probs(vectors)
            ms = (time.perf_counter() - t0) * 1000 / max(len(batch), 1)
            rows = stack_to_suggestion_rows(ids, hashes, stack, probs, labelers, ms)
            if expensive is not None:
                rows += _ask_expensive(
                    expensive,
                    batch,
                    probs,
                    split,
                    len(labelers.humans),
                    cascade_policy,
                    labelers,
                    report,
                )
            with project.db.engine.begin() as conn:
                add_suggestions(conn, rows)
                _set_state(conn, ids, ItemState.suggested)
            report.items += len(batch)
            report.suggestions += len(rows)
            bar.advance(task, len(batch))
    report.seconds = time.perf_counter() - started
    return report


def _ask_expensive(
    expensive: Labeler,
    batch: list[tuple[int, str, str]],
    probs: np.ndarray,
    split: np.ndarray,
    n_human: int,
    policy: Any,
    labelers: LabelerSet,
    report: SuggestReport,
) -> list[Any]:
    """The cascade: the expensive labeler only for cold start, unsure or disputed items."""
    from labelloop.core.types import Item
    from labelloop.labelers.ensemble import CascadePolicy, select_for_expensive
    from labelloop.labelers.probs import confidence_of

    mask, _ = select_for_expensive(
        confidence_of(probs, labelers.task),
        split,
        n_human,
        CascadePolicy(
            policy.min_human_labels, policy.confidence_threshold, policy.disagreement_threshold
        ),
    )
    picked = np.flatnonzero(mask)
    budget = getattr(expensive, "remaining_calls", None)
    if budget is not None:  # a capped labeler: the least certain items first
        conf = confidence_of(probs, labelers.task)
        picked = picked[np.argsort(conf[picked], kind="stable")][:budget]
    chosen = [
        Item(content=batch[j][1], content_hash=batch[j][2], id=batch[j][0]) for j in sorted(picked)
    ]
    if not chosen:
        return []
    k = getattr(expensive, "candidate_labels", 0)
    if k and hasattr(expensive, "suggest_among") and 0 < k < probs.shape[1]:
        names = labelers.label_names
        top = np.argsort(-probs[sorted(picked)], axis=1, kind="stable")[:, :k]
        out = expensive.suggest_among(chosen, [[names[j] for j in row] for row in top])
    else:
        out = expensive.suggest(chosen)
    report.expensive_calls += len(chosen)
    report.invalid += sum(s.status != "ok" for s in out)
    report.cost_usd += sum(s.cost_usd for s in out)
    return out


def ask_expensive(
    project: Project,
    expensive: Labeler,
    *,
    embedder: Embedder,
    labelers: LabelerSet,
) -> SuggestReport:
    """The cascade over pending items: the expensive labeler (the LLM) answers only where the
    policy says it pays, once per item (items it has already answered are skipped)."""
    report = SuggestReport(human_labels=len(labelers.humans), labelers=[expensive.labeler_id])
    pending = _items_in(project, (ItemState.suggested, ItemState.queued))
    asked = _answered_by(project, expensive.labeler_id, [p[0] for p in pending])
    pending = [p for p in pending if p[0] not in asked]
    for start in range(0, len(pending), BATCH):
        if getattr(expensive, "remaining_calls", None) == 0:
            break
        batch = pending[start : start + BATCH]
        _, probs, split = labelers.probs(embedder.embed([b[1] for b in batch]))
        rows = _ask_expensive(
            expensive,
            batch,
            probs,
            split,
            len(labelers.humans),
            project.config.labelers.cascade,
            labelers,
            report,
        )
        with project.db.engine.begin() as conn:
            add_suggestions(conn, rows)
        report.items += len(rows)
        report.suggestions += len(rows)
    return report


def _answered_by(project: Project, labeler: str, ids: list[int]) -> set[int]:
    s = SuggestionRow.__table__
    out: set[int] = set()
    with project.db.engine.connect() as conn:
        for start in range(0, len(ids), 900):
            out.update(
                conn.execute(
                    select(s.c.item_id).where(
                        s.c.labeler == labeler, s.c.item_id.in_(ids[start : start + 900])
                    )
                ).scalars()
            )
    return out


def expensive_probs(
    project: Project, labeler: str, ids: list[int], label_names: list[str], multi: bool = False
) -> dict[int, np.ndarray]:
    """The latest valid answer of ``labeler`` per item, as probability rows (summing to one,
    or with ``multi`` per-label probabilities as they are)."""
    s = SuggestionRow.__table__
    out: dict[int, np.ndarray] = {}
    with project.db.engine.connect() as conn:
        for start in range(0, len(ids), 900):
            rows = conn.execute(
                select(s.c.item_id, s.c.probs)
                .where(
                    s.c.labeler == labeler,
                    s.c.status == "ok",
                    s.c.item_id.in_(ids[start : start + 900]),
                )
                .order_by(s.c.id)
            )
            for item_id, probs in rows:
                row = np.array([float(probs.get(n, 0.0)) for n in label_names])
                if multi:
                    out[item_id] = np.clip(row, 0.0, 1.0)
                elif row.sum() > 0:
                    out[item_id] = row / row.sum()
    return out


def expensive_weight(
    project: Project, labeler: str, labelers: LabelerSet, min_items: int = 20
) -> float:
    """The weight of the expensive labeler in the pool, learned on human-labeled items it
    also answered (against the cheap ensemble's held-out probabilities). With fewer than
    ``min_items`` such items it is 0: a labeler not yet measured does not move labels."""
    from labelloop.labelers.ensemble import fit_pool_weights
    from labelloop.labelers.probs import encode_labels, is_multi_label

    multi = is_multi_label(labelers.task)
    human_ids = [int(i) for i in labelers.humans.item_ids]
    answered = expensive_probs(project, labeler, human_ids, labelers.label_names, multi)
    if len(answered) < min_items or not len(labelers.held_out_probs):
        return 0.0
    rows = [k for k, i in enumerate(human_ids) if i in answered]
    stack = np.stack(
        [labelers.held_out_probs[rows], np.stack([answered[human_ids[k]] for k in rows])]
    )
    y = (
        encode_labels(labelers.humans.labels, labelers.label_names, labelers.task)
        if multi
        else labelers.held_out_y()
    )
    return float(fit_pool_weights(stack, y[rows], labelers.task)[1])


def blend_expensive(
    project: Project,
    labeler: str,
    label_names: list[str],
    ids: np.ndarray,
    probs: np.ndarray,
    weight: float,
    task: str = "single_label",
) -> np.ndarray:
    """Pool the expensive labeler's answers (where it gave one) into ``probs``."""
    from labelloop.labelers.ensemble import combine_probs

    if weight <= 0.0:
        return probs
    multi = task == "multi_label"
    answered = expensive_probs(project, labeler, [int(i) for i in ids], label_names, multi)
    out = probs.copy()
    for k, item_id in enumerate(ids):
        row = answered.get(int(item_id))
        if row is not None:
            pair = np.stack([probs[k : k + 1], row[None, :]])
            out[k] = combine_probs(pair, np.array([1 - weight, weight]), task)[0]
    return out


def route(
    project: Project,
    *,
    embedder: Embedder | None = None,
    labelers: LabelerSet | None = None,
    min_support: int = 30,
    llm_labeler: str | None = None,
) -> RouteReport:
    """Auto-label what meets the precision target; queue the rest with active-learning priority.

    Single-label: per-label thresholds on calibrated probabilities. Multi-label: one threshold
    on the confidence of whole predicted label sets, fit on held-out probabilities as they are
    (identity calibration), and an item's final label is its whole set.
    """
    from labelloop.routing.router import route as route_probs
    from labelloop.routing.router import route_sets

    started = time.perf_counter()
    cfg = project.config
    multi = cfg.task == "multi_label"
    embedder = embedder or project_embedder(project)
    labelers = labelers or build_labelers(project, embedder)
    report = RouteReport(human_labels=len(labelers.humans))
    pending = _items_in(project, (ItemState.suggested, ItemState.queued))
    report.pending = len(pending)
    if not pending:
        return report

    names = labelers.label_names
    held_out = labelers.held_out_probs
    weight = 0.0
    if llm_labeler is not None:
        weight = expensive_weight(project, llm_labeler, labelers)
        held_out = blend_expensive(
            project, llm_labeler, names, labelers.humans.item_ids, held_out, weight, cfg.task
        )
        report.llm_weight = weight
    can_auto = len(held_out) >= min_support
    # None: too few human labels, auto-accept nothing.
    calibrator: Calibrator | None = None
    thresholds: ThresholdSet | None = None  # single-label: one per label
    set_threshold: SetThreshold | None = None  # multi-label: one for whole sets
    if can_auto and multi:
        set_threshold = _set_threshold(project, labelers, held_out, min_support)
        report.calibration = "IdentityCalibrator"
        report.thresholds = [set_threshold.as_row()]
    elif can_auto:
        calibrator, thresholds = _label_thresholds(project, labelers, held_out, min_support)
        report.calibration = type(calibrator).__name__
        report.thresholds = [asdict(t) for t in thresholds.labels]

    ids = np.array([p[0] for p in pending], dtype=np.int64)
    vectors = embedder.embed([p[1] for p in pending])
    _, probs, split = labelers.probs(vectors)
    if llm_labeler is not None:
        probs = blend_expensive(project, llm_labeler, names, ids, probs, weight, cfg.task)
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
    priority = review_priority(project, calibrated, split, vectors, len(labelers.humans))

    auto_rows = [
        {
            "project_id": project.id,
            "item_id": int(ids[k]),
            "labels": machine_sets[k],
            "source_kind": "machine",
            "source_name": "ensemble",
            "source_version": labelers.ensemble.version,
            "confidence": float(decisions.confidence[k]),
        }
        for k in np.flatnonzero(decisions.auto)
    ]
    with project.db.engine.begin() as conn:
        set_final_labels(conn, auto_rows)
        # The machine label of each audited item, to compare with the person's answer later.
        for k in np.flatnonzero(decisions.audit):
            payload: dict[str, Any] = {
                "machine_label": ", ".join(machine_sets[k]) if multi else machine_sets[k][0],
                "confidence": float(decisions.confidence[k]),
                "labeler": "ensemble",
                "version": labelers.ensemble.version,
            }
            if multi:  # the whole set: an audit is right only if the person gives this set
                payload["machine_labels"] = machine_sets[k]
            log_event(conn, project.id, "audit", payload, int(ids[k]))
    review = decisions.needs_review
    audit = decisions.audit
    waiting = group_near_duplicates(project, ids, vectors, priority, review & ~audit)
    review &= ~waiting
    report.grouped = int(waiting.sum())
    queue = project.queue
    plain = review & ~audit
    overlap = plain & (_keyed_share(ids, "overlap") < cfg.review.overlap_share)
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
    report.gold = mix_in_gold(project, int(plain.sum()), priority)
    # Audit items jump the queue: their answers measure the precision of machine labels.
    queue.enqueue(ids[audit].tolist(), (priority[audit] + 10.0).tolist(), reason="audit")
    report.auto = int(decisions.auto.sum())
    report.audit = int(audit.sum())
    report.queued = int(review.sum())
    report.seconds = time.perf_counter() - started
    return report


def _label_thresholds(
    project: Project, labelers: LabelerSet, held_out: np.ndarray, min_support: int
) -> tuple[Calibrator, ThresholdSet]:
    """Single-label: a calibrator and per-label thresholds fit on the held-out probabilities,
    each raised where audits of that label's machine labels show precision below target."""
    from labelloop.routing.calibration import fit_calibrator
    from labelloop.routing.router import adjust_thresholds
    from labelloop.routing.thresholds import fit_thresholds

    y = labelers.held_out_y()
    calibrator = fit_calibrator(held_out, y)
    thresholds = fit_thresholds(
        calibrator.transform(held_out),
        y,
        target=project.config.metrics.precision_target,
        min_support=min_support,
        label_names=labelers.label_names,
    )
    audit = project.audit_results()
    if len(audit):  # audited precision below target raises that label's threshold
        index = {n: i for i, n in enumerate(labelers.label_names)}
        audit = audit[audit["machine_label"].isin(index)]
        thresholds = adjust_thresholds(
            thresholds,
            audit["machine_label"].map(index).to_numpy(),
            audit["confidence"].astype(float).to_numpy(),
            audit["correct"].to_numpy(),
        )
    return calibrator, thresholds


def _set_threshold(
    project: Project, labelers: LabelerSet, held_out: np.ndarray, min_support: int
) -> SetThreshold:
    """Multi-label: one threshold on whole-set confidence, fit on the held-out probabilities
    against the people's label sets, raised where audits of machine sets fall short."""
    from labelloop.labelers.probs import encode_labels
    from labelloop.routing.router import adjust_set_threshold
    from labelloop.routing.thresholds import fit_set_threshold

    Y = encode_labels(labelers.humans.labels, labelers.label_names, labelers.task)
    threshold = fit_set_threshold(
        held_out,
        Y,
        target=project.config.metrics.precision_target,
        min_support=min_support,
    )
    audit = project.audit_results()
    audit = audit[audit["confidence"].notna()] if len(audit) else audit
    if len(audit):
        threshold = adjust_set_threshold(
            threshold,
            audit["confidence"].astype(float).to_numpy(),
            audit["correct"].to_numpy(),
        )
    return threshold


def _keyed_share(ids: np.ndarray, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per item id, stable across runs (which items get overlap)."""
    import hashlib

    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(f"{salt}:{int(i)}".encode(), digest_size=8).digest(), "big"
            )
            / 2.0**64
            for i in ids
        ]
    )


def mix_in_gold(project: Project, n_queued: int, priority: np.ndarray) -> int:
    """Put gold items (known answers) into the queue, spread through its priorities."""
    share = project.config.review.gold_share
    if not share or not n_queued:
        return 0
    gold = project.gold_answers()
    if not gold:
        return 0
    n = min(len(gold), max(1, round(share * n_queued)))
    picked = sorted(gold)[:: max(1, len(gold) // n)][:n]
    rng = np.random.default_rng(0)
    spread = rng.uniform(float(np.min(priority)), float(np.max(priority)), size=len(picked))
    project.queue.enqueue(picked, spread.tolist(), reason="gold", reviews_needed=10_000)
    return len(picked)


def group_near_duplicates(
    project: Project,
    ids: np.ndarray,
    vectors: np.ndarray,
    priority: np.ndarray,
    candidates: np.ndarray,
) -> np.ndarray:
    """Among items bound for review, near-duplicates wait for their group's representative
    (its most useful member) and take its label. Returns a mask of the items that wait."""
    from labelloop.active.dedup import near_duplicate_groups, representatives

    waiting = np.zeros(len(ids), dtype=bool)
    idx = np.flatnonzero(candidates)
    if len(idx) < 2:
        return waiting
    groups = near_duplicate_groups(
        vectors[idx], threshold=project.config.active.near_duplicate_threshold
    )
    reps = representatives(groups, priority[idx])
    rep_of = reps[groups]  # position (within idx) of each item's representative
    members = rep_of != np.arange(len(idx))
    if not members.any():
        return waiting
    waiting[idx[members]] = True
    rows = [{"i": int(ids[idx[j]]), "g": int(ids[idx[rep_of[j]]])} for j in np.flatnonzero(members)]
    t = ItemRow.__table__
    stmt = (
        update(t)
        .where(t.c.id == bindparam("i"))
        .values(group_id=bindparam("g"), state=ItemState.grouped)
    )
    with project.db.engine.begin() as conn:
        conn.execute(stmt, rows)
    return waiting


def review_priority(
    project: Project, probs: np.ndarray, split: np.ndarray, vectors: np.ndarray, n_human: int
) -> np.ndarray:
    """Higher first: uncertainty, disagreement and density, or typical items at cold start."""
    from labelloop.active.acquisition import label_set_uncertainty, margin_score
    from labelloop.active.diversity import density, typiclust_cold_start
    from labelloop.active.priority import combined_priority

    a = project.config.active
    n = len(probs)
    multi = project.config.task == "multi_label"
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
