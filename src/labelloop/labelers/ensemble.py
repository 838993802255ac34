"""Combining labelers: a weighted pool learned from human labels, and their disagreement.

Stacking choice: the ensemble is a *linear pool* — a weighted average of the members'
probability matrices — whose weights (one per member, on the simplex) minimise log-loss on
human-labeled items. It has only as many parameters as members, so a few dozen labels pin it
down, the weights say plainly which labeler is trusted, and it keeps the taxonomy's label order
for free. A logistic regression over the concatenated probabilities would need K x (m x K)
parameters (77 x 154 for banking77) and hundreds of labels per class. Below ``min_labels`` human
labels the weights stay equal.

Averaging blurs: a pool of two good labelers is underconfident (banking77, 770 labels: ECE 0.11).
So the pooled probabilities are then sharpened, ``p_k ** a`` renormalised (on the logit for
multi-label), with the exponent ``a`` fit by log-loss on the same labels; argmax is unchanged
and ECE fell to 0.02 there.

Fit the weights on *held-out* member probabilities (``StudentLabeler.out_of_fold_proba``): a
student scored on its own training items looks perfect and would take all the weight.

The disagreement measured here is what ``labelers.cascade`` reads to decide where the expensive
labeler (the LLM) pays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from labelloop.core.config import TaskType
from labelloop.core.probs import (
    EPS,
    as_task,
    build_suggestions,
    check_label_names,
    check_prob_matrix,
    dicts_to_probs,
    encode_labels,
    is_multi_label,
    normalize_rows,
)
from labelloop.core.types import Item, Suggestion
from labelloop.labelers.base import Labeler, ProbaSuggestions

# --- pure functions over a stack of probability matrices, shape (members, items, labels) --------


def check_prob_stack(stack: np.ndarray, n_labels: int | None = None) -> np.ndarray:
    S = np.asarray(stack, dtype=np.float64)
    if S.ndim != 3:
        raise ValueError(f"prob stack must be 3-D (members x items x labels), got shape {S.shape}")
    for m in range(S.shape[0]):
        check_prob_matrix(S[m], n_labels, name=f"prob stack member {m}")
    return np.clip(S, 0.0, 1.0)


def _entropy2(P: np.ndarray, axis: int = -1) -> np.ndarray:
    return -np.sum(P * np.log2(np.clip(P, EPS, 1.0)), axis=axis)


def js_divergence(
    P: np.ndarray, Q: np.ndarray, task: TaskType | str = "single_label"
) -> np.ndarray:
    """Row-wise Jensen-Shannon divergence in bits, in [0, 1].

    Multi-label rows are treated as independent yes/no questions: the mean over labels of the
    Bernoulli JS divergence.
    """
    P, Q = np.asarray(P, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    if is_multi_label(task):
        P, Q = np.stack([P, 1 - P], axis=-1), np.stack([Q, 1 - Q], axis=-1)
        M = 0.5 * (P + Q)
        return np.mean(_entropy2(M) - 0.5 * (_entropy2(P) + _entropy2(Q)), axis=-1).clip(0, 1)
    M = 0.5 * (P + Q)
    return (_entropy2(M) - 0.5 * (_entropy2(P) + _entropy2(Q))).clip(0.0, 1.0)


def disagreement(stack: np.ndarray, task: TaskType | str = "single_label") -> np.ndarray:
    """Per item: the mean pairwise JS divergence between members (0 = all agree, 1 = maximal).

    With fewer than two members there is nothing to disagree with: all zeros.
    """
    S = check_prob_stack(stack)
    m, n = S.shape[0], S.shape[1]
    if m < 2:
        return np.zeros(n)
    pairs = list(combinations(range(m), 2))
    return sum(js_divergence(S[a], S[b], task) for a, b in pairs) / len(pairs)


def vote_entropy(stack: np.ndarray) -> np.ndarray:
    """Per item: entropy of the members' top-label votes, scaled to [0, 1] (single-label).

    ``labelloop.active.vote_entropy`` (natural log) divided by its largest possible value.
    """
    from labelloop.active.acquisition import vote_entropy as raw_vote_entropy

    S = check_prob_stack(stack)
    m, n, k = S.shape
    if m < 2:
        return np.zeros(n)
    return raw_vote_entropy(S) / np.log(min(m, k))


def combine_probs(
    stack: np.ndarray, weights: np.ndarray | None = None, task: TaskType | str = "single_label"
) -> np.ndarray:
    """Weighted average of the members' matrices (linear pool); equal weights by default."""
    S = check_prob_stack(stack)
    w = np.full(S.shape[0], 1.0 / S.shape[0]) if weights is None else np.asarray(weights, float)
    if w.shape != (S.shape[0],) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {S.shape[0]} non-negative numbers, not all zero")
    P = np.tensordot(w / w.sum(), S, axes=1)
    return np.clip(P, 0.0, 1.0) if is_multi_label(task) else normalize_rows(P)


def pool_log_loss(P: np.ndarray, Y: np.ndarray) -> float:
    """Mean log-loss of ``P`` against class indices (1-D) or a 0/1 matrix (multi-label)."""
    if Y.ndim == 1:
        return -float(np.mean(np.log(np.clip(P[np.arange(len(Y)), Y], EPS, 1.0))))
    Pc = np.clip(P, EPS, 1 - EPS)
    return -float(np.mean(Y * np.log(Pc) + (1 - Y) * np.log(1 - Pc)))


def fit_pool_weights(
    stack: np.ndarray, y: np.ndarray, task: TaskType | str = "single_label", l2: float = 1e-3
) -> np.ndarray:
    """Member weights on the simplex that minimise the pooled log-loss on labeled items.

    ``y`` holds class indices (single-label) or a 0/1 matrix (multi-label). Weights are a
    softmax of free parameters; a small ``l2`` pull toward equal weights keeps ties stable.
    """
    S = check_prob_stack(stack)
    Y = np.asarray(y)
    if len(Y) != S.shape[1]:
        raise ValueError(f"y has {len(Y)} rows but the prob stack has {S.shape[1]} items")
    m = S.shape[0]
    if m == 1:
        return np.ones(1)
    multi = is_multi_label(task)

    def loss(theta: np.ndarray) -> float:
        w = np.exp(theta - theta.max())
        w /= w.sum()
        P = np.tensordot(w, S, axes=1)
        return pool_log_loss(P if multi else normalize_rows(P), Y) + l2 * float(theta @ theta)

    res = minimize(loss, np.zeros(m), method="L-BFGS-B")
    w = np.exp(res.x - res.x.max())
    return w / w.sum()


def cross_validated_lift(
    stack: np.ndarray,
    y: np.ndarray,
    task: TaskType | str = "single_label",
    folds: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, float, float]:
    """(weights fit on all items, held-out log-loss of member 0 alone, of the pool).

    Each fold's weights (``fit_pool_weights``) are scored on the items left out, so the lift
    (first loss minus second) is what pooling in the other members would have gained on items
    it was not fit on: a member that only fits noise lowers the in-sample loss, not this one."""
    S = check_prob_stack(stack)
    Y = np.asarray(y)
    n = S.shape[1]
    multi = is_multi_label(task)
    folds = min(folds, n)
    if folds < 2:
        return fit_pool_weights(S, Y, task), math.nan, math.nan
    from sklearn.model_selection import KFold

    pooled = np.zeros_like(S[0])
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(np.arange(n)):
        w = fit_pool_weights(S[:, train], Y[train], task)
        pooled[test] = combine_probs(S[:, test], w, task)
    alone = S[0] if multi else normalize_rows(S[0])
    return fit_pool_weights(S, Y, task), pool_log_loss(alone, Y), pool_log_loss(pooled, Y)


def sharpen(P: np.ndarray, exponent: float, task: TaskType | str = "single_label") -> np.ndarray:
    """``P ** exponent`` renormalised per row (multi-label: the exponent scales each logit)."""
    if exponent <= 0:
        raise ValueError(f"exponent must be positive, got {exponent}")
    P = np.clip(np.asarray(P, dtype=np.float64), EPS, 1.0)
    if is_multi_label(task):
        P = np.clip(P, EPS, 1 - EPS)
        return 1.0 / (1.0 + ((1 - P) / P) ** exponent)
    L = exponent * np.log(P)
    Q = np.exp(L - L.max(axis=1, keepdims=True))
    return Q / Q.sum(axis=1, keepdims=True)


def fit_sharpness(
    P: np.ndarray,
    y: np.ndarray,
    task: TaskType | str = "single_label",
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """The exponent for ``sharpen`` that minimises log-loss on labeled items (1 = unchanged)."""
    Y = np.asarray(y)
    res = minimize_scalar(
        lambda log_a: pool_log_loss(sharpen(P, float(np.exp(log_a)), task), Y),
        bounds=np.log(bounds),
        method="bounded",
    )
    return float(np.exp(res.x))


# --- the ensemble labeler -----------------------------------------------------------------------


def _has_vector_api(labeler: Any) -> bool:
    return hasattr(labeler, "predict_proba") and getattr(labeler, "embedder", None) is not None


class EnsembleLabeler(ProbaSuggestions):
    """A weighted pool of labelers; weights learned from human labels once there are enough.

    >>> ens = EnsembleLabeler([zeroshot, student], config.label_names, config.task)
    >>> ens.fit(np.stack([zs_probs, student_oof_probs]), human_labels)
    >>> suggestions, disagreement_per_item = ens.suggest_with_disagreement(items)
    """

    labeler_id = "ensemble"
    confidence_method = "pool"

    def __init__(
        self,
        members: Sequence[Labeler],
        label_names: Sequence[str],
        task: TaskType | str = TaskType.single_label,
        min_labels: int = 30,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member labeler")
        self.members = list(members)
        self.label_names = check_label_names(label_names)
        self.task = as_task(task)
        self.min_labels = int(min_labels)
        self.weights = np.full(len(self.members), 1.0 / len(self.members))
        self.sharpness = 1.0
        self.n_fits = 0
        self.n_labels = 0

    @property
    def version(self) -> str:
        parts = ",".join(
            f"{m.labeler_id}={w:.2f}@{m.version}"
            for m, w in zip(self.members, self.weights, strict=True)
        )
        return f"pool.v{self.n_fits}({parts})^{self.sharpness:.2f}"

    def fit(self, stack: np.ndarray, y: Sequence) -> EnsembleLabeler:
        """Learn member weights from their (held-out) probabilities on human-labeled items."""
        S = check_prob_stack(stack, len(self.label_names))
        if S.shape[0] != len(self.members):
            raise ValueError(
                f"prob stack has {S.shape[0]} members, the ensemble {len(self.members)}"
            )
        Y = encode_labels(y, self.label_names, self.task)
        self.n_labels = len(Y)
        self.n_fits += 1
        if len(Y) < self.min_labels:
            self.weights = np.full(len(self.members), 1.0 / len(self.members))
            self.sharpness = 1.0
        else:
            self.weights = fit_pool_weights(S, Y, self.task)
            self.sharpness = fit_sharpness(combine_probs(S, self.weights, self.task), Y, self.task)
        return self

    def combine(self, stack: np.ndarray) -> np.ndarray:
        """The ensemble's probabilities from its members' (members, n, K) stack."""
        return sharpen(combine_probs(stack, self.weights, self.task), self.sharpness, self.task)

    def member_proba(self, X: np.ndarray) -> np.ndarray:
        """(members, n, K) from item vectors; every member must have ``predict_proba``."""
        return np.stack([m.predict_proba(X) for m in self.members])

    def member_proba_items(self, items: Sequence[Item]) -> np.ndarray:
        """(members, n, K) for items. Members that embed with the same model share one embedding."""
        vectors: dict[str, np.ndarray] = {}
        out = []
        for m in self.members:
            if _has_vector_api(m):
                key = m.embedder.model_id
                if key not in vectors:
                    vectors[key] = m.embedder.embed([it.content for it in items])
                out.append(m.predict_proba(vectors[key]))
            else:
                sugg = m.suggest(items)
                out.append(dicts_to_probs([s.probs for s in sugg], self.label_names))
        return np.stack(out)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.combine(self.member_proba(X))

    def suggest_with_disagreement(
        self, items: Sequence[Item]
    ) -> tuple[list[Suggestion], np.ndarray]:
        if not items:
            return [], np.zeros(0)
        start = time.perf_counter()
        S = self.member_proba_items(items)
        P = self.combine(S)
        ms = (time.perf_counter() - start) * 1000 / len(items)
        sugg = build_suggestions(
            items, P, self.label_names, self.task, self.labeler_id, self.version, ms, "pool"
        )
        return sugg, disagreement(S, self.task)

    def suggest(self, items: Sequence[Item]) -> list[Suggestion]:
        return self.suggest_with_disagreement(items)[0]
