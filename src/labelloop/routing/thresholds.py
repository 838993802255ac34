"""Per-label confidence thresholds that meet a precision target with stated confidence.

For each label, among human-labeled items the labeler predicted as that label, the threshold is
the lowest confidence ``t`` such that the items with confidence >= t number at least
``min_support`` and the one-sided lower confidence bound (level 1 - alpha) of their precision is
>= the target. A point estimate is not enough: on a 200-item slice it overshot a 0.95 target
(realised 0.93-0.97, FIELD-NOTES). A label with too few labeled items auto-accepts nothing
(threshold = inf).

Multi-label tasks (``fit_set_threshold``) get one threshold for the whole item instead: the
machine's answer is a set of labels, it is right only when the set equals the person's, and the
same lower bound is put on the precision of whole sets.

Caveat: the bound holds for one threshold fixed in advance; scanning many and keeping the lowest
that passes makes it somewhat optimistic. The audit sample (``router``) checks it afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from labelloop.core.probs import check_labels, check_probs, predicted_sets
from labelloop.core.stats import (  # noqa: F401 - re-exported: routing.precision_lower_bound
    BoundMethod,
    precision_lower_bound,
    proportion_interval,
)


@dataclass(frozen=True)
class LabelThreshold:
    """The auto-accept rule for one label and the evidence behind it.

    ``support``, ``precision`` and ``lower_bound`` describe the human-labeled items predicted as
    this label with confidence >= ``threshold`` (or, when threshold is inf, all items predicted
    as this label). ``reason`` says why a label auto-accepts nothing ("" when it does).
    """

    label: str
    threshold: float
    support: int
    precision: float
    lower_bound: float
    reason: str = ""

    @property
    def auto_accepts(self) -> bool:
        return math.isfinite(self.threshold)


@dataclass(frozen=True)
class ThresholdSet:
    """Per-label thresholds and the settings they were fit with."""

    labels: tuple[LabelThreshold, ...]
    target: float
    alpha: float
    method: str
    min_support: int

    @property
    def values(self) -> np.ndarray:
        """Thresholds as a float array in label order (inf where a label auto-accepts nothing)."""
        return np.array([t.threshold for t in self.labels], dtype=np.float64)

    @property
    def label_names(self) -> list[str]:
        return [t.label for t in self.labels]

    def __getitem__(self, label: str) -> LabelThreshold:
        for t in self.labels:
            if t.label == label:
                return t
        raise KeyError(f"no threshold for label {label!r}; labels: {self.label_names}")


def _fit_one(
    conf: np.ndarray,
    correct: np.ndarray,
    target: float,
    alpha: float,
    method: BoundMethod,
    min_support: int,
    items: str = "labeled items predicted as this label",
) -> tuple[float, int, float, float, str]:
    n_all = len(conf)
    if n_all == 0:
        return math.inf, 0, math.nan, 0.0, f"no {items}"
    order = np.argsort(-conf, kind="stable")
    c, ok = conf[order], correct[order]
    n_at = np.arange(1, n_all + 1)
    k_at = np.cumsum(ok)
    # A threshold equal to c[i] admits every item tied with it: keep the last index of each tie.
    last_of_tie = np.r_[c[1:] != c[:-1], True]
    lows = np.asarray(precision_lower_bound(k_at, n_at, alpha, method))
    passing = last_of_tie & (n_at >= min_support) & (lows >= target)
    if not np.any(passing):
        prec_all = float(k_at[-1] / n_all)
        low_all = float(lows[-1])
        why = (
            f"only {n_all} {items} (< min_support={min_support})"
            if n_all < min_support
            else f"no threshold reaches a {1 - alpha:.0%} lower bound >= {target}"
        )
        return math.inf, n_all, prec_all, low_all, why
    i = int(np.flatnonzero(passing)[-1])
    return float(c[i]), int(n_at[i]), float(k_at[i] / n_at[i]), float(lows[i]), ""


def fit_thresholds(
    probs: np.ndarray,
    y: np.ndarray,
    target: float = 0.95,
    alpha: float = 0.05,
    method: BoundMethod = "wilson",
    min_support: int = 30,
    label_names: Sequence[str] | None = None,
) -> ThresholdSet:
    """Per-label thresholds on (calibrated) ``probs`` of human-labeled items with true labels ``y``.

    Apply the result to probabilities transformed by the same calibrator.
    """
    probs = check_probs(probs)
    n, k = probs.shape
    y = check_labels(y, n, k)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target={target}: expected a precision in (0, 1]")
    if min_support < 1:
        raise ValueError(f"min_support={min_support}: expected at least 1")
    names = list(label_names) if label_names is not None else [str(j) for j in range(k)]
    if len(names) != k:
        raise ValueError(f"label_names: {len(names)} names for {k} probability columns")
    pred = probs.argmax(axis=1)
    conf = probs[np.arange(n), pred]
    correct = pred == y
    out = []
    for j in range(k):
        mask = pred == j
        t, support, prec, low, why = _fit_one(
            conf[mask], correct[mask], target, alpha, method, min_support
        )
        out.append(LabelThreshold(names[j], t, support, prec, low, why))
    return ThresholdSet(tuple(out), target, alpha, method, min_support)


# --- multi-label: one threshold on whole label sets ---------------------------------------------

SET_SCOPE = "whole label set"


@dataclass(frozen=True)
class SetThreshold:
    """The auto-accept rule of a multi-label task: one confidence threshold for whole sets.

    An item is auto-accepted when the confidence of its predicted set (``predicted_sets``) is
    >= ``threshold``. ``support``, ``precision`` and ``lower_bound`` describe the human-labeled
    items with confidence >= ``threshold`` (all of them when it is inf), where an item counts as
    right only if its predicted set equals the person's set exactly. ``reason`` says why nothing
    is auto-accepted ("" when something is).
    """

    threshold: float
    support: int
    precision: float
    lower_bound: float
    target: float
    alpha: float
    method: str
    min_support: int
    reason: str = ""

    @property
    def auto_accepts(self) -> bool:
        return math.isfinite(self.threshold)

    def as_row(self) -> dict[str, object]:
        """The fields a per-label threshold row has (``LabelThreshold``), for reports and the
        CLI table, with ``label`` naming the scope: one rule for the whole set."""
        return {
            "label": SET_SCOPE,
            "threshold": self.threshold,
            "support": self.support,
            "precision": self.precision,
            "lower_bound": self.lower_bound,
            "reason": self.reason,
            "scope": "label_set",
        }


def check_label_matrix(Y: np.ndarray, n: int, k: int, name: str = "Y") -> np.ndarray:
    """``Y`` as an (n, k) boolean matrix of human label sets, or raise ValueError."""
    arr = np.asarray(Y)
    if arr.shape != (n, k):
        raise ValueError(f"{name}: expected an ({n}, {k}) 0/1 matrix, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name}: a multi-label label matrix must hold only 0 and 1")
    return arr.astype(bool)


def fit_set_threshold(
    probs: np.ndarray,
    Y: np.ndarray,
    target: float = 0.95,
    alpha: float = 0.05,
    method: BoundMethod = "wilson",
    min_support: int = 30,
) -> SetThreshold:
    """One item-level threshold for a multi-label task, on held-out ``probs`` of human-labeled
    items whose label sets are the rows of the 0/1 matrix ``Y``.

    Why one threshold and whole sets: an auto-accepted item gets its whole predicted set as
    its final label, so the precision that matters is that of sets, and a set with one label
    wrong is a wrong label. Per-label thresholds would bound each yes/no decision but not the
    set. The rule is the single-label one (``fit_thresholds``) applied to all items at once:
    the lowest confidence whose items (at least ``min_support``) have a one-sided 1 - alpha
    lower bound on set precision >= ``target``; inf (auto-accept nothing) when none does.
    Calibration is not needed for the bound to hold: it is computed on the same kind of
    probabilities the threshold is applied to.
    """
    P = check_probs(probs)
    n, k = P.shape
    truth = check_label_matrix(Y, n, k)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target={target}: expected a precision in (0, 1]")
    if min_support < 1:
        raise ValueError(f"min_support={min_support}: expected at least 1")
    sets, conf = predicted_sets(P)
    correct = (sets == truth).all(axis=1)
    t, support, prec, low, why = _fit_one(
        conf, correct, target, alpha, method, min_support, items="labeled items"
    )
    return SetThreshold(t, support, prec, low, target, alpha, method, min_support, why)
