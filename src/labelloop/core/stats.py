"""Intervals and bounds on proportions (precision, accuracy, agreement rates), in one place.

Routing bounds the precision of machine labels, quality scores reviewers on gold items and
labelers on order flips: all of them read these. Wilson's score interval stays inside [0, 1]
and is honest for small n and proportions near 0 or 1; Clopper-Pearson is the exact (and more
conservative) alternative.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy.stats import beta, norm

BoundMethod = Literal["wilson", "clopper-pearson"]


def _check_counts(successes: np.ndarray, n: np.ndarray, alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha}: expected a value in (0, 1)")
    if np.any(n < 0) or np.any(successes < 0) or np.any(successes > n):
        raise ValueError("counts: expected 0 <= successes <= n")


def _wilson(successes: np.ndarray, n: np.ndarray, z: float, sign: float) -> np.ndarray:
    n_safe = np.where(n > 0, n, 1)
    p = successes / n_safe
    z2 = z * z
    centre = (p + z2 / (2 * n_safe)) / (1 + z2 / n_safe)
    half = z * np.sqrt(p * (1 - p) / n_safe + z2 / (4 * n_safe * n_safe)) / (1 + z2 / n_safe)
    out = np.clip(centre + sign * half, 0.0, 1.0)
    return np.where(n > 0, out, 0.0 if sign < 0 else 1.0)


def _clopper_pearson(successes: np.ndarray, n: np.ndarray, q: float, lower: bool) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if lower:
            out = np.where(successes > 0, beta.ppf(q, successes, n - successes + 1), 0.0)
        else:
            out = np.where(successes < n, beta.ppf(1 - q, successes + 1, n - successes), 1.0)
    return np.where(n > 0, np.nan_to_num(out, nan=0.0 if lower else 1.0), 0.0 if lower else 1.0)


def precision_lower_bound(
    successes: np.ndarray | int,
    n: np.ndarray | int,
    alpha: float = 0.05,
    method: BoundMethod = "wilson",
) -> np.ndarray | float:
    """One-sided lower confidence bound (level 1 - alpha) on a proportion; 0 where n == 0."""
    s, m = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    _check_counts(s, m, alpha)
    if method == "wilson":
        out = _wilson(s, m, float(norm.ppf(1 - alpha)), -1.0)
    elif method == "clopper-pearson":
        out = _clopper_pearson(s, m, alpha, lower=True)
    else:
        raise ValueError(f"bound method {method!r}: expected 'wilson' or 'clopper-pearson'")
    return float(out) if out.ndim == 0 else out


def proportion_interval(
    successes: int, n: int, alpha: float = 0.05, method: BoundMethod = "wilson"
) -> tuple[float, float, float]:
    """(estimate, low, high): the two-sided 1 - alpha interval of a proportion.

    With n == 0 the estimate is nan and the interval is (0, 1)."""
    s, m = np.asarray(float(successes)), np.asarray(float(n))
    _check_counts(s, m, alpha)
    if method == "wilson":
        z = float(norm.ppf(1 - alpha / 2))
        low, high = float(_wilson(s, m, z, -1.0)), float(_wilson(s, m, z, 1.0))
    elif method == "clopper-pearson":
        low = float(_clopper_pearson(s, m, alpha / 2, lower=True))
        high = float(_clopper_pearson(s, m, alpha / 2, lower=False))
    else:
        raise ValueError(f"bound method {method!r}: expected 'wilson' or 'clopper-pearson'")
    estimate = successes / n if n > 0 else math.nan
    return estimate, low, high


def wilson_interval(
    successes: int | np.ndarray, n: int | np.ndarray, confidence: float = 0.95
) -> tuple[Any, Any]:
    """Wilson score interval for a proportion; (nan, nan) where ``n`` is 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest for small ``n`` and
    proportions near 0 or 1, which is the usual case for a reviewer scored on 20 gold items.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"wilson_interval: confidence must be in (0, 1), got {confidence}")
    s = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    if np.any(s < 0) or np.any(s > m):
        raise ValueError("wilson_interval: need 0 <= successes <= n")
    z = norm.ppf(0.5 + confidence / 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / m
        denom = 1.0 + z**2 / m
        centre = (p + z**2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z**2 / (4.0 * m**2)) / denom
        low = np.where(m > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        high = np.where(m > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def mcnemar_exact(a_correct: Any, b_correct: Any) -> dict[str, float]:
    """McNemar's exact test on paired outcomes (the same items scored by models A and B): the
    one-sided p-value that B is no better than A, from the discordant pairs alone (items only
    A got right, ``a_only``, and only B got right, ``b_only``) under Binomial(n, 1/2)."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired outcomes: A and B need the same items")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    n = a_only + b_only
    from scipy.stats import binom

    p = float(binom.sf(b_only - 1, n, 0.5)) if n else 1.0
    return {"a_only": float(a_only), "b_only": float(b_only), "p_value": p}


def paired_bootstrap(
    a_scores: Any, b_scores: Any, *, n_boot: int = 2000, seed: int = 0
) -> dict[str, float]:
    """For per-item losses (regression's absolute errors; lower is better): the mean
    improvement of B over A and the one-sided bootstrap p-value that B is no better."""
    a = np.asarray(a_scores, dtype=float)
    b = np.asarray(b_scores, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired scores: A and B need the same, non-empty items")
    diff = a - b  # > 0: B's loss is lower
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diff.size, size=(n_boot, diff.size))
    means = diff[idx].mean(axis=1)
    return {"improvement": float(diff.mean()), "p_value": float((means <= 0).mean())}
