"""Audits as an always-valid test: check the precision promise as often as you like.

Audited machine labels of a class arrive one by one, and the loop looks at them on every
retrain. A fixed-n test (is the interval's upper bound below target?) repeated at every look
rejects a class that meets the target far more often than alpha (``tests/test_calibration_
unbiased.py`` measures it). An e-process does not: under "precision >= target" it is a
nonnegative supermartingale, so by Ville's inequality the chance it ever reaches 1 / alpha,
however often it is looked at, is at most alpha.

The e-process is the likelihood ratio of "precision = q" against "precision = target", mixed
over q uniform on [0, target) (a beta-binomial mixture). For any true precision p >= target
every component has expectation <= 1 per step, so the mixture does too. It depends only on how
many audits were right (k) of how many (n), and has a closed form with the incomplete beta
function.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy.special import betainc, betaln

from labelloop.routing.router import audit_arrays, raised_threshold
from labelloop.routing.thresholds import LabelThreshold, ThresholdSet


def log_e_value(k: int, n: int, target: float) -> float:
    """log of the mixture e-value against "precision >= target" after ``k`` right of ``n``."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target={target}: expected a precision in (0, 1)")
    if not 0 <= k <= n:
        raise ValueError(f"k={k}, n={n}: expected 0 <= k <= n")
    if n == 0:
        return 0.0
    # integral_0^target q^k (1 - q)^(n - k) dq / target, over target^k (1 - target)^(n - k)
    part = betainc(k + 1, n - k + 1, target)
    if part <= 0.0:
        return -math.inf
    log_mix = betaln(k + 1, n - k + 1) + math.log(part) - math.log(target)
    return log_mix - (k * math.log(target) + (n - k) * math.log1p(-target))


def below_target(correct: np.ndarray, target: float, alpha: float = 0.05) -> bool:
    """True when the audits ``correct`` (in any order) show precision below ``target`` at
    level ``alpha``, valid however often it is called as audits accumulate."""
    flags = np.asarray(correct).astype(bool)
    return log_e_value(int(flags.sum()), len(flags), target) >= math.log(1.0 / alpha)


def tighten_thresholds(
    thresholds: ThresholdSet,
    audit_labels: np.ndarray,
    audit_confidences: np.ndarray,
    audit_correct: np.ndarray,
    alpha: float = 0.05,
    min_remaining: int = 10,
) -> ThresholdSet:
    """Raise each label's threshold where its audits say, by the e-process, that precision is
    below target. Only audits at or above the label's current threshold count (they are what
    the current rule lets through). The new threshold is the lowest audited confidence above
    which at least ``min_remaining`` audits remain, the test no longer rejects and their share
    right reaches the target; inf (auto-accept nothing) when there is none."""
    labels, conf, correct = audit_arrays(
        len(thresholds.labels), audit_labels, audit_confidences, audit_correct
    )
    target = thresholds.target
    if target >= 1.0:
        return thresholds
    out: list[LabelThreshold] = []
    for j, current in enumerate(thresholds.labels):
        mask = (labels == j) & (conf >= current.threshold)
        if (
            not current.auto_accepts
            or not mask.any()
            or not below_target(correct[mask], target, alpha)
        ):
            out.append(current)
            continue
        c, ok = conf[mask], correct[mask]
        raised = raised_threshold(
            c,
            ok,
            current.threshold,
            target,
            min_remaining,
            passes=lambda right: not below_target(right, target, alpha),
        )
        reason = (
            f"audit: {int(ok.sum())} of {len(ok)} audited labels right, below target {target} "
            f"(sequential test, alpha {alpha})"
        )
        out.append(replace(current, threshold=raised, reason=reason))
    return replace(thresholds, labels=tuple(out))
