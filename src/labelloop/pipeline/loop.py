"""The feedback loop: every N new human labels, retrain and let the change flow everywhere.

A retrain rebuilds the student (and the zero-shot prototypes) from the human labels, stores the
model version with its held-out metrics and the labels it was trained on, suggests labels for
new items, re-routes the pending ones (recalibrated thresholds, re-scored queue) and sends
human labels that look wrong (confident learning on held-out probabilities) to a second
reviewer. It runs beside the review app in a background thread and never holds a lock for
longer than one short transaction, so reviewers keep labeling while it works.
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, insert, select

from labelloop.pipeline.annotate import RouteReport, SuggestReport, ask_expensive, route, suggest
from labelloop.pipeline.labelers import LabelerSet, build_labelers, project_embedder
from labelloop.store.events import log_event
from labelloop.store.models import HumanLabelRow, ItemRow, ModelVersionRow

if TYPE_CHECKING:
    from labelloop.embed.base import Embedder
    from labelloop.labelers.base import Labeler
    from labelloop.project import Project


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def human_label_count(project: Project) -> int:
    h = HumanLabelRow.__table__
    t = ItemRow.__table__
    with project.db.engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(h.join(t, t.c.id == h.c.item_id))
            .where(t.c.project_id == project.id, h.c.action.in_(("label", "import")))
        ).scalar_one()


class FeedbackLoop:
    """Retrain after every ``retrain_every`` new human labels (or on demand)."""

    def __init__(
        self,
        project: Project,
        *,
        retrain_every: int = 50,
        embedder: Embedder | None = None,
        llm: Labeler | None = None,
        flag_label_issues: bool = True,
        select_every: int = 4,
        update_every: int = 10,
    ) -> None:
        """``select_every``: every that many retrains, compare student candidates (logistic
        regression, calibrated linear SVM, random forest, small MLP) by cross-validation on the
        human labels; a challenger replaces the current kind only if it is better on the same
        folds. 0 turns it off (it costs seconds at 1,000 labels, minutes at 10,000)."""
        self.project = project
        self.retrain_every = retrain_every
        self.embedder = embedder or project_embedder(project)
        self.llm = llm
        self.flag_label_issues = flag_label_issues
        self.select_every = select_every
        self.update_every = update_every
        self.student_algorithm = "logreg"
        self.last_selection: dict[str, Any] | None = None
        self.retrains = 0
        self.labelers: LabelerSet | None = None
        self.labels_at_last_retrain = -1
        self.labels_at_last_update = -1
        self.history: list[RetrainReport] = []
        self._lock = threading.Lock()

    def due(self) -> bool:
        n = human_label_count(self.project)
        return (
            self.labels_at_last_retrain < 0 or n - self.labels_at_last_retrain >= self.retrain_every
        )

    def step(self) -> RetrainReport | None:
        """Retrain if enough new human labels arrived since the last time; between retrains,
        fold every ``update_every`` new labels into the models incrementally and re-order the
        queue (thresholds stay until the next full retrain)."""
        if self.due():
            return self.retrain()
        if self.update_every and self.labelers is not None:
            n = human_label_count(self.project)
            if (
                n - max(self.labels_at_last_update, self.labels_at_last_retrain)
                >= self.update_every
            ):
                self.update()
        return None

    def update(self) -> int:
        """Incremental update: new human labels go into the zero-shot prototypes and the
        student (``partial_fit``), then the plain review queue is re-scored. Returns how many
        new labels were folded in."""
        from labelloop.pipeline.annotate import _items_in, review_priority
        from labelloop.pipeline.labelers import human_set
        from labelloop.store.models import ItemState

        with self._lock:
            labelers = self.labelers
            assert labelers is not None
            p = self.project
            humans = human_set(p, self.embedder)
            known = set(int(i) for i in labelers.humans.item_ids)
            new = [k for k, i in enumerate(humans.item_ids) if int(i) not in known]
            self.labels_at_last_update = human_label_count(p)
            if not new:
                return 0
            X = humans.vectors[new]
            y = [humans.labels[k] for k in new]
            if labelers.zeroshot is not None:
                labelers.zeroshot.add_examples(X, y)
            if labelers.student is not None:
                labelers.student.partial_fit(X, y)
            labelers.humans = humans
            pending = _items_in(p, (ItemState.queued,))
            if pending:
                vectors = self.embedder.embed([it[1] for it in pending])
                _, probs, split = labelers.probs(vectors)
                priority = review_priority(p, probs, split, vectors, len(humans))
                p.queue.set_priorities([it[0] for it in pending], priority.tolist())
            with p.db.engine.begin() as conn:
                log_event(conn, p.id, "update", {"new_labels": len(new), "rescored": len(pending)})
            return len(new)

    def retrain(self) -> RetrainReport:
        with self._lock:
            started = time.perf_counter()
            p = self.project
            n = human_label_count(p)
            self.retrains += 1
            if self.select_every and self.retrains % self.select_every == 0:
                self._select_student()
            labelers = build_labelers(p, self.embedder, self.student_algorithm)
            self.labelers = labelers
            f1, acc = self._student_metrics(labelers)
            if labelers.student is not None:
                self._store_version(labelers, f1, acc)
            if self.llm is not None and hasattr(self.llm, "set_few_shot_pool"):
                self.llm.set_few_shot_pool(
                    labelers.humans.contents, labelers.humans.labels, labelers.humans.vectors
                )
            s = suggest(p, embedder=self.embedder, labelers=labelers)
            asked = None
            if self.llm is not None:
                asked = ask_expensive(p, self.llm, embedder=self.embedder, labelers=labelers)
            r = route(
                p,
                embedder=self.embedder,
                labelers=labelers,
                llm_labeler=self.llm.labeler_id if self.llm is not None else None,
            )
            issues = []
            if self.flag_label_issues:
                issues = self._recheck_label_issues(labelers) + self._recheck_machine_labels(
                    labelers
                )
            self.labels_at_last_retrain = n
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
            )
            with p.db.engine.begin() as conn:
                log_event(
                    conn,
                    p.id,
                    "retrain",
                    {
                        "n_labels": report.n_labels,
                        "student": report.student_version,
                        "held_out_macro_f1": f1,
                        "auto": r.auto,
                        "queued": r.queued,
                        "label_issues": len(issues),
                        "seconds": round(report.seconds, 3),
                    },
                )
            self.history.append(report)
            return report

    def _select_student(self) -> None:
        """Champion against challengers on the same CV folds of the human labels."""
        from labelloop.learn.selection import select_student, should_replace
        from labelloop.pipeline.labelers import human_set

        if self.project.config.task != "single_label":
            return
        humans = human_set(self.project, self.embedder)
        labels = [str(x) for x in humans.labels]
        if len(humans) < 30 or len(set(labels)) < 2:
            return
        sel = select_student(humans.vectors, labels)
        current = sel.scores[self.student_algorithm]
        replaced = sel.name != self.student_algorithm and should_replace(
            current, sel.scores[sel.name]
        )
        self.last_selection = {
            "champion": self.student_algorithm,
            "best": sel.name,
            "replaced": replaced,
            "table": json.loads(sel.table.to_json(orient="records")),
        }
        if replaced:
            self.student_algorithm = sel.name

    def _student_metrics(self, labelers: LabelerSet) -> tuple[float | None, float | None]:
        """Macro-F1 and accuracy of the student on human labels it did not see (out of fold)."""
        from sklearn.metrics import accuracy_score, f1_score

        if labelers.student is None or labelers.held_out_stack.size == 0:
            return None, None
        idx = [m.labeler_id for m in labelers.members].index("student")
        y = labelers.held_out_y()
        pred = labelers.held_out_stack[idx].argmax(axis=1)
        return (
            float(f1_score(y, pred, average="macro", labels=np.unique(y))),
            float(accuracy_score(y, pred)),
        )

    def _store_version(self, labelers: LabelerSet, f1: float | None, acc: float | None) -> None:
        import joblib

        st = labelers.student
        assert st is not None
        buf = io.BytesIO()
        joblib.dump(st.model, buf)
        with self.project.db.engine.begin() as conn:
            conn.execute(
                insert(ModelVersionRow).values(
                    project_id=self.project.id,
                    kind="student",
                    version=st.version,
                    algorithm=type(st.model).__name__,
                    metrics={
                        "held_out_macro_f1": f1,
                        "held_out_accuracy": acc,
                        "measured_on": f"{len(labelers.humans)} human labels, 5-fold out of fold",
                        "selection": self.last_selection,
                    },
                    n_labels=len(labelers.humans),
                    trained_on=[int(i) for i in labelers.humans.item_ids],
                    promoted=True,
                    model=buf.getvalue(),
                )
            )

    def _recheck_label_issues(self, labelers: LabelerSet) -> list[dict[str, Any]]:
        """Human labels the held-out models strongly contradict go to a second reviewer."""
        from labelloop.quality.label_issues import find_label_issues

        if labelers.task != "single_label" or len(labelers.held_out_probs) < 30:
            return []
        y = labelers.held_out_y()
        flagged = find_label_issues(y, labelers.held_out_probs, class_names=labelers.label_names)
        if flagged.empty:
            return []
        ids = labelers.humans.item_ids[flagged["index"].to_numpy()]
        t = ItemRow.__table__
        with self.project.db.engine.connect() as conn:
            already = set(
                conn.execute(
                    select(t.c.id).where(t.c.id.in_([int(i) for i in ids]), t.c.reviews_needed > 1)
                ).scalars()
            )
        out = []
        p = self.project
        for item_id, reason in zip(ids, flagged["reason"], strict=True):
            if int(item_id) in already:
                continue  # already rechecked once
            out.append({"item_id": int(item_id), "reason": str(reason)})
        if out:
            p.queue.recheck([o["item_id"] for o in out], [o["reason"] for o in out])
        return out

    def _recheck_machine_labels(
        self, labelers: LabelerSet, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Machine labels the retrained models now contradict go to a person.

        Confident learning's rule, applied to labels machines gave: with per-class thresholds
        t_j (the mean held-out probability people's items of class j get), an auto-labeled item
        is suspect when its machine label's probability falls below its threshold while another
        label's reaches its own. At most ``limit`` per retrain, the most suspect first.
        """
        from labelloop.quality.label_issues import per_class_thresholds

        if labelers.task != "single_label" or len(labelers.held_out_probs) < 30:
            return []
        thresholds = per_class_thresholds(labelers.held_out_y(), labelers.held_out_probs)
        fl = self.project.final_labels()
        machine = fl[fl["source_kind"] == "machine"] if not fl.empty else fl
        if machine.empty:
            return []
        names = labelers.label_names
        index = {n: i for i, n in enumerate(names)}
        given = np.array([index.get(ls[0], -1) for ls in machine["labels"]])
        keep = given >= 0
        machine, given = machine[keep], given[keep]
        what = [
            m if isinstance(m, str) and m else c
            for c, m in zip(machine["content"], machine["media_path"], strict=True)
        ]
        _, probs, _ = labelers.probs(self.embedder.embed(what))
        p_given = probs[np.arange(len(given)), given]
        others = probs.copy()
        others[np.arange(len(given)), given] = -1.0
        best = others.argmax(axis=1)
        suspect = (p_given < thresholds[given]) & (
            others[np.arange(len(given)), best] >= thresholds[best]
        )
        order = np.flatnonzero(suspect)[np.argsort(p_given[suspect], kind="stable")][:limit]
        out = [
            {
                "item_id": int(machine["item_id"].iloc[j]),
                "reason": f"machines said {names[given[j]]}; retrained, they say {names[best[j]]} "
                f"with p={probs[j, best[j]]:.2f}",
            }
            for j in order
        ]
        if out:
            self.project.queue.recheck([o["item_id"] for o in out], [o["reason"] for o in out])
        return out

    # -- beside the review app -----------------------------------------------------------------
    def run_in_background(
        self, stop: threading.Event, poll_seconds: float = 2.0
    ) -> threading.Thread:
        """Poll for new human labels and retrain when due, until ``stop`` is set."""

        def work() -> None:
            while not stop.is_set():
                try:
                    self.step()
                except Exception as exc:  # keep the loop alive; say what happened
                    with self.project.db.engine.begin() as conn:
                        log_event(conn, self.project.id, "retrain_failed", {"error": repr(exc)})
                stop.wait(poll_seconds)

        thread = threading.Thread(target=work, name="labelloop-feedback-loop", daemon=True)
        thread.start()
        return thread
