"""Shared helpers for probability matrices: shapes, normalising, labels, suggestions, metrics.

A probability matrix ``P`` has one row per item and one column per label, in the taxonomy's
order. For a single-label task each row sums to one; for a multi-label task each entry is an
independent probability that the label applies. Everything here is a plain function over numpy
arrays so the labelers, the router and the benchmarks share one definition.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from labelloop.core.config import TaskType
from labelloop.core.types import Item, Suggestion

EPS = 1e-12


def as_task(task: TaskType | str) -> TaskType:
    """The task type from an enum or its string value, with a clear error for anything else."""
    try:
        return TaskType(task)
    except ValueError:
        allowed = ", ".join(t.value for t in TaskType)
        raise ValueError(f"unknown task {task!r}: expected one of {allowed}") from None


def is_multi_label(task: TaskType | str) -> bool:
    return as_task(task) is TaskType.multi_label


def check_label_names(label_names: Sequence[str]) -> list[str]:
    """The label names as a list; at least two, all distinct."""
    names = list(label_names)
    if len(names) < 2:
        raise ValueError(f"a taxonomy needs at least two labels, got {len(names)}")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"label names must be distinct; repeated: {dupes}")
    return names


def check_prob_matrix(
    P: np.ndarray, n_labels: int | None = None, name: str = "probs"
) -> np.ndarray:
    """``P`` as a float64 2-D array with entries in [0, 1]; raise naming ``name`` otherwise."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items x labels), got shape {P.shape}")
    if n_labels is not None and P.shape[1] != n_labels:
        raise ValueError(f"{name} has {P.shape[1]} columns, expected {n_labels} (one per label)")
    if not np.all(np.isfinite(P)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if P.size and (P.min() < -1e-9 or P.max() > 1 + 1e-9):
        raise ValueError(f"{name} has values outside [0, 1] (min {P.min():.3g}, max {P.max():.3g})")
    return np.clip(P, 0.0, 1.0)


def normalize_rows(P: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to one; an all-zero row becomes uniform."""
    P = np.clip(np.asarray(P, dtype=np.float64), 0.0, None)
    sums = P.sum(axis=1, keepdims=True)
    uniform = np.full_like(P, 1.0 / max(P.shape[1], 1))
    return np.where(sums > 0, P / np.where(sums > 0, sums, 1.0), uniform)


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature`` (numerically stable)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.asarray(scores, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|


def top_indices(P: np.ndarray) -> np.ndarray:
    """Index of the most probable label of each row."""
    return np.asarray(P).argmax(axis=1)


def top_labels(P: np.ndarray, label_names: Sequence[str]) -> list[str]:
    names = list(label_names)
    return [names[i] for i in top_indices(P)]


def confidence_of(P: np.ndarray, task: TaskType | str) -> np.ndarray:
    """How sure each row is of its answer.

    Single-label: the top probability. Multi-label: the probability that the whole thresholded
    set (labels with p >= 0.5) is right, treating labels as independent: prod max(p, 1 - p).
    """
    P = np.asarray(P, dtype=np.float64)
    if is_multi_label(task):
        return np.prod(np.maximum(P, 1.0 - P), axis=1)
    return P.max(axis=1)


def encode_labels(
    y: Iterable[str] | Iterable[Iterable[str]] | np.ndarray,
    label_names: Sequence[str],
    task: TaskType | str,
) -> np.ndarray:
    """Human labels as arrays: class indices (single-label) or a 0/1 matrix (multi-label).

    Single-label ``y`` holds label names (or integer indices); multi-label ``y`` holds a list of
    label names per item (or is already an (n, K) 0/1 matrix). Unknown names raise ValueError
    naming the position.
    """
    names = list(label_names)
    index = {n: i for i, n in enumerate(names)}
    k = len(names)
    if is_multi_label(task):
        if isinstance(y, np.ndarray) and y.ndim == 2:
            if y.shape[1] != k:
                raise ValueError(f"label matrix has {y.shape[1]} columns, expected {k}")
            if not np.isin(y, (0, 1)).all():
                raise ValueError("a multi-label label matrix must hold only 0 and 1")
            return y.astype(np.int64)
        rows = list(y)
        Y = np.zeros((len(rows), k), dtype=np.int64)
        for r, labels in enumerate(rows):
            if isinstance(labels, str):
                labels = [labels]
            for label in labels:
                if label not in index:
                    raise ValueError(f"y[{r}]: unknown label {label!r}; taxonomy: {names}")
                Y[r, index[label]] = 1
        return Y
    values = list(y.tolist() if isinstance(y, np.ndarray) else y)
    out = np.empty(len(values), dtype=np.int64)
    for r, label in enumerate(values):
        if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < k:
                raise ValueError(f"y[{r}]: label index {label} outside 0..{k - 1}")
            out[r] = int(label)
        elif label in index:
            out[r] = index[label]
        else:
            raise ValueError(f"y[{r}]: unknown label {label!r}; taxonomy: {names}")
    return out


def probs_to_dicts(P: np.ndarray, label_names: Sequence[str]) -> list[dict[str, float]]:
    names = list(label_names)
    return [dict(zip(names, map(float, row), strict=True)) for row in np.asarray(P)]


def dicts_to_probs(rows: Sequence[dict[str, float]], label_names: Sequence[str]) -> np.ndarray:
    """A matrix from Suggestion.probs dicts; a label missing from a dict counts as 0."""
    names = list(label_names)
    return np.array(
        [[float(r.get(n, 0.0)) for n in names] for r in rows], dtype=np.float64
    ).reshape(len(rows), len(names))


def build_suggestions(
    items: Sequence[Item],
    P: np.ndarray,
    label_names: Sequence[str],
    task: TaskType | str,
    labeler_id: str,
    version: str,
    latency_ms_per_item: float,
    confidence_method: str,
) -> list[Suggestion]:
    """One Suggestion per item, carrying the labeler's identity and version (provenance)."""
    conf = confidence_of(P, task)
    return [
        Suggestion(
            item_id=item.id,
            content_hash=item.content_hash,
            labeler=labeler_id,
            labeler_version=version,
            probs=probs,
            confidence=float(c),
            confidence_method=confidence_method,
            latency_ms=float(latency_ms_per_item),
        )
        for item, probs, c in zip(items, probs_to_dicts(P, label_names), conf, strict=True)
    ]


def suggest_with_embedder(labeler: Any, items: Sequence[Item]) -> list[Suggestion]:
    """Embed the items with ``labeler.embedder``, predict, and build its suggestions with the
    per-item latency (the ``suggest`` of every labeler that works on vectors)."""
    if not items:
        return []
    start = time.perf_counter()
    P = labeler.predict_proba(labeler.embedder.embed([it.content for it in items]))
    ms = (time.perf_counter() - start) * 1000 / len(items)
    return labeler.suggestions_from_proba(items, P, ms)


# --- metrics over confidences -------------------------------------------------------------------


def _check_conf_correct(
    confidence: np.ndarray, correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, dtype=np.float64).ravel()
    ok = np.asarray(correct, dtype=np.float64).ravel()
    if c.shape != ok.shape:
        raise ValueError(f"confidence has {c.size} values but correct has {ok.size}")
    if c.size and (c.min() < 0 or c.max() > 1):
        raise ValueError("confidence values must lie in [0, 1]")
    return c, ok


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10
) -> float:
    """ECE with equal-width bins: sum over bins of (bin share) * |accuracy - mean confidence|.

    ``correct`` is 1 where the labeler's answer was right. The top bin includes 1.0.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    c, ok = _check_conf_correct(confidence, correct)
    if c.size == 0:
        return 0.0
    bins = np.minimum((c * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=c, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=ok, minlength=n_bins)
    filled = counts > 0
    gap = np.abs(acc_sum[filled] - conf_sum[filled]) / counts[filled]
    return float(np.sum(gap * counts[filled]) / c.size)


def accuracy_coverage_curve(
    confidence: np.ndarray, correct: np.ndarray, thresholds: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """For each threshold t: the share of items with confidence >= t (coverage) and their accuracy.

    Accuracy is NaN where no item is covered. Default thresholds: 0.0, 0.05, ..., 1.0.
    """
    c, ok = _check_conf_correct(confidence, correct)
    t = np.linspace(0.0, 1.0, 21) if thresholds is None else np.asarray(thresholds, dtype=float)
    covered = c[None, :] >= t[:, None]
    n_cov = covered.sum(axis=1)
    coverage = n_cov / max(c.size, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n_cov > 0, (covered * ok[None, :]).sum(axis=1) / n_cov, np.nan)
    return {"threshold": t, "coverage": coverage, "accuracy": accuracy}


# --- checks and label sets shared by routing and active learning -------------------------------


def check_probs(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    """Return ``probs`` as a float64 (n, k) array, or raise a ValueError that says what is wrong."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (items, labels) array, got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"{name}: need at least 2 label columns, got {arr.shape[1]}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise ValueError(f"{name}: non-finite value in row {bad}")
    if np.any(arr < 0):
        bad = int(np.argwhere(arr < 0)[0][0])
        raise ValueError(f"{name}: negative probability in row {bad}")
    return arr


def check_labels(y: np.ndarray, n: int, k: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as an int array of label indices in [0, k), length n, or raise ValueError."""
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected {n} label indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: expected integer label indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    out = (arr < 0) | (arr >= k)
    if np.any(out):
        i = int(np.argmax(out))
        raise ValueError(f"{name}[{i}] = {arr[i]} is outside the {k} labels")
    return arr


def predicted_sets(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The machine's label set per row of multi-label ``probs``, and its confidence.

    ``probs`` holds independent per-label probabilities (rows need not sum to one). A label is in
    the set when p >= 0.5; a row with no such label takes its single most probable label.
    People may answer "none of these apply" (``[]``), machines do not: an item far from every
    label (off-topic, out of distribution) has all p low and would be labeled "none" with
    high confidence though no person may ever have given that answer, so it goes to people. Confidence is the probability that the whole set is right when labels are
    independent, prod over labels of p (in the set) or 1 - p (out of it): for a set from the 0.5
    rule that is ``labelers.probs.confidence_of(probs, "multi_label")``, the score the
    suggestions and the cascade already use; for a fallback row it is lower, as it should be
    (its one label has p < 0.5).

    Returns (sets, confidence): an (n, K) boolean matrix and an (n,) float array.
    """
    P = check_probs(probs)
    if np.any(P > 1.0):
        bad = int(np.argwhere(P > 1.0)[0][0])
        raise ValueError(
            f"probs: probability above 1 in row {bad} (multi-label rows hold p per label)"
        )
    sets = P >= 0.5
    confidence = confidence_of(P, "multi_label")
    empty = np.flatnonzero(~sets.any(axis=1))
    if empty.size:
        top = P[empty].argmax(axis=1)
        sets[empty, top] = True
        chosen = np.where(sets[empty], P[empty], 1.0 - P[empty])
        confidence[empty] = np.prod(chosen, axis=1)
    return sets, confidence
