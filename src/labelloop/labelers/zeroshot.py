"""Zero-shot labeling by cosine similarity between an item's embedding and each label's vector.

A label's vector starts as the mean embedding of several descriptions of it — its name, its
description and each of its examples (FIELD-NOTES: averaging several descriptions works far
better than the name alone). As people label items, the mean embedding of a label's human
examples (its prototype) is blended in, weighted by count: with ``n`` examples the label vector
is ``(w * descriptions + n * prototype) / (w + n)``, so a handful of human labels already pulls
predictions toward what people actually call that label, and descriptions fade as labels pile up.

Similarities become probabilities with a temperature softmax (single-label) or a sigmoid around
a similarity threshold (multi-label); ``fit_temperature`` tunes the temperature on human labels.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from labelloop.core.config import LabelSpec, TaskType
from labelloop.core.probs import (
    EPS,
    as_task,
    check_label_names,
    encode_labels,
    is_multi_label,
    sigmoid,
    softmax,
    suggest_with_embedder,
)
from labelloop.core.types import Item, Suggestion
from labelloop.embed.base import Embedder
from labelloop.labelers.base import ProbaSuggestions


def label_description_texts(spec: LabelSpec) -> list[str]:
    """The texts that describe a label: its name (underscores as spaces), description, examples."""
    texts = [spec.name.replace("_", " ").replace("-", " ")]
    if spec.description.strip():
        texts.append(spec.description.strip())
    texts.extend(e.strip() for e in spec.examples if e.strip())
    return texts


def _unit_rows(V: np.ndarray) -> np.ndarray:
    return V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), EPS)


def check_vectors(X: np.ndarray, dim: int, name: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


class ZeroShotLabeler(ProbaSuggestions):
    """Labels items with no training by similarity to label descriptions, sharpened by examples.

    >>> zs = ZeroShotLabeler(MiniLMEmbedder(), config.labels, config.task)
    >>> zs.add_texts(["where is my card?"], ["card_arrival"])   # human labels, as they arrive
    >>> zs.suggest(items)                                       # list[Suggestion]
    """

    labeler_id = "zeroshot"

    def __init__(
        self,
        embedder: Embedder,
        labels: Sequence[LabelSpec],
        task: TaskType | str = TaskType.single_label,
        temperature: float = 0.05,
        description_weight: float = 3.0,
        multi_label_threshold: float = 0.35,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if description_weight < 0:
            raise ValueError(f"description_weight must be >= 0, got {description_weight}")
        self.embedder = embedder
        self.labels = list(labels)
        self.label_names = check_label_names([s.name for s in self.labels])
        self.task = as_task(task)
        self.temperature = float(temperature)
        self.description_weight = float(description_weight)
        self.multi_label_threshold = float(multi_label_threshold)
        self.dim = int(embedder.dim)
        self.description_vectors = self._embed_descriptions()
        k = len(self.label_names)
        self._example_sums = np.zeros((k, self.dim))
        self.example_counts = np.zeros(k, dtype=np.int64)
        self._label_vectors = self.description_vectors.copy()

    @property
    def version(self) -> str:
        """Changes when the embedder, temperature or the human examples behind it change."""
        n = int(self.example_counts.sum())
        return f"desc+proto/{self.embedder.model_id}/n{n}/t{self.temperature:.4g}"

    def _embed_descriptions(self) -> np.ndarray:
        texts: list[str] = []
        owner: list[int] = []
        for i, spec in enumerate(self.labels):
            for t in label_description_texts(spec):
                texts.append(t)
                owner.append(i)
        V = check_vectors(self.embedder.embed(texts), self.dim, "embedder output")
        owner_arr = np.asarray(owner)
        sums = np.zeros((len(self.labels), self.dim))
        np.add.at(sums, owner_arr, _unit_rows(V))
        return _unit_rows(sums / np.bincount(owner_arr, minlength=len(self.labels))[:, None])

    # --- learning from human labels ---------------------------------------------------------

    def add_examples(self, vectors: np.ndarray, labels: Sequence) -> ZeroShotLabeler:
        """Fold human-labeled item vectors into the label prototypes (incremental, order-free).

        ``labels``: one label name per row (single-label) or a list of names per row (multi-label).
        """
        X = _unit_rows(check_vectors(vectors, self.dim, "vectors"))
        Y = encode_labels(labels, self.label_names, self.task)
        if len(Y) != len(X):
            raise ValueError(f"vectors has {len(X)} rows but labels has {len(Y)}")
        if Y.ndim == 1:
            Y = np.eye(len(self.label_names), dtype=np.int64)[Y]
        self._example_sums += Y.T @ X
        self.example_counts += Y.sum(axis=0)
        w = self.description_weight
        blended = (w * self.description_vectors + self._example_sums) / (
            w + self.example_counts[:, None]
        )
        self._label_vectors = _unit_rows(blended)
        return self

    def add_texts(self, texts: Sequence[str], labels: Sequence) -> ZeroShotLabeler:
        return self.add_examples(self.embedder.embed(list(texts)), labels)

    def fit_temperature(
        self, vectors: np.ndarray, labels: Sequence, bounds: tuple[float, float] = (0.005, 1.0)
    ) -> float:
        """Choose the temperature that minimises log-loss on labeled vectors; returns it.

        Use items that were *not* added as examples, or the temperature comes out too sharp.
        """
        S = self.similarities(vectors)
        Y = encode_labels(labels, self.label_names, self.task)

        def loss(log_t: float) -> float:
            P = self._to_probs(S, float(np.exp(log_t)))
            if Y.ndim == 1:
                return -float(np.mean(np.log(P[np.arange(len(Y)), Y] + EPS)))
            return -float(np.mean(Y * np.log(P + EPS) + (1 - Y) * np.log(1 - P + EPS)))

        res = minimize_scalar(loss, bounds=np.log(bounds), method="bounded")
        self.temperature = float(np.exp(res.x))
        return self.temperature

    def out_of_fold_proba(
        self,
        vectors: np.ndarray,
        labels: Sequence,
        n_splits: int = 5,
        seed: int = 0,
        keep: list | None = None,
    ) -> np.ndarray:
        """Probabilities for labeled items from prototypes built on the *other* folds.

        What this labeler would say about an item it has not been shown: use it to learn
        ensemble weights or a temperature. Leaves this labeler untouched. ``keep``: a list the
        fold labelers are appended to (copies with the fold's prototypes and no embedder: they
        score vectors).
        """
        X = _unit_rows(check_vectors(vectors, self.dim, "vectors"))
        Y = encode_labels(labels, self.label_names, self.task)
        if len(Y) != len(X):
            raise ValueError(f"vectors has {len(X)} rows but labels has {len(Y)}")
        onehot = np.eye(len(self.label_names))[Y] if Y.ndim == 1 else Y.astype(float)
        fold = np.random.default_rng(seed).permutation(len(X)) % max(2, min(n_splits, len(X)))
        out = np.zeros((len(X), len(self.label_names)))
        w = self.description_weight
        for f in np.unique(fold):
            train, test = fold != f, fold == f
            sums = self._example_sums + onehot[train].T @ X[train]
            counts = self.example_counts + onehot[train].sum(axis=0)
            V = _unit_rows((w * self.description_vectors + sums) / (w + counts[:, None]))
            out[test] = self._to_probs(X[test] @ V.T, self.temperature)
            if keep is not None:
                fold_labeler = copy.copy(self)
                fold_labeler.embedder = None
                fold_labeler._example_sums, fold_labeler.example_counts = sums, counts
                fold_labeler._label_vectors = V
                keep.append(fold_labeler)
        return out

    # --- prediction -------------------------------------------------------------------------

    @property
    def label_vectors(self) -> np.ndarray:
        """(K, dim) unit vectors, one per label in taxonomy order."""
        return self._label_vectors

    def similarities(self, X: np.ndarray) -> np.ndarray:
        """Cosine similarity of each row of ``X`` to each label vector, shape (n, K)."""
        X = _unit_rows(check_vectors(X, self.dim))
        return X @ self._label_vectors.T

    def _to_probs(self, S: np.ndarray, temperature: float) -> np.ndarray:
        if is_multi_label(self.task):
            return sigmoid((S - self.multi_label_threshold) / temperature)
        return softmax(S, temperature)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (n, K) in taxonomy order for embedded items."""
        return self._to_probs(self.similarities(X), self.temperature)

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        return suggest_with_embedder(self, items)

    @property
    def confidence_method(self) -> str:  # type: ignore[override]
        return "sigmoid" if is_multi_label(self.task) else "softmax"
