"""Semi-supervised suggestions: spread human labels to unlabeled items over the embedding space.

Both functions return an (n, K) probability matrix over *all* items, one column per class index
``0..K-1``. They are suggestions of their own labeler (``label_spreading`` / ``self_training``),
never human labels: rows of the human-labeled items are returned as the given label (one-hot),
unchanged. :func:`pseudo_labels` picks the unlabeled items confident enough to add to the
student's training data.

Memory. Label spreading uses scikit-learn's ``LabelSpreading(kernel="knn")``: a sparse kNN graph
(n x k entries) and sparse products, never a dense n x n matrix; the neighbour search runs in
chunks. 50,000 MiniLM vectors take ~(50k x 10) graph entries plus the (n, K) label matrix.
Time is dominated by the brute-force neighbour search, O(n^2 d).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.semi_supervised import LabelSpreading, SelfTrainingClassifier
from threadpoolctl import threadpool_limits

from labelloop.learn.selection import quiet_fit


def _check_inputs(
    X: np.ndarray, labeled_idx: np.ndarray, y: np.ndarray, n_classes: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (items x embedding dims), got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    idx = np.asarray(labeled_idx)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D class indices (single-label only), got shape {y.shape}")
    if idx.ndim != 1 or len(idx) != len(y):
        raise ValueError(f"labeled_idx has {idx.size} entries but y has {len(y)}; one each")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"labeled_idx must hold integer row indices, got dtype {idx.dtype}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class indices 0..K-1, got dtype {y.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(X)):
        raise ValueError(f"labeled_idx has entries outside 0..{len(X) - 1}")
    if len(np.unique(idx)) != len(idx):
        raise ValueError("labeled_idx repeats an item")
    k = int(n_classes) if n_classes is not None else int(y.max()) + 1 if y.size else 0
    if y.size and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"y has class indices outside 0..{k - 1}")
    if len(np.unique(y)) < 2:
        raise ValueError("need labeled items of at least two classes to spread labels")
    return X, idx.astype(np.int64), y.astype(np.int64), k


def _with_given_labels(
    P: np.ndarray, classes: np.ndarray, idx: np.ndarray, y: np.ndarray, k: int
) -> np.ndarray:
    """(n, k) matrix from model columns ``classes``; human-labeled rows set to their label."""
    out = np.zeros((len(P), k))
    out[:, classes] = P
    sums = out.sum(axis=1, keepdims=True)
    out = np.where(sums > 0, out / np.where(sums > 0, sums, 1.0), 1.0 / k)
    out[idx] = 0.0
    out[idx, y] = 1.0
    return out


def label_spreading_probs(
    X: np.ndarray,
    labeled_idx: np.ndarray,
    y: np.ndarray,
    k: int = 10,
    alpha: float = 0.2,
    n_classes: int | None = None,
    max_iter: int = 30,
    threads: int | None = 1,
) -> np.ndarray:
    """Label spreading (Zhou et al. 2004) over a kNN graph of the embeddings.

    ``labeled_idx`` are the rows of ``X`` with a human label, ``y`` their class indices;
    ``alpha`` is how much of its initial label a labeled node may give up to its neighbours.
    Returns (n, K) probabilities (K = ``n_classes`` or ``y.max() + 1``).
    """
    X, idx, y, n_cls = _check_inputs(X, labeled_idx, y, n_classes)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if not 1 <= k < len(X):
        raise ValueError(f"k must lie in 1..{len(X) - 1} (number of neighbours), got {k}")
    target = np.full(len(X), -1, dtype=np.int64)
    target[idx] = y
    model = LabelSpreading(kernel="knn", n_neighbors=k, alpha=alpha, max_iter=max_iter, n_jobs=1)
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="max_iter=.* was reached")
        warnings.filterwarnings("ignore", category=RuntimeWarning)  # isolated nodes: 0/0
        model.fit(X, target)
    P = np.nan_to_num(model.label_distributions_, nan=0.0)
    return _with_given_labels(P, model.classes_.astype(np.int64), idx, y, n_cls)


def self_training_probs(
    X: np.ndarray,
    labeled_idx: np.ndarray,
    y: np.ndarray,
    threshold: float = 0.9,
    max_iter: int = 5,
    n_classes: int | None = None,
    estimator: BaseEstimator | None = None,
    threads: int | None = 1,
) -> np.ndarray:
    """Self-training: the student labels its confident unlabeled items and refits, repeatedly.

    scikit-learn's SelfTrainingClassifier around the student (LogisticRegression C=100 unless
    ``estimator`` is given); pseudo-labels need probability >= ``threshold``. Human labels are
    never changed: their rows come back one-hot on the given label.
    """
    X, idx, y, n_cls = _check_inputs(X, labeled_idx, y, n_classes)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    base = estimator if estimator is not None else LogisticRegression(C=100.0, max_iter=1000)
    target = np.full(len(X), -1, dtype=np.int64)
    target[idx] = y
    model = SelfTrainingClassifier(base, threshold=threshold, max_iter=max_iter)
    with quiet_fit(threads):
        model.fit(X, target)
        P = model.predict_proba(X)
    return _with_given_labels(P, model.classes_.astype(np.int64), idx, y, n_cls)


def pseudo_labels(
    probs: np.ndarray, labeled_idx: np.ndarray, threshold: float = 0.9
) -> tuple[np.ndarray, np.ndarray]:
    """Unlabeled items whose top probability is >= ``threshold``: (row indices, class indices)."""
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2:
        raise ValueError(f"probs must be 2-D (items x classes), got shape {P.shape}")
    free = np.ones(len(P), dtype=bool)
    free[np.asarray(labeled_idx, dtype=np.int64)] = False
    conf = P.max(axis=1)
    rows = np.flatnonzero(free & (conf >= threshold))
    return rows, P[rows].argmax(axis=1)
