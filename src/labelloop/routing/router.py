"""Auto-accept or review, audit sampling, and threshold adjustment from audit results.

``route`` accepts an item's predicted label when its confidence reaches that label's threshold;
everything else goes to people. A random share of the auto-accepted items (``audit_rate``,
default 2%) also goes to people, flagged as audit: their human labels measure the precision the
auto-accepted labels really have (``audited_precision``), which ``adjust_thresholds`` acts on.

Multi-label tasks route whole label sets: ``route_sets`` accepts an item's predicted set when
the set's confidence reaches the one ``SetThreshold``, audits the same share, and
``adjust_set_threshold`` raises that threshold when audits of whole sets fall short.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from labelloop.core.probs import check_probs
from labelloop.routing.sample import keyed_uniforms
from labelloop.routing.thresholds import (
    BoundMethod,
    LabelThreshold,
    SetThreshold,
    ThresholdSet,
    predicted_sets,
    proportion_interval,
)

AUTO = "auto"
REVIEW = "review"


class _RoutingOutcome:
    """What single- and multi-label routing decisions share: ``auto`` and ``audit`` flags."""

    auto: np.ndarray
    audit: np.ndarray

    @property
    def needs_review(self) -> np.ndarray:
        return ~self.auto | self.audit

    @property
    def route(self) -> np.ndarray:
        """ "auto" or "review" per item (audit items read "review")."""
        return np.where(self.needs_review, REVIEW, AUTO)

    @property
    def auto_share(self) -> float:
        return float(self.auto.mean()) if len(self.auto) else 0.0


@dataclass(frozen=True)
class Decisions(_RoutingOutcome):
    """Routing of n items, as parallel arrays.

    ``label``: predicted label index per item; ``confidence``: its probability; ``auto``: the
    label is accepted without review; ``audit``: auto-accepted and also sent to review to
    measure precision. An item goes to people when ``needs_review`` (not auto, or audit).
    """

    label: np.ndarray
    confidence: np.ndarray
    auto: np.ndarray
    audit: np.ndarray


def route(
    probs: np.ndarray,
    thresholds: ThresholdSet | np.ndarray | Sequence[float],
    audit_rate: float = 0.02,
    seed: int = 0,
    keys: Sequence[object] | None = None,
) -> Decisions:
    """Route each row of ``probs`` (calibrated, as the thresholds were fit on).

    Audit sampling draws from a generator seeded with ``seed``; pass ``keys`` (item ids or
    content hashes) to make the draw a function of each item instead, so an item gets the same
    audit decision whichever batch it arrives in.
    """
    probs = check_probs(probs)
    n, k = probs.shape
    values = thresholds.values if isinstance(thresholds, ThresholdSet) else thresholds
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (k,):
        raise ValueError(f"thresholds: expected {k} values (one per label), got {values.shape}")
    if np.any(np.isnan(values)):
        raise ValueError("thresholds: NaN threshold (use inf to auto-accept nothing)")
    _check_audit_rate(audit_rate)
    label = probs.argmax(axis=1)
    confidence = probs[np.arange(n), label]
    auto = confidence >= values[label]
    audit = auto & (_audit_draws(n, seed, keys) < audit_rate)
    return Decisions(label=label, confidence=confidence, auto=auto, audit=audit)


def _check_audit_rate(audit_rate: float) -> None:
    if not 0.0 <= audit_rate <= 1.0:
        raise ValueError(f"audit_rate={audit_rate}: expected a share in [0, 1]")


def _audit_draws(n: int, seed: int, keys: Sequence[object] | None) -> np.ndarray:
    """A uniform draw per item: keyed by item when ``keys`` are given, else from ``seed``."""
    if keys is None:
        return np.random.default_rng(seed).random(n)
    if len(keys) != n:
        raise ValueError(f"keys: {len(keys)} keys for {n} items")
    return keyed_uniforms(keys, salt=seed)


@dataclass(frozen=True)
class SetDecisions(_RoutingOutcome):
    """Routing of n items of a multi-label task, as parallel arrays.

    ``labels``: the predicted label set per item, an (n, K) boolean matrix (never an empty row,
    see ``predicted_sets``); ``confidence``: the probability that the whole set is right;
    ``auto``: the set is accepted without review; ``audit``: auto-accepted and also sent to
    review to measure precision. An item goes to people when ``needs_review``.
    """

    labels: np.ndarray
    confidence: np.ndarray
    auto: np.ndarray
    audit: np.ndarray


def route_sets(
    probs: np.ndarray,
    threshold: SetThreshold | float,
    audit_rate: float = 0.02,
    seed: int = 0,
    keys: Sequence[object] | None = None,
) -> SetDecisions:
    """Route each row of multi-label ``probs`` (per-label probabilities, as the threshold was
    fit on): its predicted set is auto-accepted when the set's confidence reaches ``threshold``
    (a ``SetThreshold`` or a number; inf accepts nothing). Audit draws work as in ``route``:
    pass ``keys`` so an item gets the same audit decision whichever batch it arrives in.
    """
    value = float(threshold.threshold if isinstance(threshold, SetThreshold) else threshold)
    if math.isnan(value):
        raise ValueError("threshold: NaN (use inf to auto-accept nothing)")
    _check_audit_rate(audit_rate)
    sets, confidence = predicted_sets(probs)
    auto = confidence >= value
    audit = auto & (_audit_draws(len(sets), seed, keys) < audit_rate)
    return SetDecisions(labels=sets, confidence=confidence, auto=auto, audit=audit)


def audited_precision(
    correct_flags: np.ndarray | Sequence[bool],
    alpha: float = 0.05,
    method: BoundMethod = "wilson",
) -> tuple[float, float, float]:
    """(estimate, low, high) precision of audited auto-accepted labels, two-sided 1 - alpha."""
    flags = np.asarray(correct_flags)
    if flags.ndim != 1:
        raise ValueError(f"correct_flags: expected a 1-D array, got shape {flags.shape}")
    flags = flags.astype(bool)
    return proportion_interval(int(flags.sum()), len(flags), alpha, method)


def adjust_thresholds(
    thresholds: ThresholdSet,
    audit_labels: np.ndarray,
    audit_confidences: np.ndarray,
    audit_correct: np.ndarray,
    alpha: float = 0.05,
    method: BoundMethod = "wilson",
    min_remaining: int = 10,
) -> ThresholdSet:
    """Raise the threshold of each label whose audit shows precision below the target.

    Rule, per label with audited items: if the upper bound of the two-sided 1 - alpha interval
    of its audited precision is below the target (the shortfall is unlikely to be chance), the
    threshold rises to the lowest audited confidence ``t`` above the current threshold at which
    the audited items with confidence >= t (at least ``min_remaining`` of them) reach the target
    by point estimate. If there is no such ``t``, the label auto-accepts nothing (inf) until
    thresholds are refit with the new human labels. Labels whose shortfall may be chance keep
    their threshold, and no threshold falls here: lowering one needs a refit on more labels.
    """
    labels, conf, correct = audit_arrays(
        len(thresholds.labels), audit_labels, audit_confidences, audit_correct
    )
    target = thresholds.target
    new: list[LabelThreshold] = []
    for j, current in enumerate(thresholds.labels):
        mask = labels == j
        if not mask.any() or not current.auto_accepts:
            new.append(current)
            continue
        _, _, high = audited_precision(correct[mask], alpha, method)
        if high >= target:
            new.append(current)
            continue
        raised = raised_threshold(
            conf[mask], correct[mask], current.threshold, target, min_remaining
        )
        reason = (
            f"audit: precision upper bound {high:.3f} < target {target} on "
            f"{int(mask.sum())} audited items"
        )
        new.append(replace(current, threshold=raised, reason=reason))
    return replace(thresholds, labels=tuple(new))


def audit_arrays(
    k: int, audit_labels: np.ndarray, audit_confidences: np.ndarray, audit_correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Audits as (label index, confidence, right) arrays, checked: 1-D, one length, labels in
    [0, k)."""
    labels = np.asarray(audit_labels, dtype=np.int64)
    conf = np.asarray(audit_confidences, dtype=np.float64)
    correct = np.asarray(audit_correct).astype(bool)
    if not labels.shape == conf.shape == correct.shape or labels.ndim != 1:
        raise ValueError(
            "audit_labels, audit_confidences, audit_correct: expected 1-D arrays of one length, "
            f"got {labels.shape}, {conf.shape}, {correct.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"audit_labels: values must be label indices in [0, {k})")
    return labels, conf, correct


def raised_threshold(
    conf: np.ndarray,
    correct: np.ndarray,
    current: float,
    target: float,
    min_remaining: int,
    passes: Callable[[np.ndarray], bool] | None = None,
) -> float:
    """The lowest audited confidence above ``current`` whose audits at or above it (at least
    ``min_remaining``) reach ``target`` by point estimate and, if given, ``passes``; inf when
    none does."""
    for t in np.unique(conf[conf > current]):
        above = conf >= t
        if above.sum() < min_remaining:
            break
        if correct[above].mean() >= target and (passes is None or passes(correct[above])):
            return float(t)
    return math.inf


def adjust_set_threshold(
    threshold: SetThreshold,
    audit_confidences: np.ndarray,
    audit_correct: np.ndarray,
    alpha: float = 0.05,
    method: BoundMethod = "wilson",
    min_remaining: int = 10,
) -> SetThreshold:
    """The multi-label counterpart of ``adjust_thresholds``, for the one set threshold.

    ``audit_correct`` says, per audited item, whether the person's set equals the machine's.
    If the upper bound of the two-sided 1 - alpha interval of audited set precision is below
    the target, the threshold rises to the lowest audited confidence above it at which the
    audited items (at least ``min_remaining``) reach the target by point estimate, or to inf
    (auto-accept nothing until a refit on the new human labels). It never falls here.
    """
    conf = np.asarray(audit_confidences, dtype=np.float64)
    correct = np.asarray(audit_correct).astype(bool)
    if conf.shape != correct.shape or conf.ndim != 1:
        raise ValueError(
            "audit_confidences, audit_correct: expected 1-D arrays of one length, "
            f"got {conf.shape}, {correct.shape}"
        )
    if not conf.size or not threshold.auto_accepts:
        return threshold
    target = threshold.target
    _, _, high = audited_precision(correct, alpha, method)
    if high >= target:
        return threshold
    raised = raised_threshold(conf, correct, threshold.threshold, target, min_remaining)
    reason = (
        f"audit: set precision upper bound {high:.3f} < target {target} on "
        f"{conf.size} audited items"
    )
    return replace(threshold, threshold=raised, reason=reason)
