"""Find likely label errors with confident learning (Northcutt, Jiang & Chuang, JAIR 2021).

Given each example's label and out-of-fold predicted probabilities, estimate how many examples
of given class i really belong to class j (the confident joint), then flag, for each such
(i, j), that many examples of class i with the largest margin p_j - p_i ("prune by noise
rate"). Written from the paper; cleanlab (AGPL) is not used.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_predict

RankBy = Literal["self_confidence", "normalized_margin"]


def _validate(labels: Any, pred_probs: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred_probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(
            f"{where}: pred_probs must be n_examples x n_classes (>= 2), got shape {p.shape}"
        )
    if y.ndim != 1 or len(y) != len(p):
        raise ValueError(
            f"{where}: labels must be 1-D with one entry per row of pred_probs, "
            f"got {y.shape} for pred_probs {p.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"{where}: labels must be integer class indices 0..{p.shape[1] - 1}; "
            "encode names first (e.g. with np.unique(..., return_inverse=True))"
        )
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(
            f"{where}: labels must lie in 0..{p.shape[1] - 1}, found {y.min()}..{y.max()}"
        )
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError(f"{where}: pred_probs must be finite probabilities in [0, 1]")
    bad_rows = np.flatnonzero(np.abs(p.sum(axis=1) - 1.0) > 1e-3)
    if len(bad_rows):
        raise ValueError(
            f"{where}: pred_probs rows must sum to 1; row {bad_rows[0]} sums to "
            f"{p[bad_rows[0]].sum():.4f}"
        )
    return y.astype(np.int64), p


def per_class_thresholds(labels: Any, pred_probs: Any) -> np.ndarray:
    """Mean self-confidence per class: t_j = mean of p_j over examples labelled j.

    A class nobody is labelled with gets +inf: no example can be confidently counted in it.
    """
    y, p = _validate(labels, pred_probs, "per_class_thresholds")
    k = p.shape[1]
    sums = np.bincount(y, weights=p[np.arange(len(y)), y], minlength=k)
    counts = np.bincount(y, minlength=k)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def confident_joint(
    labels: Any,
    pred_probs: Any,
    thresholds: np.ndarray | None = None,
    calibrate: bool = True,
) -> np.ndarray:
    """Counts C[i, j]: examples labelled i that are confidently of class j.

    An example is counted in the class j with the highest p_j among those with
    ``p_j >= thresholds[j]``; an example above no threshold is not counted. With ``calibrate``,
    each row is rescaled to sum to the number of examples labelled i (floats).
    """
    y, p = _validate(labels, pred_probs, "confident_joint")
    k = p.shape[1]
    t = per_class_thresholds(y, p) if thresholds is None else np.asarray(thresholds, float)
    above = p >= t[None, :]
    masked = np.where(above, p, -1.0)
    true_class = masked.argmax(axis=1)
    counted = above.any(axis=1)
    cj = np.zeros((k, k), dtype=np.float64)
    np.add.at(cj, (y[counted], true_class[counted]), 1.0)
    if not calibrate:
        return cj
    label_counts = np.bincount(y, minlength=k).astype(np.float64)
    row_sums = cj.sum(axis=1)
    empty = (row_sums == 0) & (label_counts > 0)
    cj[empty, empty] = 1.0  # nothing confident in the row: assume the labels are right
    row_sums = cj.sum(axis=1)
    return cj / np.maximum(row_sums, 1e-12)[:, None] * label_counts[:, None]


def find_label_issues(
    labels: Any,
    pred_probs: Any,
    rank_by: RankBy = "self_confidence",
    min_examples_per_class: int = 1,
    class_names: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Flag examples whose given label is probably wrong.

    ``labels``: integer class per example; ``pred_probs``: out-of-fold probabilities (see
    :func:`out_of_fold_pred_probs`). Returns one row per flagged example, most suspicious
    first: ``index`` (position in the input), ``given``, ``suggested``, ``p_given``,
    ``p_suggested``, ``score`` (lower = more suspicious; self-confidence, or the normalized
    margin p_given - max other p) and ``reason``. Examples the model agrees with are never
    flagged, and each class keeps at least ``min_examples_per_class`` examples.
    """
    y, p = _validate(labels, pred_probs, "find_label_issues")
    if rank_by not in ("self_confidence", "normalized_margin"):
        raise ValueError(
            f"find_label_issues: rank_by must be 'self_confidence' or "
            f"'normalized_margin', got {rank_by!r}"
        )
    n, k = p.shape
    names = list(range(k)) if class_names is None else list(class_names)
    if len(names) != k:
        raise ValueError(f"find_label_issues: {len(names)} class_names for {k} classes")

    prune_counts = np.rint(confident_joint(y, p, calibrate=True)).astype(np.int64)
    np.fill_diagonal(prune_counts, 0)
    flagged = np.zeros(n, dtype=bool)
    for given in range(k):
        members = np.flatnonzero(y == given)
        budget = len(members) - min_examples_per_class
        wanted = prune_counts[given]
        if budget <= 0 or wanted.sum() == 0:
            continue
        if wanted.sum() > budget:  # keep at least min_examples_per_class of this class
            wanted = np.floor(wanted * budget / wanted.sum()).astype(np.int64)
        for true in np.flatnonzero(wanted):
            margin = p[members, true] - p[members, given]
            top = members[np.argsort(-margin, kind="stable")[: wanted[true]]]
            flagged[top] = True
    flagged &= p.argmax(axis=1) != y  # the model agrees with the label: not an issue

    idx = np.flatnonzero(flagged)
    p_given = p[idx, y[idx]]
    others = p[idx].copy()
    others[np.arange(len(idx)), y[idx]] = -1.0
    suggested = others.argmax(axis=1)
    p_suggested = others[np.arange(len(idx)), suggested]
    score = p_given if rank_by == "self_confidence" else p_given - p_suggested
    out = pd.DataFrame(
        {
            "index": idx,
            "given": [names[i] for i in y[idx]],
            "suggested": [names[i] for i in suggested],
            "p_given": p_given,
            "p_suggested": p_suggested,
            "score": score,
        }
    )
    out["reason"] = [
        f"given {g}, model says {s} with p={ps:.2f}"
        for g, s, ps in zip(out["given"], out["suggested"], out["p_suggested"], strict=True)
    ]
    return out.sort_values(["score", "index"], ignore_index=True)


def out_of_fold_pred_probs(
    estimator: Any,
    X: Any,
    y: Any,
    n_splits: int = 5,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold ``predict_proba`` for any scikit-learn classifier, stratified.

    Returns ``(pred_probs, classes)``: pred_probs has one column per class of ``y`` in the
    order of ``classes`` (sorted), so ``np.searchsorted(classes, y)`` gives the integer labels
    :func:`find_label_issues` wants. Rare classes: the number of folds is capped by the
    number of examples; a class with fewer examples than folds is missing from some training
    folds, and its column there is 0 (such examples tend to be flagged: look at them by hand).
    """
    if not hasattr(estimator, "predict_proba"):
        raise TypeError(f"out_of_fold_pred_probs: {type(estimator).__name__} has no predict_proba")
    classes, y_enc = np.unique(np.asarray(y), return_inverse=True)
    if len(classes) < 2:
        raise ValueError("out_of_fold_pred_probs: y needs at least two classes")
    if n_splits < 2:
        raise ValueError(f"out_of_fold_pred_probs: n_splits must be >= 2, got {n_splits}")
    folds = min(n_splits, len(y_enc))
    if len(y_enc) < 2 * 2:
        raise ValueError(f"out_of_fold_pred_probs: too few examples ({len(y_enc)})")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        # Expected with rare classes; handled by cross_val_predict (missing columns are 0).
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", message=".*Number of classes in training fold.*")
        probs = cross_val_predict(clone(estimator), X, y_enc, cv=cv, method="predict_proba")
    return np.asarray(probs, dtype=np.float64), classes


# --- rechecks that pay: the chance a label is wrong, against the cost of asking again ----------


def label_error_probability(
    labels: Any, pred_probs: Any, reviewer_accuracy: float | np.ndarray = 0.95
) -> np.ndarray:
    """Posterior probability that each given label is wrong.

    ``pred_probs``: calibrated out-of-fold probabilities of the true class (the model's view,
    before seeing the given label). The reviewer gives the true label with probability
    ``reviewer_accuracy`` (a number, or one per example: measured on gold, overlap or audits
    where known; 0.95 is the prior) and any other label uniformly otherwise. By Bayes:

        P(right | given y) = a p_y / (a p_y + (1 - a)(1 - p_y) / (K - 1))

    A confident model disagreeing with a careful reviewer is not enough on its own: with
    a = 0.95 and K = 2 the model must give the given label below 0.05 for the label to be
    more likely wrong than right.
    """
    y, p = _validate(labels, pred_probs, "label_error_probability")
    k = p.shape[1]
    a = np.broadcast_to(np.asarray(reviewer_accuracy, dtype=np.float64), y.shape)
    if np.any((a <= 0) | (a > 1)):
        raise ValueError("label_error_probability: reviewer_accuracy must lie in (0, 1]")
    p_given = p[np.arange(len(y)), y]
    right = a * p_given
    wrong = (1 - a) * (1 - p_given) / (k - 1)
    total = right + wrong
    return np.where(total > 0, wrong / np.where(total > 0, total, 1.0), 0.0)


def choose_rechecks(
    p_wrong: Any, cost_ratio: float = 0.5, max_count: int | None = None
) -> np.ndarray:
    """Indices of the labels worth a second review, most likely wrong first.

    A second review costs ``cost_ratio`` of what fixing a wrong label is worth, so it pays
    when P(wrong) > cost_ratio. ``max_count`` caps how many (the project's recheck budget)."""
    pw = np.asarray(p_wrong, dtype=np.float64)
    if pw.ndim != 1:
        raise ValueError(f"choose_rechecks: p_wrong must be 1-D, got shape {pw.shape}")
    if not 0.0 < cost_ratio < 1.0:
        raise ValueError(f"choose_rechecks: cost_ratio={cost_ratio}, expected (0, 1)")
    idx = np.flatnonzero(pw > cost_ratio)
    idx = idx[np.argsort(-pw[idx], kind="stable")]
    if max_count is not None:
        idx = idx[: max(0, int(max_count))]
    return idx


def reviewer_accuracy_estimate(
    gold_right: int,
    gold_answered: int,
    p_given: Sequence[float] | np.ndarray,
    changed: Sequence[bool] | np.ndarray,
    k: int,
    prior_mean: float = 0.95,
    prior_weight: float = 20.0,
) -> float:
    """People's accuracy: the posterior mean from a Beta prior (``prior_mean`` as if it were
    ``prior_weight`` answers), answers on gold items (``gold_right`` of ``gold_answered``), and
    answered rechecks.

    A recheck is a label the model doubted: ``p_given`` is the held-out probability the model
    gave the label people gave, and ``changed`` whether the second person answered otherwise.
    With accuracy a, that label was wrong with probability q(a) (``label_error_probability``),
    so each recheck is a Bernoulli(q(a)) draw and its outcome says something about a even
    though rechecks are no random sample: doubted labels that all hold up mean people are
    better than assumed, doubted labels that are nearly all overturned mean they are worse. The
    second person is taken to be right. With rechecks the mean is taken on a grid of a in
    [0.5, 0.9995]; with gold answers alone it is the Beta posterior's mean in closed form."""
    p = np.clip(np.asarray(p_given, dtype=np.float64), 1e-6, 1 - 1e-6)
    c = np.asarray(changed, dtype=bool)
    if p.shape != c.shape:
        raise ValueError(f"p_given and changed: {p.shape} against {c.shape}")
    if k < 2 or not 0.0 < prior_mean < 1.0 or prior_weight <= 0:
        raise ValueError(f"k={k}, prior_mean={prior_mean}, prior_weight={prior_weight}")
    if not 0 <= gold_right <= gold_answered:
        raise ValueError(f"gold: {gold_right} right of {gold_answered}")
    if not len(p):  # gold answers alone: the Beta posterior's mean, exactly
        return (prior_mean * prior_weight + gold_right) / (prior_weight + gold_answered)
    a = np.linspace(0.5, 0.9995, 1000)[:, None]
    log_post = (prior_mean * prior_weight + gold_right - 1) * np.log(a[:, 0]) + (
        (1 - prior_mean) * prior_weight + gold_answered - gold_right - 1
    ) * np.log1p(-a[:, 0])
    wrong = (1 - a) * (1 - p) / (k - 1)
    q = wrong / (wrong + a * p)
    log_post = log_post + np.where(c, np.log(q), np.log1p(-q)).sum(axis=1)
    weight = np.exp(log_post - log_post.max())
    return float((weight * a[:, 0]).sum() / weight.sum())
