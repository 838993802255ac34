"""Acquisition scores: how much a human label on an item is expected to teach.

Every score is "higher = ask a person first". Uncertainty scores take an (n, k) probability
matrix from one labeler; disagreement scores take an (m, n, k) stack from m labelers.
FIELD-NOTES: margin was the strong baseline on text; entropy was worse than random on a
150-class set (its value is dominated by the long tail of small probabilities).
"""

from __future__ import annotations

import numpy as np

from labelloop.core.probs import check_probs, predicted_sets

_EPS = 1e-12


def _normalised(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    p = check_probs(probs, name)
    total = p.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError(f"{name}: row {int(np.argmax(total.ravel() <= 0))} sums to zero")
    return p / total


def margin_score(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top1 - p_top2): 1 when the two best labels tie, 0 when one has all the mass."""
    p = _normalised(probs)
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def label_set_uncertainty(probs: np.ndarray) -> np.ndarray:
    """Multi-label: 1 - the confidence of the predicted label set (the chance it is wrong).

    Rows hold independent per-label probabilities, so the single-label scores (which renormalise
    rows) misread them: a row of small probabilities looks certain to the margin, yet its set
    is a guess. The set and its confidence are the router's (``routing.predicted_sets``).
    """

    return 1.0 - predicted_sets(probs)[1]


def entropy_score(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = _normalised(probs)
    return -np.sum(p * np.log(np.clip(p, _EPS, 1.0)), axis=1)


def least_confidence_score(probs: np.ndarray) -> np.ndarray:
    """1 - p_top1."""
    return 1.0 - _normalised(probs).max(axis=1)


def _check_stack(labeler_probs: np.ndarray) -> np.ndarray:
    stack = np.asarray(labeler_probs, dtype=np.float64)
    if stack.ndim != 3:
        raise ValueError(
            "labeler_probs: expected a 3-D (labelers, items, labels) array, "
            f"got shape {stack.shape}"
        )
    m, n, k = stack.shape
    if m < 1:
        raise ValueError("labeler_probs: need at least one labeler")
    return np.stack([_normalised(stack[i], f"labeler_probs[{i}]") for i in range(m)])


def vote_entropy(labeler_probs: np.ndarray) -> np.ndarray:
    """Entropy of the labelers' hard votes (each labeler votes its top label)."""
    stack = _check_stack(labeler_probs)
    m, n, k = stack.shape
    votes = stack.argmax(axis=2)  # (m, n)
    counts = np.zeros((n, k))
    np.add.at(counts, (np.broadcast_to(np.arange(n), (m, n)), votes), 1.0)
    share = counts / m
    return -np.sum(share * np.log(np.clip(share, _EPS, 1.0)), axis=1)


def mean_kl_to_consensus(labeler_probs: np.ndarray) -> np.ndarray:
    """Mean over labelers of KL(labeler || consensus), consensus = mean of their probabilities."""
    stack = _check_stack(labeler_probs)
    consensus = stack.mean(axis=0, keepdims=True)
    log_ratio = np.log(np.clip(stack, _EPS, 1.0)) - np.log(np.clip(consensus, _EPS, 1.0))
    kl = np.sum(stack * log_ratio, axis=2)  # (m, n)
    return np.maximum(kl.mean(axis=0), 0.0)


UNCERTAINTY_SCORES = {
    "margin": margin_score,
    "entropy": entropy_score,
    "least_confidence": least_confidence_score,
}
