"""Building a project's machine labelers from its config and the human labels in its store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from labelloop.embed.base import Embedder
from labelloop.labelers.ensemble import EnsembleLabeler, disagreement
from labelloop.labelers.probs import encode_labels
from labelloop.labelers.student import StudentLabeler
from labelloop.labelers.zeroshot import ZeroShotLabeler

if TYPE_CHECKING:
    from labelloop.project import Project


class ImageEmbedder:
    """Images as vectors through an image featurizer, behind the ``Embedder`` protocol: the
    "texts" are image file paths. The built-in offline featurizer by default, or a
    user-supplied ONNX image model when ``embedding.model`` names a ``.onnx`` file."""

    def __init__(self, onnx_model: str | None = None) -> None:
        from labelloop.embed.image import HandcraftedImageFeaturizer, OnnxImageFeaturizer

        self.featurizer: Any = (
            OnnxImageFeaturizer(onnx_model)
            if onnx_model and onnx_model.endswith(".onnx")
            else HandcraftedImageFeaturizer()
        )
        self.model_id = self.featurizer.featurizer_id
        self.dim = int(self.featurizer.dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        x = np.asarray(self.featurizer.featurize(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.maximum(norms, 1e-12)


class PriorLabeler:
    """Uniform probabilities: the only opinion machines have about, say, images before any
    human label exists (zero-shot needs text). Routing then sends everything to people."""

    labeler_id = "prior"
    version = "uniform"

    def __init__(self, label_names: Sequence[str]) -> None:
        self.k = len(label_names)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full((len(X), self.k), 1.0 / self.k)

    def out_of_fold_proba(self, X: np.ndarray, labels: Sequence[Any]) -> np.ndarray:
        return self.predict_proba(X)


def project_embedder(project: Project) -> Embedder:
    """The configured embedder, wrapped in the store's embedding cache."""
    from labelloop.embed.cached import CachedEmbedder
    from labelloop.store.embeddings import StoreEmbeddingCache

    cfg = project.config.embedding
    inner: Embedder
    if project.config.modality == "image":
        inner = ImageEmbedder(cfg.model)
    elif cfg.backend == "minilm":
        from labelloop.embed.onnx_minilm import MiniLMEmbedder

        inner = MiniLMEmbedder(
            intra_op_num_threads=cfg.threads,
            batch_size=cfg.batch_size,
            max_batch_tokens=cfg.max_batch_tokens,
        )
    elif cfg.backend == "openai":
        from labelloop.embed.openai_compat import OpenAIEmbedder

        options: dict[str, Any] = {"batch_size": cfg.batch_size}
        if cfg.base_url:
            options["base_url"] = cfg.base_url
        if cfg.api_key_env:
            options["api_key_env"] = cfg.api_key_env
        inner = OpenAIEmbedder(cfg.model or "text-embedding-3-small", **options)
    else:
        from labelloop.embed.sentence_transformers import SentenceTransformerEmbedder

        inner = SentenceTransformerEmbedder(
            cfg.model or "all-MiniLM-L6-v2", batch_size=cfg.batch_size
        )
    return CachedEmbedder(inner, StoreEmbeddingCache(project.db))


@dataclass
class HumanSet:
    """Human-labeled items: ids, contents, labels (names, or lists for multi-label), vectors."""

    item_ids: np.ndarray
    contents: list[str]
    labels: list[Any]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)


def human_set(project: Project, embedder: Embedder) -> HumanSet:
    df = project.final_labels()
    if not df.empty:
        df = df[df["source_kind"].isin(["human", "import"])]
    if df.empty:
        return HumanSet(
            np.zeros(0, dtype=np.int64), [], [], np.zeros((0, embedder.dim), np.float32)
        )
    multi = project.config.task == "multi_label"
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

    def held_out_y(self) -> np.ndarray:
        """Human labels as indices, for calibration and thresholds (single-label tasks)."""
        y = np.asarray(encode_labels(self.humans.labels, self.label_names, self.task))
        return y if y.ndim == 1 else y.argmax(axis=1)


def build_labelers(
    project: Project, embedder: Embedder, student_algorithm: str = "logreg"
) -> LabelerSet:
    """Zero-shot (sharpened by human examples) and student (once there are enough human
    labels), pooled by an ensemble whose weights are learned on held-out predictions."""
    cfg = project.config
    names = cfg.label_names
    task = str(cfg.task)
    humans = human_set(project, embedder)
    members: list[Any] = []
    held_out: list[np.ndarray] = []
    zs = None
    if cfg.labelers.zeroshot and cfg.modality != "image":
        zs = ZeroShotLabeler(embedder, cfg.labels, task)
        if len(humans):
            if len(humans) >= 10:
                held_out.append(zs.out_of_fold_proba(humans.vectors, humans.labels))
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
            held_out.append(st.out_of_fold_proba(humans.vectors, humans.labels))
        st.fit(humans.vectors, humans.labels)
        members.append(st)
    if st is not None and cfg.labelers.semi_supervised and task == "single_label":
        semi, semi_held = self_training_member(project, embedder, humans, names, task)
        members.append(semi)
        if len(held_out) == len(members) - 1 and len(humans) >= 10:
            held_out.append(semi_held)
    if not members and cfg.modality == "image":
        members.append(PriorLabeler(names))
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
    return LabelerSet(names, task, zs, st, ensemble, humans, held, stack)


def self_training_member(
    project: Project, embedder: Embedder, humans: HumanSet, names: list[str], task: str
) -> tuple[StudentLabeler, np.ndarray]:
    """A student trained on human labels plus confident self-training pseudo-labels of the
    project's unlabeled items (labeler id ``self_training``), and held-out probabilities on
    the human-labeled items (from a student on human labels alone: a conservative stand-in,
    since pseudo-labels from other folds only would cost one self-training run per fold)."""
    from labelloop.learn.semi_supervised import pseudo_labels, self_training_probs
    from labelloop.store.embeddings import StoreEmbeddingCache

    hashes, pool = StoreEmbeddingCache(project.db).load_all(embedder.model_id)
    fl = project.final_labels()
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
) -> list[Any]:
    """One Suggestion per member and one for the ensemble, per item (with provenance)."""
    from labelloop.core.types import Item
    from labelloop.labelers.probs import build_suggestions

    items = [
        Item(content="", content_hash=h, id=int(i)) for i, h in zip(item_ids, hashes, strict=True)
    ]
    out = []
    for member, probs in zip(labelers.members, stack, strict=True):
        method = "softmax" if member.labeler_id == "zeroshot" else "predict_proba"
        out += build_suggestions(
            items,
            probs,
            labelers.label_names,
            labelers.task,
            member.labeler_id,
            member.version,
            latency_ms,
            method,
        )
    out += build_suggestions(
        items,
        ensemble_probs,
        labelers.label_names,
        labelers.task,
        "ensemble",
        labelers.ensemble.version,
        latency_ms,
        "pool",
    )
    return out
