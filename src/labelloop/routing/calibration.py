"""Calibrate labeler probabilities on human-labeled items.

Two calibrators, chosen per project by held-out error on the human labels:

- temperature scaling: one scalar ``T`` divides the log-probabilities (fit by minimising NLL).
  It keeps every item's ranking of labels and needs few labels.
- top-label isotonic: a monotone map from the predicted label's confidence to the chance it is
  right. It fixes any monotone miscalibration but needs more labels.

``fit_calibrator`` compares them (and "no calibration") by K-fold cross-validated NLL or ECE on
the same labels and refits the winner on all of them.

The probabilities fed in must not come from a model trained on the same items (a student's
in-sample probabilities are overconfident): use out-of-fold predictions for those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import KFold

from labelloop.core.probs import check_labels, check_probs
from labelloop.core.probs import expected_calibration_error as ece_of_confidence

_EPS = 1e-12

CalibrationMethod = Literal["identity", "temperature", "isotonic"]


def _normalise(probs: np.ndarray) -> np.ndarray:
    total = probs.sum(axis=1, keepdims=True)
    return probs / np.where(total > 0, total, 1.0)


def negative_log_likelihood(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-probability of the true label (clipped at 1e-12)."""
    probs = check_probs(probs)
    y = check_labels(y, probs.shape[0], probs.shape[1])
    p_true = probs[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(p_true, _EPS, 1.0))))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: |accuracy - confidence| averaged over equal-width confidence bins."""

    probs = check_probs(probs)
    y = check_labels(y, probs.shape[0], probs.shape[1])
    if len(y) == 0:
        return 0.0
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    return ece_of_confidence(probs.max(axis=1), correct, n_bins)


@dataclass(frozen=True)
class CalibrationReport:
    """Held-out error of each candidate method (lower is better) and the one chosen."""

    chosen: str
    criterion: str
    scores: dict[str, float]
    n_items: int


class Calibrator(Protocol):
    """Maps raw (n, k) probabilities to calibrated ones of the same shape."""

    method: str

    def transform(self, probs: np.ndarray) -> np.ndarray: ...


@dataclass
class IdentityCalibrator:
    """Leaves probabilities as they are (chosen when calibrating does not help on held-out data)."""

    method: str = "identity"
    report: CalibrationReport | None = None

    def fit(self, probs: np.ndarray, y: np.ndarray) -> IdentityCalibrator:
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        return _normalise(check_probs(probs))


@dataclass
class TemperatureCalibrator:
    """softmax(log(p) / T): T > 1 softens overconfident probabilities, T < 1 sharpens them."""

    temperature: float = 1.0
    method: str = "temperature"
    report: CalibrationReport | None = None

    def fit(self, probs: np.ndarray, y: np.ndarray) -> TemperatureCalibrator:
        probs = check_probs(probs)
        y = check_labels(y, probs.shape[0], probs.shape[1])
        if len(y) == 0:
            raise ValueError("y: cannot fit a temperature on zero labeled items")
        logp = np.log(np.clip(_normalise(probs), _EPS, 1.0))
        rows = np.arange(len(y))

        def nll(log_t: float) -> float:
            z = logp / np.exp(log_t)
            z = z - z.max(axis=1, keepdims=True)
            log_norm = np.log(np.exp(z).sum(axis=1))
            return float(np.mean(log_norm - z[rows, y]))

        # T in [0.01, 100]: a bounded 1-D search on log T is robust and needs no gradient.
        res = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100.0)), method="bounded")
        self.temperature = float(np.exp(res.x))
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        logp = np.log(np.clip(_normalise(check_probs(probs)), _EPS, 1.0))
        z = logp / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


@dataclass
class TopLabelIsotonicCalibrator:
    """Isotonic map from the predicted label's confidence to its chance of being right.

    The predicted label stays the predicted label: its calibrated confidence is clipped to at
    least 1/k, and the remaining mass is shared among the other labels in proportion to their
    raw probabilities, or evenly where proportional sharing would put another label on top.
    The upper end is clipped to 1 - 1/(2n) so a finite calibration set never claims certainty.
    """

    method: str = "isotonic"
    report: CalibrationReport | None = None
    _iso: IsotonicRegression | None = field(default=None, repr=False)
    _n_labels: int = 0
    _max_conf: float = 1.0

    def fit(self, probs: np.ndarray, y: np.ndarray) -> TopLabelIsotonicCalibrator:
        probs = _normalise(check_probs(probs))
        y = check_labels(y, probs.shape[0], probs.shape[1])
        if len(y) == 0:
            raise ValueError("y: cannot fit isotonic calibration on zero labeled items")
        conf = probs.max(axis=1)
        correct = (probs.argmax(axis=1) == y).astype(np.float64)
        self._iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        self._iso.fit(conf, correct)
        self._n_labels = probs.shape[1]
        self._max_conf = 1.0 - 1.0 / (2.0 * len(y))
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        if self._iso is None:
            raise RuntimeError("TopLabelIsotonicCalibrator.transform called before fit")
        probs = _normalise(check_probs(probs))
        n, k = probs.shape
        if k != self._n_labels:
            raise ValueError(f"probs: fitted on {self._n_labels} labels, got {k}")
        rows = np.arange(n)
        top = probs.argmax(axis=1)
        conf = probs[rows, top]
        # Just above 1/k, so the predicted label stays strictly on top.
        new_conf = np.clip(self._iso.predict(conf), (1.0 + 1e-9) / k, self._max_conf)
        rest = probs.copy()
        rest[rows, top] = 0.0
        rest_sum = rest.sum(axis=1, keepdims=True)
        share = np.where(rest_sum > 0, rest / np.where(rest_sum > 0, rest_sum, 1.0), 1.0 / (k - 1))
        share[rows, top] = 0.0
        out = share * (1.0 - new_conf)[:, None]
        flat = out.max(axis=1) >= new_conf
        if np.any(flat):
            out[flat] = ((1.0 - new_conf[flat]) / (k - 1))[:, None]
        out[rows, top] = new_conf
        return out


def _make(method: str) -> IdentityCalibrator | TemperatureCalibrator | TopLabelIsotonicCalibrator:
    if method == "identity":
        return IdentityCalibrator()
    if method == "temperature":
        return TemperatureCalibrator()
    if method == "isotonic":
        return TopLabelIsotonicCalibrator()
    raise ValueError(f"calibration method {method!r}: expected identity, temperature or isotonic")


def fit_calibrator(
    probs: np.ndarray,
    y: np.ndarray,
    methods: Sequence[str] = ("identity", "temperature", "isotonic"),
    criterion: Literal["nll", "ece"] = "nll",
    n_folds: int = 5,
    min_items_for_isotonic: int = 100,
    seed: int = 0,
) -> Calibrator:
    """Fit every method in ``methods`` under K-fold cross-validation, keep the one with the
    lowest held-out ``criterion`` and refit it on all items. The comparison is kept in the
    returned calibrator's ``report`` (a ``CalibrationReport``).

    Isotonic is skipped below ``min_items_for_isotonic`` labeled items: with fewer it overfits
    the steps and cross-validation on tiny folds cannot tell.
    """
    probs = check_probs(probs)
    y = check_labels(y, probs.shape[0], probs.shape[1])
    n = len(y)
    if n == 0:
        raise ValueError("y: cannot calibrate on zero labeled items")
    if criterion not in ("nll", "ece"):
        raise ValueError(f"criterion {criterion!r}: expected 'nll' or 'ece'")
    candidates = [m for m in methods if m != "isotonic" or n >= min_items_for_isotonic]
    for m in candidates:
        _make(m)  # validates the name early
    if not candidates:
        candidates = ["identity"]
    score_fn = negative_log_likelihood if criterion == "nll" else expected_calibration_error
    folds = min(n_folds, n)
    scores: dict[str, float] = {}
    if folds >= 2 and len(candidates) > 1:
        kf = KFold(n_splits=folds, shuffle=True, random_state=seed)
        held_out = {m: np.zeros_like(probs) for m in candidates}
        for train_idx, test_idx in kf.split(probs):
            for m in candidates:
                cal = _make(m).fit(probs[train_idx], y[train_idx])
                held_out[m][test_idx] = cal.transform(probs[test_idx])
        scores = {m: score_fn(held_out[m], y) for m in candidates}
        chosen = min(candidates, key=lambda m: (scores[m], candidates.index(m)))
    else:
        # One candidate, or a single labeled item: nothing to compare on.
        chosen = candidates[0] if len(candidates) == 1 else "identity"
    calibrator = _make(chosen).fit(probs, y)
    calibrator.report = CalibrationReport(
        chosen=chosen, criterion=criterion, scores=scores, n_items=n
    )
    return calibrator
