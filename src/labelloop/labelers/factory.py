"""Building a project's machine labelers from its config and the human labels in its store,
and keeping them: a trained ``LabelerSet`` is stored as a model version keyed by what it was
trained on, so every entrance (CLI, notebook, API, worker) reuses it until the labels change.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from labelloop.core.probs import encode_labels
from labelloop.core.types import Item, Suggestion
from labelloop.embed.base import Embedder
from labelloop.labelers.ensemble import EnsembleLabeler, disagreement
from labelloop.labelers.prior import PriorLabeler
from labelloop.labelers.student import StudentLabeler
from labelloop.labelers.zeroshot import ZeroShotLabeler
from labelloop.store.context import ProjectContext
from labelloop.store.embeddings import StoreEmbeddingCache
from labelloop.store.loop_state import ModelVersion, latest_model_version, save_model_version
from labelloop.store.reads import final_labels_frame

MODEL_KIND = "labelers"  # model_versions.kind of a stored LabelerSet


@dataclass
class HumanSet:
    """Human-labeled items: ids, contents, labels (names, or lists for multi-label), vectors."""

    item_ids: np.ndarray
    contents: list[str]
    labels: list[Any]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)


def human_set(ctx: ProjectContext, embedder: Embedder) -> HumanSet:
    """The items people labeled (reviews and imports), with their vectors."""
    df = final_labels_frame(ctx.db, ctx.id, ("human", "import"))
    if df.empty:
        return HumanSet(
            np.zeros(0, dtype=np.int64), [], [], np.zeros((0, embedder.dim), np.float32)
        )
    multi = ctx.config.task == "multi_label"
    labels = [list(x) if multi else x[0] for x in df["labels"]]
    contents = [
        m if isinstance(m, str) and m else c
        for c, m in zip(df["content"], df["media_path"], strict=True)
    ]
    return HumanSet(df["item_id"].to_numpy(), contents, labels, embedder.embed(contents))


@dataclass
class LabelerSet:
    """The trained cheap labelers of a project at one moment, and what they were trained on."""

    label_names: list[str]
    task: str
    zeroshot: ZeroShotLabeler | None
    student: StudentLabeler | None
    ensemble: EnsembleLabeler
    humans: HumanSet
    # Ensemble probabilities for the human-labeled items from models that did not see them.
    held_out_probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    # The same per member, (members, n, K), in the order of ``members``.
    held_out_stack: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    student_algorithm: str = "logreg"
    # The stored model version this set was loaded from or saved as (None: not stored).
    stored: ModelVersion | None = None
    # Per fold of the human labels, the members fit on the other folds (in the order of
    # ``members``): the models behind ``held_out_probs``, kept to score other items on their
    # scale (``held_out_scale_probs``). Empty when the held-out probabilities have no folds.
    fold_members: list[list[Any]] = field(default_factory=list)

    @property
    def members(self) -> list[Any]:
        return list(self.ensemble.members)

    def member_probs(self, vectors: np.ndarray) -> np.ndarray:
        """(members, n, K) probabilities for item vectors."""
        return self.ensemble.member_proba(vectors)

    def probs(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(member stack, ensemble probabilities, disagreement per item)."""
        stack = self.member_probs(vectors)
        return stack, self.ensemble.combine(stack), disagreement(stack, self.task)

    def held_out_scale_probs(self, vectors: np.ndarray) -> np.ndarray | None:
        """Ensemble probabilities for item vectors from the fold models (the ensemble's weights,
        mean over folds): what the models behind ``held_out_probs`` say, so a model of
        P(right | confidence) fit on those applies. The members fit on every label are sharper
        on new items than the fold models were on the held-out ones. None without folds (or a
        set stored before they were kept)."""
        folds = getattr(self, "fold_members", [])
        if not folds or any(len(f) != len(self.members) for f in folds):
            return None
        out = np.zeros((len(vectors), len(self.label_names)))
        for members in folds:
            out += self.ensemble.combine(np.stack([m.predict_proba(vectors) for m in members]))
        return out / len(folds)

    def held_out_y(self) -> np.ndarray:
        """Human labels as indices, for calibration and thresholds (single-label tasks)."""
        y = np.asarray(encode_labels(self.humans.labels, self.label_names, self.task))
        return y if y.ndim == 1 else y.argmax(axis=1)


def build_labelers(
    ctx: ProjectContext,
    embedder: Embedder,
    student_algorithm: str = "logreg",
    humans: HumanSet | None = None,
) -> LabelerSet:
    """Zero-shot (sharpened by human examples) and student (once there are enough human
    labels), pooled by an ensemble whose weights are learned on held-out predictions."""
    cfg = ctx.config
    names = cfg.label_names
    task = str(cfg.task)
    humans = humans if humans is not None else human_set(ctx, embedder)
    members: list[Any] = []
    held_out: list[np.ndarray] = []
    folds: list[list[Any]] = []  # per member, its fold models (when its held-out has folds)
    zs = None
    # Zero-shot compares items with label names in one text space: text items only.
    if cfg.labelers.zeroshot and cfg.modality == "text":
        zs = ZeroShotLabeler(embedder, cfg.labels, task)
        if len(humans):
            if len(humans) >= 10:
                folds.append([])
                held_out.append(zs.out_of_fold_proba(humans.vectors, humans.labels, keep=folds[-1]))
            zs.add_examples(humans.vectors, humans.labels)
        members.append(zs)
    st = None
    distinct = {str(x) for x in humans.labels}
    if (
        cfg.labelers.student
        and len(humans) >= cfg.labelers.student_min_labels
        and len(distinct) >= 2
    ):
        factory = None
        if student_algorithm != "logreg":
            from labelloop.learn.selection import default_candidates

            factory = default_candidates(0, len(humans), len(distinct))[student_algorithm]
        st = StudentLabeler(
            names, task, embedder=embedder, algorithm=student_algorithm, estimator_factory=factory
        )
        if len(humans) >= 10:
            folds.append([])
            held_out.append(st.out_of_fold_proba(humans.vectors, humans.labels, keep=folds[-1]))
        st.fit(humans.vectors, humans.labels)
        members.append(st)
    if st is not None and cfg.labelers.semi_supervised and task == "single_label":
        semi, semi_held = self_training_member(ctx, embedder, humans, names, task)
        members.append(semi)
        if len(held_out) == len(members) - 1 and len(humans) >= 10:
            held_out.append(semi_held)
            folds.append(folds[-1])  # its held-out stand-in is a student on human labels alone
    if not members and cfg.modality != "text":
        members.append(PriorLabeler(names, task))
        if len(humans) >= 10:
            held_out.append(members[-1].predict_proba(humans.vectors))
    if not members:
        raise ValueError(
            "no machine labeler is enabled: turn on labelers.zeroshot or labelers.student"
        )
    ensemble = EnsembleLabeler(members, names, task)
    held = np.zeros((0, len(names)))
    stack = np.zeros((0, 0, 0))
    if len(held_out) == len(members) and len(humans) >= 10:
        stack = np.stack(held_out)
        ensemble.fit(stack, humans.labels)
        held = ensemble.combine(stack)
    by_fold: list[list[Any]] = []
    if len(held_out) == len(members) and len(folds) == len(members):
        n_folds = min((len(f) for f in folds), default=0)
        by_fold = [[f[i] for f in folds] for i in range(n_folds)]
    return LabelerSet(
        names, task, zs, st, ensemble, humans, held, stack, student_algorithm, fold_members=by_fold
    )


def self_training_member(
    ctx: ProjectContext, embedder: Embedder, humans: HumanSet, names: list[str], task: str
) -> tuple[StudentLabeler, np.ndarray]:
    """A student trained on human labels plus confident self-training pseudo-labels of the
    project's unlabeled items (labeler id ``self_training``), and held-out probabilities on
    the human-labeled items (from a student on human labels alone: a conservative stand-in,
    since pseudo-labels from other folds only would cost one self-training run per fold)."""
    from labelloop.learn.semi_supervised import pseudo_labels, self_training_probs

    hashes, pool = StoreEmbeddingCache(ctx.db).load_all(embedder.model_id)
    fl = final_labels_frame(ctx.db, ctx.id)
    human_hashes = set(fl["content_hash"]) if not fl.empty else set()
    unlabeled = [i for i, h in enumerate(hashes) if h not in human_hashes]
    X_all = np.vstack([humans.vectors, pool[unlabeled]]) if unlabeled else humans.vectors
    labeled_idx = np.arange(len(humans))
    y_idx = np.array([names.index(str(label)) for label in humans.labels])
    probs = self_training_probs(X_all, labeled_idx, y_idx, n_classes=len(names))
    rows, labels = pseudo_labels(probs, labeled_idx, threshold=0.9)
    semi = StudentLabeler(names, task, embedder=embedder, algorithm="self-training")
    semi.labeler_id = "self_training"
    held = semi.out_of_fold_proba(humans.vectors, humans.labels)
    semi.fit(
        np.vstack([humans.vectors, X_all[rows]]),
        list(humans.labels) + [names[int(j)] for j in labels],
    )
    return semi, held


def stack_to_suggestion_rows(
    item_ids: Sequence[int],
    hashes: Sequence[str],
    stack: np.ndarray,
    ensemble_probs: np.ndarray,
    labelers: LabelerSet,
    latency_ms: float,
) -> list[Suggestion]:
    """One Suggestion per member and one for the ensemble, per item, each built by the labeler
    that made it (its id, version and confidence method: one builder, ``build_suggestions``)."""
    items = [
        Item(content="", content_hash=h, id=int(i)) for i, h in zip(item_ids, hashes, strict=True)
    ]
    out: list[Suggestion] = []
    for member, probs in zip(labelers.members, stack, strict=True):
        out += member.suggestions_from_proba(items, probs, latency_ms)
    out += labelers.ensemble.suggestions_from_proba(items, ensemble_probs, latency_ms)
    return out


# -- keeping trained labelers ----------------------------------------------------------------
def training_key(ctx: ProjectContext, humans: HumanSet, embedder: Embedder, algorithm: str) -> str:
    """A digest of everything a LabelerSet is trained from: the human labels (item and
    labels), the taxonomy and labeler settings, the embedder and the student algorithm."""
    cfg = ctx.config
    h = hashlib.sha256()
    settings = {
        "labels": [label.model_dump(mode="json") for label in cfg.labels],
        "task": str(cfg.task),
        "labelers": cfg.labelers.model_dump(mode="json", exclude={"llm"}),
        "embedder": embedder.model_id,
        "algorithm": algorithm,
    }
    h.update(json.dumps(settings, sort_keys=True).encode())
    pairs = sorted(
        (int(i), json.dumps(lab)) for i, lab in zip(humans.item_ids, humans.labels, strict=True)
    )
    h.update(json.dumps(pairs).encode())
    return h.hexdigest()


def _embedder_holders(labelers: LabelerSet) -> list[Any]:
    folds = [m for f in getattr(labelers, "fold_members", []) for m in f]
    seen: set[int] = set()
    out = []
    for m in [*labelers.members, *folds]:
        if hasattr(m, "embedder") and id(m) not in seen:
            seen.add(id(m))
            out.append(m)
    return out


def dump_labelers(labelers: LabelerSet) -> bytes:
    """The set as bytes (joblib), without its embedder (a model session is not stored)."""
    import joblib

    holders = _embedder_holders(labelers)
    saved = [(m, m.embedder, getattr(m, "estimator_factory", None)) for m in holders]
    try:
        for m in holders:
            m.embedder = None
            if hasattr(m, "estimator_factory"):
                m.estimator_factory = None  # lambdas do not pickle; rebuilt on load
        stored, labelers.stored = labelers.stored, None
        buf = io.BytesIO()
        joblib.dump(labelers, buf)
        labelers.stored = stored
    finally:
        for m, emb, factory in saved:
            m.embedder = emb
            if hasattr(m, "estimator_factory"):
                m.estimator_factory = factory
    return buf.getvalue()


def load_labelers(data: bytes, embedder: Embedder) -> LabelerSet:
    """A stored set, given back its embedder (and its student's estimator factory)."""
    import joblib

    labelers: LabelerSet = joblib.load(io.BytesIO(data))
    for m in _embedder_holders(labelers):
        m.embedder = embedder
        if getattr(m, "algorithm", "logreg") not in ("logreg", "self-training") and hasattr(
            m, "estimator_factory"
        ):
            from labelloop.learn.selection import default_candidates

            n, k = len(labelers.humans), len({str(x) for x in labelers.humans.labels})
            m.estimator_factory = default_candidates(0, n, k)[m.algorithm]
    return labelers


def student_metrics(labelers: LabelerSet) -> tuple[float | None, float | None]:
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


def store_labelers(
    ctx: ProjectContext, labelers: LabelerSet, key: str, extra: dict[str, Any] | None = None
) -> ModelVersion:
    """Store a trained set as a model version (with its held-out metrics)."""
    f1, acc = student_metrics(labelers)
    metrics = {
        "held_out_macro_f1": f1,
        "held_out_accuracy": acc,
        "measured_on": f"{len(labelers.humans)} human labels, 5-fold out of fold",
        **(extra or {}),
    }
    version = labelers.ensemble.version
    algorithm = type(labelers.student.model).__name__ if labelers.student else "none"
    save_model_version(
        ctx.db,
        ctx.id,
        kind=MODEL_KIND,
        version=version,
        algorithm=algorithm,
        metrics=metrics,
        trained_on=[int(i) for i in labelers.humans.item_ids],
        model=dump_labelers(labelers),
        training_key=key,
    )
    stored = latest_model_version(ctx.db, ctx.id, MODEL_KIND, training_key=key)
    assert stored is not None
    labelers.stored = stored
    return stored


def current_labelers(
    ctx: ProjectContext,
    embedder: Embedder,
    *,
    student_algorithm: str | None = None,
    store: bool = True,
    build: Callable[..., LabelerSet] = build_labelers,
    extra_metrics: dict[str, Any] | None = None,
) -> tuple[LabelerSet, bool]:
    """The project's labelers for its current human labels: loaded from the store when a
    model version was trained on exactly these labels, else trained (and stored when
    ``store``). Returns (labelers, whether they were trained now).

    ``student_algorithm`` defaults to the one of the newest stored version (the loop's
    student selection may have switched it), else logistic regression."""
    latest = latest_model_version(ctx.db, ctx.id, MODEL_KIND)
    algorithm = student_algorithm or (
        (latest.metrics.get("student_algorithm") if latest else None) or "logreg"
    )
    humans = human_set(ctx, embedder)
    key = training_key(ctx, humans, embedder, algorithm)
    found = latest_model_version(ctx.db, ctx.id, MODEL_KIND, training_key=key, with_model=True)
    if found is not None and found.model is not None:
        try:
            labelers = load_labelers(found.model, embedder)
        except Exception:  # a model from an older labelloop that no longer loads: retrain
            labelers = None
        if labelers is not None:
            labelers.humans = humans  # the same labels; fresh contents and vectors
            labelers.stored = found
            return labelers, False
    labelers = build(ctx, embedder, algorithm, humans)
    if store and len(humans):
        store_labelers(
            ctx, labelers, key, {"student_algorithm": algorithm, **(extra_metrics or {})}
        )
    return labelers, True
