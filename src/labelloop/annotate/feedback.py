"""The feedback loop: every N new human labels, retrain and let the change flow everywhere.

``retrain`` brings the labelers up to the current human labels (loaded from the stored model
version when one was trained on exactly these labels, else fit and stored), refreshes the LLM's
few-shot pool, suggests labels for new items, re-routes the pending ones (recalibrated
thresholds, re-scored queue, the current models' suggestions) and sends labels that are
probably wrong to a second reviewer, only where that pays (``recheck_label_issues``). ``retrain_due`` says when
the next one is due from the store alone, so any worker on any machine can tell.

``FeedbackLoop`` keeps the in-memory side for one process (the demo, a notebook, a worker):
the loaded labelers and the incremental updates between retrains. Every step holds the
database for one short transaction at a time, so reviewers keep labeling while it works.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from labelloop.annotate.reviewers import reviewer_accuracy
from labelloop.annotate.route import RouteReport, calibration_evidence, review_priority, route
from labelloop.annotate.suggest import SuggestReport, ask_expensive, suggest
from labelloop.embed.base import Embedder
from labelloop.embed.char_ngrams import char_ngrams_in
from labelloop.embed.factory import project_embedder
from labelloop.labelers.base import Labeler
from labelloop.labelers.factory import (
    MODEL_KIND,
    LabelerSet,
    current_labelers,
    human_set,
    student_metrics,
)
from labelloop.learn.selection import select_student, should_replace
from labelloop.quality.label_issues import choose_rechecks, label_error_probability
from labelloop.review.queue import ReviewQueue
from labelloop.store.context import ProjectContext
from labelloop.store.events import log_event
from labelloop.store.loop_state import count_events, last_event, latest_model_version
from labelloop.store.models import ItemState
from labelloop.store.reads import (
    human_label_count,
    items_in,
    recheck_outcomes,
    rechecked_before,
)


@dataclass
class RetrainReport:
    n_labels: int
    student_version: str | None
    held_out_macro_f1: float | None
    held_out_accuracy: float | None
    suggested: int
    route: RouteReport
    llm: SuggestReport | None = None
    label_issues: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    model_version: str | None = None  # the stored labelers now in use (their ensemble version)
    model_version_id: int | None = None  # its row in model_versions
    previous_version: str | None = None
    previous_version_id: int | None = None
    previous_macro_f1: float | None = None
    previous_accuracy: float | None = None
    trained: bool = False  # False: the stored model for these labels was reused
    label_actions: int = 0  # human label actions when it ran (the trigger point)
    student_algorithm: str = "logreg"
    selection: dict[str, Any] | None = None  # student kinds compared on this retrain, if any
    embedding: str = ""  # the model id of the vectors the labelers now read
    view: dict[str, Any] | None = None  # char_ngrams: auto's comparison on this retrain, if any

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def last_retrain(ctx: ProjectContext) -> dict[str, Any] | None:
    """The payload of the project's newest ``retrain`` event (with ``at``), or None."""
    row = last_event(ctx.db, ctx.id, ("retrain",))
    if row is None:
        return None
    return {**(row[2] or {}), "event_id": int(row[0]), "at": row[3]}


def retrain_due(ctx: ProjectContext, retrain_every: int | None = None) -> bool:
    """True when ``retrain_every`` human label actions arrived since the last retrain (read
    from the store, so every process agrees)."""
    every = retrain_every or ctx.config.loop.retrain_every
    last = last_retrain(ctx)
    done = int(last.get("label_actions", 0)) if last else 0
    return human_label_count(ctx.db, ctx.id) - done >= every


def choose_student(ctx: ProjectContext, embedder: Embedder, current: str) -> dict[str, Any] | None:
    """Champion against challengers on the same CV folds of the human labels; the result
    (``best``, ``replaced``, the table) or None when there is too little to compare.

    Candidates are scored on the human labels of the random calibration sample when it holds
    enough (``score_mask``): actively chosen labels are the hard items and favour the wrong
    model (issue 10). The champion stays unless the best's held-out log-loss is lower by more
    than a standard error of the paired fold differences and its macro-F1 is higher too
    (``should_replace``)."""
    if ctx.config.task != "single_label":
        return None
    humans = human_set(ctx, embedder)
    labels = [str(x) for x in humans.labels]
    if len(humans) < 30 or len(set(labels)) < 2:
        return None
    sampled = calibration_evidence(ctx, humans.item_ids)
    sel = select_student(humans.vectors, labels, score_mask=sampled, default=current)
    replaced = sel.name != current and should_replace(sel.scores[current], sel.scores[sel.name])
    return {
        "champion": current,
        "best": sel.name,
        "replaced": replaced,
        "table": json.loads(sel.table.to_json(orient="records")),
    }


# A view switch needs a held-out log-loss gain of this many standard errors of the paired
# fold differences. With two, SMS spam never switched (people labeled 338-350 items before
# machines took the rest, against 253-309 with one) and one youtube run switched at 98 labels,
# not 50 (coverage 0.89, not 0.93). One lets a close call flip back (SMS seed 0, at 253).
VIEW_SWITCH_SE = 1.0


def choose_view(ctx: ProjectContext, embedder: Embedder) -> dict[str, Any] | None:
    """``embedding.char_ngrams: auto``: the student with and without hashed character n-grams
    on the same human labels, scored on the random calibration sample's held-out log-loss
    (:func:`~labelloop.learn.selection.compare_views`); when the other view is clearly better,
    an ``embedding_view`` event switches the project's vectors. The result, or None when
    there is nothing to compare (another setting, too few sampled labels).

    Only the n-grams are computed: the sentence vectors come from the current ones, and the
    store keeps them cached apart, so a switch re-hashes the pool but does not re-embed it."""
    from labelloop.core.config import AUTO_CHAR_NGRAMS
    from labelloop.embed.char_ngrams import char_ngrams_in, sentence_part, with_char_ngrams
    from labelloop.embed.factory import VIEW_EVENT
    from labelloop.learn.selection import compare_views

    cfg = ctx.config
    if cfg.embedding.char_ngrams != "auto" or cfg.modality != "text":
        return None
    if cfg.task != "single_label":
        return None
    humans = human_set(ctx, embedder)
    labels = np.asarray([str(x) for x in humans.labels])
    sampled = calibration_evidence(ctx, humans.item_ids)
    if sampled is None or int(np.sum(sampled)) < 30 or len(set(labels[sampled])) < 2:
        return None
    n = char_ngrams_in(embedder.model_id)[1]  # the view these vectors are in
    names = {0: "sentence", AUTO_CHAR_NGRAMS: f"sentence+chars{AUTO_CHAR_NGRAMS}"}
    V = np.asarray(humans.vectors, dtype=np.float32)
    if n:
        other, other_vectors = 0, sentence_part(V, n)
    else:
        other = AUTO_CHAR_NGRAMS
        other_vectors = with_char_ngrams(V, list(humans.contents), AUTO_CHAR_NGRAMS)
    current = names.get(n, f"sentence+chars{n}")
    choice = compare_views(
        {current: V, names[other]: other_vectors},
        labels,
        current,
        score_mask=sampled,
        min_gain_se=VIEW_SWITCH_SE,
    )
    out = {**choice.as_dict(), "char_ngrams": n if choice.chosen == current else other}
    if choice.chosen != current:
        with ctx.db.engine.begin() as conn:
            log_event(conn, ctx.id, VIEW_EVENT, {**out, "n_labels": len(humans)})
    return out


def retrain(
    ctx: ProjectContext,
    *,
    embedder: Embedder | None = None,
    llm: Labeler | None = None,
    select: bool = False,
    flag_label_issues: bool = True,
    student_algorithm: str | None = None,
) -> tuple[RetrainReport, LabelerSet]:
    """One retrain (see the module docstring); the report and the labelers now in use."""
    started = time.perf_counter()
    embedder = embedder or project_embedder(ctx)
    actions = human_label_count(ctx.db, ctx.id)
    previous = latest_model_version(ctx.db, ctx.id, MODEL_KIND)
    algorithm = student_algorithm or (
        (previous.metrics.get("student_algorithm") if previous else None) or "logreg"
    )
    view = choose_view(ctx, embedder)
    if view is not None and view["char_ngrams"] != char_ngrams_in(embedder.model_id)[1]:
        embedder = project_embedder(ctx)  # the view switched: the new vectors from here on
    selection = choose_student(ctx, embedder, algorithm) if select else None
    if selection and selection["replaced"]:
        algorithm = selection["best"]
    labelers, trained = current_labelers(
        ctx, embedder, student_algorithm=algorithm, extra_metrics={"selection": selection}
    )
    f1, acc = student_metrics(labelers)
    if llm is not None and hasattr(llm, "set_few_shot_pool"):
        humans = labelers.humans
        llm.set_few_shot_pool(humans.contents, humans.labels, humans.vectors, embedder=embedder)
    s = suggest(ctx, embedder=embedder, labelers=labelers)
    asked = None
    if llm is not None:
        asked = ask_expensive(ctx, llm, embedder=embedder, labelers=labelers)
    r = route(
        ctx,
        embedder=embedder,
        labelers=labelers,
        llm_labeler=llm.labeler_id if llm is not None else None,
    )
    issues: list[dict[str, Any]] = []
    if flag_label_issues:
        # Machine labels the retrained models no longer give were taken back by route
        # (revisit_machine_labels), at no human cost: only human labels go to a second person.
        issues = recheck_label_issues(ctx, labelers)
    prev_metrics = previous.metrics if previous else {}
    report = RetrainReport(
        n_labels=len(labelers.humans),
        student_version=labelers.student.version if labelers.student else None,
        held_out_macro_f1=f1,
        held_out_accuracy=acc,
        suggested=s.items,
        route=r,
        llm=asked,
        label_issues=issues,
        seconds=time.perf_counter() - started,
        model_version=labelers.stored.version if labelers.stored else None,
        model_version_id=labelers.stored.id if labelers.stored else None,
        previous_version=previous.version if previous else None,
        previous_version_id=previous.id if previous else None,
        previous_macro_f1=prev_metrics.get("held_out_macro_f1"),
        previous_accuracy=prev_metrics.get("held_out_accuracy"),
        trained=trained,
        label_actions=actions,
        student_algorithm=algorithm,
        selection=selection,
        embedding=embedder.model_id,
        view=view,
    )
    with ctx.db.engine.begin() as conn:
        log_event(
            conn,
            ctx.id,
            "retrain",
            {
                "n_labels": report.n_labels,
                "label_actions": actions,
                "model_version": report.model_version,
                "model_version_id": labelers.stored.id if labelers.stored else None,
                "previous_version": report.previous_version,
                "trained": trained,
                "student": report.student_version,
                "held_out_macro_f1": f1,
                "held_out_accuracy": acc,
                "auto": r.auto,
                "queued": r.queued,
                "refreshed": r.refreshed,
                "label_issues": len(issues),
                "selection": selection,
                "embedding": embedder.model_id,
                "view": view,
                "seconds": round(report.seconds, 3),
            },
        )
    return report, labelers


def rescore_queue(ctx: ProjectContext, labelers: LabelerSet, embedder: Embedder) -> int:
    """Re-order the plain review queue with the current labelers; returns how many items."""
    pending = items_in(ctx.db, ctx.id, (ItemState.queued,))
    if pending:
        vectors = embedder.embed([it[1] for it in pending])
        _, probs, split = labelers.probs(vectors)
        priority = review_priority(ctx, probs, split, vectors, len(labelers.humans))
        ReviewQueue(ctx.db, ctx.id, ctx.config.task).set_priorities(
            [it[0] for it in pending], priority.tolist()
        )
    return len(pending)


def recheck_budget(ctx: ProjectContext) -> int:
    """How many more labels may go to a second person: ``loop.recheck_max_rate`` of the human
    label actions so far, plus one for each recheck that found a wrong label (a recheck that
    pays buys the next), less the rechecks already asked for."""
    rate = ctx.config.loop.recheck_max_rate
    allowed = int(rate * human_label_count(ctx.db, ctx.id))
    allowed += recheck_outcomes(ctx.db, ctx.id)["changed"]
    return max(0, allowed - count_events(ctx.db, ctx.id, "label_issue"))


def recheck_label_issues(ctx: ProjectContext, labelers: LabelerSet) -> list[dict[str, Any]]:
    """Human labels that are probably wrong go to a second reviewer, when that pays.

    The chance a label is wrong (``label_error_probability``) weighs the held-out models'
    probabilities against people's accuracy (``reviewer_accuracy``: 0.95 until gold answers
    measure it); a label is sent when
    that chance exceeds ``loop.recheck_cost_ratio``, most likely wrong first, within the
    project's recheck budget (``recheck_budget``). Why not confident learning's counts: they
    flag a fixed share of every class whether or not the labels are wrong, and with a reviewer
    who never errs 14-36% of labels went to a second person (issue 10)."""
    if labelers.task != "single_label" or len(labelers.held_out_probs) < 30:
        return []
    budget = recheck_budget(ctx)
    if budget <= 0:
        return []
    y = labelers.held_out_y()
    probs = labelers.held_out_probs
    ids = labelers.humans.item_ids
    already = rechecked_before(ctx.db, [int(i) for i in ids])
    fresh = np.array([int(i) not in already for i in ids], dtype=bool)  # once is enough
    accuracy, _ = reviewer_accuracy(ctx)
    p_wrong = np.where(fresh, label_error_probability(y, probs, accuracy), 0.0)
    picked = choose_rechecks(p_wrong, ctx.config.loop.recheck_cost_ratio, budget)
    names = labelers.label_names
    out = []
    for j in picked:
        other = probs[j].copy()
        other[y[j]] = -1.0
        best = int(other.argmax())
        out.append(
            {
                "item_id": int(ids[j]),
                "reason": f"given {names[y[j]]}, model says {names[best]} with "
                f"p={probs[j, best]:.2f}; P(label wrong)={p_wrong[j]:.2f}",
            }
        )
    if out:
        ReviewQueue(ctx.db, ctx.id, ctx.config.task).recheck(
            [o["item_id"] for o in out],
            [o["reason"] for o in out],
            [{"p_given": float(probs[j, y[j]])} for j in picked],
        )
    return out


class FeedbackLoop:
    """Retrain after every ``retrain_every`` new human labels (or on demand), in one process.

    ``project`` is a ``ProjectContext`` or anything with ``db``, ``id``, ``config`` and
    ``folder`` (such as ``labelloop.Project``). Settings default to the project file's
    ``loop`` section.
    """

    def __init__(
        self,
        project: Any,
        *,
        retrain_every: int | None = None,
        embedder: Embedder | None = None,
        llm: Labeler | None = None,
        flag_label_issues: bool | None = None,
        select_every: int | None = None,
        update_every: int | None = None,
        on_retrain: Callable[[RetrainReport], None] | None = None,
    ) -> None:
        """``on_retrain`` is called with each retrain's report (the registry registers the new
        student through it; this stage does not import the registry).

        ``select_every``: every that many retrains, compare student candidates (logistic
        regression, calibrated linear SVM, random forest, small MLP) by cross-validation on the
        human labels; a challenger replaces the current kind only if it is better on the same
        folds. 0 turns it off (it costs seconds at 1,000 labels, minutes at 10,000)."""
        ctx = getattr(project, "ctx", project)
        self.project = ctx
        settings = ctx.config.loop
        self.retrain_every = retrain_every or settings.retrain_every
        self.embedder = embedder or project_embedder(ctx)
        self.llm = llm
        self.flag_label_issues = (
            settings.flag_label_issues if flag_label_issues is None else flag_label_issues
        )
        self.select_every = settings.select_every if select_every is None else select_every
        self.update_every = settings.update_every if update_every is None else update_every
        self.labelers: LabelerSet | None = None
        self.last_selection: dict[str, Any] | None = None
        self.labels_at_last_update = -1
        self.history: list[RetrainReport] = []
        self.on_retrain = on_retrain
        self._lock = threading.Lock()

    @property
    def ctx(self) -> ProjectContext:
        return self.project

    @property
    def labels_at_last_retrain(self) -> int:
        last = last_retrain(self.ctx)
        return int(last.get("label_actions", 0)) if last else -1

    @property
    def student_algorithm(self) -> str:
        latest = latest_model_version(self.ctx.db, self.ctx.id, MODEL_KIND)
        return (latest.metrics.get("student_algorithm") if latest else None) or "logreg"

    def due(self) -> bool:
        return last_retrain(self.ctx) is None or retrain_due(self.ctx, self.retrain_every)

    def step(self) -> RetrainReport | None:
        """Retrain if enough new human labels arrived since the last time; between retrains,
        fold every ``update_every`` new labels into the models incrementally and re-order the
        queue (thresholds stay until the next full retrain)."""
        if self.due():
            return self.retrain()
        if self.update_every and self.labelers is not None:
            n = human_label_count(self.ctx.db, self.ctx.id)
            since = n - max(self.labels_at_last_update, self.labels_at_last_retrain)
            if since >= self.update_every:
                self.update()
        return None

    def update(self) -> int:
        """Incremental update: new human labels go into the zero-shot prototypes and the
        student (``partial_fit``), then the plain review queue is re-scored. Returns how many
        new labels were folded in."""
        with self._lock:
            labelers = self.labelers
            assert labelers is not None
            ctx = self.ctx
            humans = human_set(ctx, self.embedder)
            known = set(int(i) for i in labelers.humans.item_ids)
            new = [k for k, i in enumerate(humans.item_ids) if int(i) not in known]
            self.labels_at_last_update = human_label_count(ctx.db, ctx.id)
            if not new:
                return 0
            X = humans.vectors[new]
            y = [humans.labels[k] for k in new]
            if labelers.zeroshot is not None:
                labelers.zeroshot.add_examples(X, y)
            if labelers.student is not None:
                labelers.student.partial_fit(X, y)
            labelers.humans = humans
            rescored = rescore_queue(ctx, labelers, self.embedder)
            with ctx.db.engine.begin() as conn:
                log_event(conn, ctx.id, "update", {"new_labels": len(new), "rescored": rescored})
            return len(new)

    def retrain(self) -> RetrainReport:
        with self._lock:
            # Every ``select_every``-th retrain of the project (the first, at cold start, counts).
            n = count_events(self.ctx.db, self.ctx.id, "retrain") + 1
            select = bool(self.select_every) and n % self.select_every == 0
            report, labelers = retrain(
                self.ctx,
                embedder=self.embedder,
                llm=self.llm,
                select=select,
                flag_label_issues=self.flag_label_issues,
            )
            self.labelers = labelers
            if report.embedding and report.embedding != self.embedder.model_id:
                self.embedder = project_embedder(self.ctx)  # char_ngrams: auto switched views
            if report.selection is not None:
                self.last_selection = report.selection
            self.history.append(report)
            if self.on_retrain is not None:
                self.on_retrain(report)
            return report
