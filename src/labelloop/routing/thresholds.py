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
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from labelloop.core.probs import check_labels, check_probs, predicted_sets
from labelloop.core.stats import (  # noqa: F401 - re-exported: routing.precision_lower_bound
    BoundMethod,
    precision_lower_bound,
    proportion_interval,
)


def _level(alpha: float) -> str:
    """A confidence level as people write it: "95%", "99.9%"."""
    return f"{100 * (1 - alpha):.3g}%"


def class_alpha(alpha: float, n_labels: int, guarantee: str = "each") -> float:
    """The error level each label's bound is fit at: ``alpha`` when each label is to meet the
    target on its own ("each": of many labels that auto-accept, about ``alpha`` of them may
    fall short by chance), ``alpha / n_labels`` when all of them are to meet it at once ("all",
    Bonferroni: a 77-intent taxonomy at 95% then fits each bound at 99.94%)."""
    if guarantee == "each":
        return alpha
    if guarantee == "all":
        return alpha / max(n_labels, 1)
    raise ValueError(f"guarantee={guarantee!r}: expected 'each' or 'all'")


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
            else f"no threshold reaches a {_level(alpha)} lower bound >= {target}"
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


# --- thresholds from a random sample, with per-class shrinkage ----------------------------------

SHRUNK_METHOD = "beta-binomial-eb"


def effective_counts(correct: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(correct, n) as effective counts of a weighted sample: the Horvitz-Thompson share right
    times the Kish effective sample size (sum w)^2 / sum w^2. Equal weights give the plain
    counts; unequal weights give fewer effective items, so a bound on them stays honest."""
    w = np.asarray(weights, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    if w.shape != ok.shape or w.ndim != 1:
        raise ValueError(
            f"correct, weights: expected 1-D arrays of one length, got {ok.shape}, {w.shape}"
        )
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights: expected finite weights >= 0")
    total = float(w.sum())
    if total == 0.0:
        return 0.0, 0.0
    n_eff = total * total / float((w * w).sum())
    return float((w * ok).sum() / total * n_eff), n_eff


def weighted_precision_bound(
    correct: np.ndarray,
    weights: np.ndarray | None = None,
    alpha: float = 0.05,
    method: BoundMethod = "wilson",
) -> tuple[float, float, float]:
    """(estimate, one-sided 1 - alpha lower bound, effective n) of the precision of a sample
    whose item i was drawn with probability pi_i (``weights`` = 1 / pi_i; None: equal)."""
    ok = np.asarray(correct, dtype=np.float64)
    w = np.ones_like(ok) if weights is None else np.asarray(weights, dtype=np.float64)
    k_eff, n_eff = effective_counts(ok, w)
    if n_eff == 0.0:
        return math.nan, 0.0, 0.0
    low = float(precision_lower_bound(min(k_eff, n_eff), n_eff, alpha, method))
    return k_eff / n_eff, low, n_eff


def beta_prior_strength(k: np.ndarray, n: np.ndarray, max_strength: float) -> float:
    """Prior strength (a + b) of a Beta prior over class precisions, by the method of moments.

    The n-weighted spread of the classes' precisions minus the spread binomial noise alone would
    give estimates the true spread tau^2; strength = m(1 - m) / tau^2 - 1. Classes that agree
    (tau^2 <= 0) give ``max_strength``: the cap says how many items' worth of evidence a class
    may borrow from the others at most."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    seen = n > 0
    total = float(n[seen].sum())
    if seen.sum() < 2 or total <= 0:
        return float(max_strength)
    m = float(k[seen].sum() / total)
    p = k[seen] / n[seen]
    spread = float((n[seen] * (p - m) ** 2).sum() / total)
    noise = m * (1 - m) * seen.sum() / total
    tau2 = spread - noise
    if tau2 <= 0 or m * (1 - m) == 0:
        return float(max_strength)
    return float(np.clip(m * (1 - m) / tau2 - 1.0, 0.0, max_strength))


def shrunk_lower_bounds(
    k: np.ndarray,
    n: np.ndarray,
    alpha: float = 0.05,
    max_strength: float = 20.0,
    min_prior_wrong: float = 0.0,
) -> np.ndarray:
    """Per class, the alpha quantile of its precision's posterior under an empirical-Bayes
    Beta prior: each class's (effective) ``k`` right of ``n`` update a prior centred on the
    other classes' pooled precision (leave-one-out, so a class's own items are not counted
    twice; half an item right and half wrong keep the mean off 0 and 1), of the strength the
    classes' spread allows (``beta_prior_strength``, at most ``max_strength``). A class with few
    items gets close to the others' precision, discounted by the cap; one with many is judged
    on its own."""
    from scipy.stats import beta as beta_dist

    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    strength = beta_prior_strength(k, n, max_strength)
    rest_k = k.sum() - k
    rest_n = n.sum() - n
    m = (rest_k + 0.5) / (rest_n + 1.0)
    # At least one item's worth of prior, so a class with no strength to borrow (max_strength
    # 0) does not prove much with a handful of right answers.
    strength = max(strength, 1.0)
    a = strength * m + k
    b = np.maximum(strength * (1 - m), min_prior_wrong) + (n - k)
    return np.asarray(beta_dist.ppf(alpha, a, b))


def candidate_cuts(conf: np.ndarray, max_cuts: int = 256) -> np.ndarray:
    """Distinct confidences to try as thresholds, ascending; at most ``max_cuts`` (quantiles)."""
    cuts = np.unique(np.asarray(conf, dtype=np.float64))
    if len(cuts) > max_cuts:
        cuts = np.unique(np.quantile(cuts, np.linspace(0.0, 1.0, max_cuts), method="lower"))
    return cuts


def fit_sample_thresholds(
    probs: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    target: float = 0.95,
    alpha: float = 0.05,
    max_strength: float = 20.0,
    label_names: Sequence[str] | None = None,
    max_cuts: int = 256,
    scan: ScanRule = "first-run",
    min_prior_wrong: float = 0.0,
    reviewer_accuracy: float = 1.0,
) -> ThresholdSet:
    """Per-label thresholds from a random sample of the pool (``probs`` of sampled items, their
    human labels ``y``, ``weights`` 1 / inclusion probability), with per-class shrinkage.

    For each candidate cut t and each label j, the sampled items predicted j with confidence
    >= t give weighted effective counts (``effective_counts``); label j's bound at t is the
    lower quantile of its empirical-Bayes posterior (``shrunk_lower_bounds``) with the prior
    taken from the other labels at the same cut. Label j's threshold is the cut ``passing_cut``
    picks among those whose bound is >= ``target`` (``scan``); inf when none is. So every
    label meets the target on its own evidence plus what it may borrow, rare labels included,
    and a label with no sampled item above a cut can still pass it when the others are precise
    there (the audits check it; ``min_prior_wrong`` limits it).

    Why a sample: the estimate must represent the items machines will label; labels people
    gave to actively chosen (hard) items do not (see ``routing.sample``).

    ``reviewer_accuracy``: how often people's labels are right, at most (an upper bound,
    measured on gold items; 1 when unmeasured). Agreement with people understates the
    machine's precision when people err; ``precision_through_noise`` corrects the bounds.
    """
    probs, y, w, names = _checked(probs, y, weights, target, label_names)
    n, k = probs.shape
    if n == 0:
        return _nothing_labeled(names, target, alpha, SHRUNK_METHOD)
    cuts, lows, k_eff, n_eff = sample_bounds_by_cut(
        probs, y, w, alpha, max_strength, max_cuts, min_prior_wrong
    )
    lows = precision_through_noise(lows, reviewer_accuracy, k)
    out = []
    for j in range(k):
        g = passing_cut(lows[:, j], target, scan)
        support = int(round(n_eff[g if g >= 0 else -1, j]))
        if g >= 0:
            prec = float(k_eff[g, j] / n_eff[g, j]) if n_eff[g, j] > 0 else math.nan
            out.append(LabelThreshold(names[j], float(cuts[g]), support, prec, float(lows[g, j])))
        else:
            prec = float(k_eff[-1, j] / n_eff[-1, j]) if n_eff[-1, j] > 0 else math.nan
            best = float(lows[:, j].max())
            why = f"no cut reaches a {_level(alpha)} posterior lower bound >= {target} (best {best:.3f})"
            out.append(LabelThreshold(names[j], math.inf, support, prec, best, why))
    return ThresholdSet(tuple(out), target, alpha, SHRUNK_METHOD, 0)


def _checked(
    probs: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    target: float,
    label_names: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The threshold fits' common inputs checked: (probs, labels, weights, label names)."""
    probs = check_probs(probs)
    n, k = probs.shape
    y = check_labels(y, n, k)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target={target}: expected a precision in (0, 1]")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"weights: expected {n} finite weights >= 0")
    names = list(label_names) if label_names is not None else [str(j) for j in range(k)]
    if len(names) != k:
        raise ValueError(f"label_names: {len(names)} names for {k} probability columns")
    return probs, y, w, names


def _nothing_labeled(names: list[str], target: float, alpha: float, method: str) -> ThresholdSet:
    empty = LabelThreshold("", math.inf, 0, math.nan, 0.0, "no sampled items labeled yet")
    return ThresholdSet(tuple(replace(empty, label=n) for n in names), target, alpha, method, 0)


def precision_through_noise(agreement: np.ndarray, accuracy: float, k: int) -> np.ndarray:
    """The machine's precision given its ``agreement`` with people who are right with
    probability ``accuracy`` and, when wrong, pick any of the other ``k - 1`` labels alike:
    agreement = p * a + (1 - p) * (1 - a) / (k - 1), solved for p, clipped to [0, 1].

    The map rises with agreement, so a lower bound on agreement gives one on precision. It
    falls as ``accuracy`` rises: pass an upper bound on people's accuracy and the result stays
    a lower bound (with ``accuracy`` 1, unmeasured, nothing changes)."""
    if not 0.0 < accuracy <= 1.0:
        raise ValueError(f"accuracy={accuracy}: expected a share in (0, 1]")
    if accuracy >= 1.0 or k < 2:
        return np.asarray(agreement, dtype=np.float64)
    chance = (1.0 - accuracy) / (k - 1)
    if accuracy <= chance:
        raise ValueError(f"accuracy={accuracy}: people no better than chance over {k} labels")
    return np.clip((np.asarray(agreement, dtype=np.float64) - chance) / (accuracy - chance), 0, 1)


def sample_bounds_by_cut(
    probs: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    alpha: float,
    max_strength: float,
    max_cuts: int = 256,
    min_prior_wrong: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cuts ascending, and per cut and label: shrunk lower bound, effective right, effective n)
    of the sampled items predicted as each label with confidence >= the cut."""
    n, k = probs.shape
    pred = probs.argmax(axis=1)
    conf = probs[np.arange(n), pred]
    correct = (pred == y).astype(np.float64)
    w = weights
    cuts = candidate_cuts(conf, max_cuts)
    lows = np.zeros((len(cuts), k))
    k_eff = np.zeros((len(cuts), k))
    n_eff = np.zeros((len(cuts), k))
    for g, t in enumerate(cuts):
        above = conf >= t
        sw = np.bincount(pred[above], weights=w[above], minlength=k)
        sw2 = np.bincount(pred[above], weights=w[above] ** 2, minlength=k)
        swc = np.bincount(pred[above], weights=(w * correct)[above], minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            n_eff[g] = np.where(sw2 > 0, sw * sw / np.where(sw2 > 0, sw2, 1.0), 0.0)
            k_eff[g] = np.where(sw > 0, swc / np.where(sw > 0, sw, 1.0), 0.0) * n_eff[g]
        lows[g] = shrunk_lower_bounds(k_eff[g], n_eff[g], alpha, max_strength, min_prior_wrong)
    return cuts, lows, k_eff, n_eff


ScanRule = Literal["lowest", "first-run"]


def passing_cut(lows: np.ndarray, target: float, scan: ScanRule = "first-run") -> int:
    """Index of the chosen cut among ascending cuts with bounds ``lows``, or -1 when none passes.

    "lowest": the lowest cut whose bound reaches ``target``. Trying hundreds of cuts and keeping
    the lowest that passes is optimistic: one lucky dip of wrong answers below a failing stretch
    passes. "first-run": scanning from the highest cut down, the lowest cut of the first run of
    passing cuts; the scan stops at the first failure after a pass (a fixed-sequence test, as
    in Learn-then-Test, started where the evidence first suffices)."""
    if scan not in ("lowest", "first-run"):
        raise ValueError(f"scan={scan!r}: expected 'lowest' or 'first-run'")
    ok = np.asarray(lows) >= target
    if not ok.any():
        return -1
    if scan == "lowest":
        return int(np.flatnonzero(ok)[0])
    top = int(np.flatnonzero(ok)[-1])
    fails_below = np.flatnonzero(~ok[:top])
    return int(fails_below[-1] + 1) if len(fails_below) else 0


# --- thresholds from a correctness model over the pool (issue 10, third round) ------------------

CALIBRATED_METHOD = "pool-calibrated-bootstrap"


def _top_label(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = probs.argmax(axis=1)
    return pred, probs[np.arange(len(probs)), pred]


def _sigmoid(eta: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(eta, -40.0, 40.0)))


def _logit(conf: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(conf, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return np.log(c / (1.0 - c))


def _design(conf: np.ndarray, pred: np.ndarray, k: int, slopes: bool) -> np.ndarray:
    """Columns: 1, logit(conf), one-hot of the predicted label (its offset), and with
    ``slopes`` the one-hot times logit(conf) (its own slope)."""
    z = _logit(conf)
    rows = np.arange(len(z))
    x = np.zeros((len(z), 2 + k * (2 if slopes else 1)))
    x[:, 0] = 1.0
    x[:, 1] = z
    x[rows, 2 + np.asarray(pred, dtype=np.int64)] = 1.0
    if slopes:
        x[rows, 2 + k + np.asarray(pred, dtype=np.int64)] = z
    return x


def fit_correctness_model(
    conf: np.ndarray,
    pred: np.ndarray,
    correct: np.ndarray,
    k: int,
    weights: np.ndarray | None = None,
    class_sd: float = 0.5,
    base_sd: float = 2.0,
    slope_sd: float | None = None,
    iterations: int = 50,
) -> np.ndarray:
    """P(the predicted label is right) = sigmoid(a + b * logit(conf) + d[pred] (+ e[pred] *
    logit(conf))), fit by penalised maximum likelihood (Newton steps); returns the parameters
    in the column order of ``_design``.

    Priors: (a, b) ~ N((0, 1), base_sd^2), i.e. "the confidences are calibrated" until the
    labels say otherwise, and it keeps the fit finite when every sampled prediction is right;
    each class's offset d_j ~ N(0, class_sd^2) (and slope e_j ~ N(0, slope_sd^2) when
    ``slope_sd`` is given), so a class with few items follows the pooled curve and one with
    many is fit on its own (shrinkage toward the pooled calibrator).
    """
    return _posterior_mode(
        conf, pred, correct, k, weights, class_sd, base_sd, slope_sd, iterations
    )[0]


def _posterior_mode(
    conf: np.ndarray,
    pred: np.ndarray,
    correct: np.ndarray,
    k: int,
    weights: np.ndarray | None,
    class_sd: float,
    base_sd: float = 2.0,
    slope_sd: float | None = None,
    iterations: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """``fit_correctness_model``'s parameters and the penalised Hessian at them (the inverse
    is the Laplace approximation's posterior covariance)."""
    slopes = slope_sd is not None
    x = _design(conf, pred, k, slopes)
    ok = np.asarray(correct, dtype=np.float64)
    w = np.ones(len(ok)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) and w.sum() > 0:
        w = w * (len(w) / w.sum())  # weights as relative: the evidence stays n items
    dim = x.shape[1]
    mean = np.zeros(dim)
    mean[1] = 1.0
    prec = np.full(dim, 1.0 / class_sd**2 if class_sd > 0 else 1e12)
    prec[:2] = 1.0 / base_sd**2
    if slope_sd is not None:
        prec[2 + k :] = 1.0 / slope_sd**2 if slope_sd > 0 else 1e12

    def objective(t: np.ndarray) -> float:
        """The penalised log-likelihood Newton climbs."""
        eta = x @ t
        loglik = ok * eta - np.logaddexp(0.0, eta)
        return float(w @ loglik - 0.5 * prec @ (t - mean) ** 2)

    theta = mean.copy()
    value = objective(theta)
    for _ in range(iterations):
        p = _sigmoid(x @ theta)
        grad = x.T @ (w * (ok - p)) - prec * (theta - mean)
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(prec)
        step = np.linalg.solve(hess, grad)
        # Step halving: on nearly separable evidence (a label whose items are all wrong) full
        # Newton steps overshoot and can land anywhere, e.g. a curve that calls the top of
        # the pool right with all of its labeled items wrong.
        for _ in range(40):
            new_value = objective(theta + step)
            if new_value >= value - 1e-12 * abs(value):
                break
            step = step / 2
        theta, value = theta + step, new_value
        if float(np.abs(step).max()) < 1e-8:
            break
    p = _sigmoid(x @ theta)
    return theta, (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(prec)


# The most candidate cuts per label the calibrated rule weighs (evenly spaced by rank): its
# bound is a mixture quantile per cut, found by bisection over the parameter draws, so a label
# with a million pool items would otherwise cost 40 x draws x a million normal CDFs.
MAX_CUTS = 1024


def fit_calibrated_thresholds(
    probs: np.ndarray,
    y: np.ndarray,
    pool_probs: np.ndarray,
    weights: np.ndarray | None = None,
    target: float = 0.95,
    alpha: float = 0.05,
    n_draws: int = 200,
    class_sd: float = 0.5,
    guard_alpha: float | None = 0.05,
    label_names: Sequence[str] | None = None,
    seed: int = 0,
    draws: Literal["laplace", "bootstrap"] = "laplace",
    slope_sd: float | None = None,
    predictive: bool = True,
    guard_probs: np.ndarray | None = None,
    guard_y: np.ndarray | None = None,
    guard_weights: np.ndarray | None = None,
    reviewer_accuracy: float = 1.0,
    guard_scope: Literal["run", "each-cut"] = "run",
    pool_conf: np.ndarray | None = None,
) -> ThresholdSet:
    """Per-label thresholds from a model of P(right | confidence, predicted label) averaged
    over the pool items each cut would label (issue 10's "calibrated" rule).

    ``probs``/``y``/``weights``: the labeled items the model is fit on (probabilities, people's
    labels, relative weights); ``pool_probs``: the items machines may label, on the same scale.
    The model (``fit_correctness_model``: logistic in logit(confidence), a per-label offset
    shrunk toward the pooled curve with ``class_sd``, optionally per-label slopes) gives each
    pool item a probability of being right; label j's precision above a cut t is the mean of
    those over the pool items predicted j with confidence >= t (hundreds to thousands of items,
    where ``fit_sample_thresholds`` has the 20-80 sampled items above t). The bound at t is the
    alpha quantile of that mean over ``n_draws`` draws of the model's parameters: Sobol points
    (``n_draws`` rounded up to a power of two) from the Laplace approximation of their
    posterior ("laplace", the default: it carries the prior's uncertainty about a label with
    few items, so a rare label is not certified by the pooled curve alone) or refits on
    bootstrap resamples ("bootstrap": measured to under-cover, bench/bench_threshold_rules.py). The cut is the lowest of the run of passing cuts through
    the cut with the best bound (``_run_through_best``).

    Why fit on every human label (the caller's choice, as ``annotate.route`` does): active
    learning chooses items by the model's confidence, which the model conditions on, so
    P(right | confidence) stays what it is on the pool, and the hard items pin the curve's
    slope that ~150 mostly-right sampled items cannot. The random sample then guards:

    ``guard_alpha``: a cut is refused where the guard items of label j above it show precision
    below target by a one-sided Wilson test at that level: the model may be wrong in shape, a
    random sample is not biased. None turns the guard off. ``guard_probs``/``guard_y``/
    ``guard_weights``: the guard items (the random sample, 1 / inclusion weights); by default
    the items the model is fit on.
    ``guard_scope``: "run" (the default): the model's bound picks its run of passing cuts and
    the guard then keeps the lowest cut of that run it does not refuse (no cut when it refuses
    them all). "each-cut" (the rule before 2026-12-02's evening, kept to compare): the guard
    refuses cuts before a scan from the highest cut (``passing_cut``), so one sampled error
    among the few items above the highest cuts (1 wrong of 3 is "below 0.95"), or a jitter of
    the bound there, ended the scan: coverage swung between runs (docs/benchmarks.md).
    ``predictive``: bound the share right among the items actually labeled (each right or
    wrong by chance around its modelled probability, a normal term added in closed form), not
    only its expectation; on banking77 (labels with 50-100 pool items) it took the intents
    below 0.95 from 11 of 72 to 1 of 50.

    ``pool_conf``: each pool item's confidence in its predicted label (``pool_probs``'
    argmax) from models like those that gave ``probs``: the held-out probabilities come from
    models fit on part of the labels, and the model fit on all of them is sharper on the pool
    (banking77: pool items at final confidence 0.9-0.95 right 0.92 of the time, held-out items
    0.96), so P(right | confidence) learnt on the first overstates the second. The cuts stay on
    ``pool_probs``' confidences; the correctness model reads ``pool_conf``. Default: the
    pool's own confidences.

    ``reviewer_accuracy``: an upper bound on people's accuracy (gold items); the model is of
    agreement with people, and ``precision_through_noise`` turns its bounds into bounds on
    precision, as in ``fit_sample_thresholds``.

    Caveat: the bound is only as good as the model's shape (the guard catches gross misfit,
    not a class slightly off the curve).
    """
    probs, y, w, names = _checked(probs, y, weights, target, label_names)
    n, k = probs.shape
    pool = check_probs(pool_probs)
    if pool.shape[1] != k:
        raise ValueError(f"pool_probs: {pool.shape[1]} columns, expected {k}")
    if n_draws < 1:
        raise ValueError(f"n_draws={n_draws}: expected at least 1")
    if n == 0:
        return _nothing_labeled(names, target, alpha, CALIBRATED_METHOD)
    pred, conf = _top_label(probs)
    correct = pred == y
    rng = np.random.default_rng(seed)
    if draws == "laplace":
        theta, hess = _posterior_mode(conf, pred, correct, k, w, class_sd, slope_sd=slope_sd)
        thetas = _normal_draws(theta, np.linalg.inv(hess), n_draws, rng)
    elif draws == "bootstrap":
        thetas = np.stack(
            [
                fit_correctness_model(
                    conf[idx], pred[idx], correct[idx], k, w[idx], class_sd, slope_sd=slope_sd
                )
                for idx in rng.integers(n, size=(n_draws, n))
            ]
        )
    else:
        raise ValueError(f"draws={draws!r}: expected 'bootstrap' or 'laplace'")
    if guard_probs is not None:
        g_probs = check_probs(guard_probs)
        g_y = check_labels(guard_y, len(g_probs), k)
        g_pred, g_conf = _top_label(g_probs)
        g_ok = g_pred == g_y
        g_w = np.ones(len(g_y)) if guard_weights is None else np.asarray(guard_weights, float)
    else:
        g_pred, g_conf, g_ok, g_w = pred, conf, correct, w
    p_pred, p_conf = _top_label(pool)
    if pool_conf is None:
        model_conf = p_conf
    else:
        model_conf = np.clip(np.asarray(pool_conf, dtype=np.float64), 0.0, 1.0)
        if model_conf.shape != p_conf.shape:
            raise ValueError(f"pool_conf: {model_conf.shape[0]} values for {len(p_conf)} items")
    out = []
    for j in range(k):
        mine = np.flatnonzero(p_pred == j)
        s_mine = g_pred == j
        s_conf, s_ok, s_w = g_conf[s_mine], g_ok[s_mine], g_w[s_mine]
        if not len(mine):
            out.append(LabelThreshold(names[j], math.inf, 0, math.nan, 0.0, "no pool items"))
            continue
        order = mine[np.argsort(-p_conf[mine], kind="stable")]
        c = p_conf[order]
        eta = thetas @ _design(model_conf[order], np.full(len(c), j), k, slope_sd is not None).T
        p_right = _sigmoid(eta)  # (n_draws, items)
        m = np.arange(1, len(order) + 1)
        # A cut admits every item tied with it: only the last item of each tie is a cut.
        at = np.flatnonzero(np.r_[c[1:] != c[:-1], True])
        if len(at) > MAX_CUTS:  # evenly spaced by rank: the bound's cost stays bounded
            at = at[np.unique(np.linspace(0, len(at) - 1, MAX_CUTS).round().astype(np.int64))]
        est = (np.cumsum(p_right, axis=1) / m)[:, at]
        if predictive:
            # The realised share right of the top m items varies around its expectation by
            # each item's luck (variance p(1 - p) / m^2 summed): the bound is the alpha
            # quantile of the mixture, over parameter draws, of those normal distributions,
            # computed in closed form rather than from drawn luck, whose Monte Carlo noise
            # moved thresholds between runs on the same evidence.
            var = (np.cumsum(p_right * (1 - p_right), axis=1) / m**2)[:, at]
            low = _mixture_quantile(est, var, alpha)
        else:
            low = np.quantile(est, alpha, axis=0)
        lows = precision_through_noise(low, reviewer_accuracy, k)
        ok = lows >= target
        guarded = guard_alpha is not None and len(s_conf) > 0
        refused = ""
        if guarded and guard_scope == "each-cut":
            ok &= ~_sample_says_below(c[at], s_conf, s_ok, s_w, target, guard_alpha)
            # passing_cut scans ascending cuts; here index 0 is the highest cut, so reverse.
            g = passing_cut(ok[::-1].astype(np.float64), 0.5)
        else:
            first, last = _run_through_best(lows, ok)
            g = len(at) - 1 - last if first >= 0 else -1
            if g >= 0 and guarded:
                below = _sample_says_below(
                    c[at[first : last + 1]], s_conf, s_ok, s_w, target, guard_alpha
                )
                if below.all():
                    g, refused = (
                        -1,
                        "the random sample shows each cut the model passes below target",
                    )
                else:
                    g = len(at) - 1 - (first + int(np.flatnonzero(~below)[-1]))
        if g < 0:
            best = float(lows.max())
            why = refused or (
                f"no cut reaches a {_level(alpha)} model lower bound >= {target} on the pool "
                f"(best {best:.3f})"
            )
            support = int(len(s_conf))
            out.append(LabelThreshold(names[j], math.inf, support, float(est.mean()), best, why))
            continue
        i = len(at) - 1 - g
        cut = float(c[at[i]])
        support = int((s_conf >= cut).sum())
        out.append(LabelThreshold(names[j], cut, support, float(est[:, i].mean()), float(lows[i])))
    return ThresholdSet(tuple(out), target, alpha, CALIBRATED_METHOD, 0)


def _normal_draws(
    mean: np.ndarray, cov: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """At least n draws from N(mean, cov), as scrambled Sobol points (quasi-Monte Carlo; n is
    rounded up to a power of two, where Sobol points are balanced). The bound is a tail
    quantile over the draws; with plain draws its noise alone moved youtube_spam's coverage
    between 0.33 and 0.57 of the pool on the same evidence (docs/benchmarks.md)."""
    from scipy.stats import qmc

    sampler = qmc.MultivariateNormalQMC(mean, cov, seed=rng)
    return sampler.random(1 << max(0, int(n) - 1).bit_length())


def _mixture_quantile(
    means: np.ndarray, variances: np.ndarray, alpha: float, iterations: int = 40
) -> np.ndarray:
    """Per column, the alpha quantile of an equal-weight mixture of normals N(means[i],
    variances[i]) over rows i (bisection on the mixture's distribution function)."""
    from scipy.special import ndtr

    sd = np.sqrt(np.maximum(variances, 1e-18))
    lo = (means - 9 * sd).min(axis=0)
    hi = means.max(axis=0)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        below = ndtr((mid - means) / sd).mean(axis=0) < alpha
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return (lo + hi) / 2


def _run_through_best(lows: np.ndarray, ok: np.ndarray) -> tuple[int, int]:
    """(first, last): the run of passing cuts (cuts from the highest down) through the cut with
    the best bound, or (-1, -1) when none passes. The model's bound over the pool rises from the
    top (few items: their realised share is uncertain) and falls as the cut admits less
    confident items; starting the scan at the top stopped it in the noisy first few cuts."""
    best = int(np.argmax(lows))
    if not ok[best]:
        return -1, -1
    fails = np.flatnonzero(~ok[best:])
    last = best + int(fails[0]) - 1 if len(fails) else len(ok) - 1
    fails_above = np.flatnonzero(~ok[:best])
    first = int(fails_above[-1]) + 1 if len(fails_above) else 0
    return first, last


def _sample_says_below(
    cuts: np.ndarray,
    s_conf: np.ndarray,
    s_ok: np.ndarray,
    s_w: np.ndarray,
    target: float,
    alpha: float,
) -> np.ndarray:
    """Per cut (any order): whether the sampled items with confidence >= the cut are right less
    often than ``target`` by a one-sided Wilson test at level ``alpha``."""
    from scipy.stats import norm

    order = np.argsort(-s_conf, kind="stable")
    sc = s_conf[order]
    sw = np.cumsum(s_w[order])
    sw2 = np.cumsum(s_w[order] ** 2)
    swc = np.cumsum((s_w * s_ok)[order])
    m = np.searchsorted(-sc, -np.asarray(cuts), side="right")  # sampled items >= each cut
    below = np.zeros(len(cuts), dtype=bool)
    has = m > 0
    i = m[has] - 1
    n_eff = sw[i] ** 2 / sw2[i]
    k_eff = swc[i] / sw[i] * n_eff
    zq = float(norm.ppf(1 - alpha))
    p = k_eff / n_eff
    centre = p + zq * zq / (2 * n_eff)
    half = zq * np.sqrt(p * (1 - p) / n_eff + zq * zq / (4 * n_eff * n_eff))
    upper = (centre + half) / (1 + zq * zq / n_eff)
    below[has] = upper < target
    return below
