"""Combine several acquisition scores into one review priority."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from scipy.stats import rankdata

Normalisation = Literal["rank", "minmax"]


def normalise_scores(scores: np.ndarray, how: Normalisation = "rank") -> np.ndarray:
    """Map scores onto [0, 1], order kept. "rank": average rank / (n - 1), robust to outliers
    and to scores on different scales; "minmax": (s - min) / (max - min). Constant -> 0.5."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores: expected a 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores: non-finite value at index {int(np.argmax(~np.isfinite(s)))}")
    n = len(s)
    if n == 0:
        return s
    if np.ptp(s) == 0:
        return np.full(n, 0.5)
    if how == "rank":
        return (rankdata(s, method="average") - 1.0) / (n - 1)
    if how == "minmax":
        return (s - s.min()) / np.ptp(s)
    raise ValueError(f"normalisation {how!r}: expected 'rank' or 'minmax'")


def combined_priority(
    scores: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    normalisation: Normalisation = "rank",
) -> np.ndarray:
    """Weighted sum of normalised scores (higher = review first); weights need not sum to 1.

    Every weighted score must be present and of one length; scores without a weight are ignored.
    """
    if not weights:
        raise ValueError("weights: need at least one weighted score")
    missing = [name for name in weights if name not in scores]
    if missing:
        raise ValueError(f"weights name scores that are missing: {missing}; got {list(scores)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError(f"weights: expected non-negative weights, got {dict(weights)}")
    lengths = {name: np.asarray(scores[name]).shape for name in weights}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"scores: lengths differ: {lengths}")
    n = next(iter(lengths.values()))
    total = np.zeros(n)
    for name, w in weights.items():
        if w:
            total += w * normalise_scores(scores[name], normalisation)
    return total


def top_k(
    priority: np.ndarray, k: int, exclude: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """Indices of the k highest priorities, highest first, skipping ``exclude`` (ties: lower
    index first)."""
    p = np.asarray(priority, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"priority: expected a 1-D array, got shape {p.shape}")
    mask = np.ones(len(p), dtype=bool)
    if exclude is not None:
        mask[np.asarray(exclude, dtype=np.int64)] = False
    idx = np.flatnonzero(mask)
    order = np.argsort(-p[idx], kind="stable")
    return idx[order[: max(k, 0)]]
