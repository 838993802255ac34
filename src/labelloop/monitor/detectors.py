"""Concept drift: change detectors on a stream of outcomes, quality over windows, and an
estimate of accuracy where labels are missing.

The detectors follow river's habit, ``update(x)`` then ``.drift_detected``, with ``x`` = 1 for
an error (a wrong prediction) and 0 for a correct one, as river's binary detectors take it.
They are written here rather than wrapped from river so that this pure floor imports only
numpy, scipy and pandas; ``tests/test_drift.py`` checks them against river when it is installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from labelloop.core.stats import wilson_interval


class DDM:
    """Drift Detection Method (Gama et al., 2004) on a stream of errors (1) and successes (0).

    After ``warm_start`` outcomes it tracks the error rate p and its standard deviation s and
    remembers the minimum of p + s; a warning when p + s exceeds p_min + 2 s_min, a drift at
    3 s_min, after which it starts over. The same defaults as river's ``drift.binary.DDM``.
    """

    def __init__(
        self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0
    ) -> None:
        self.warm_start = warm_start
        self.warning_threshold = warning_threshold
        self.drift_threshold = drift_threshold
        self._reset()
        self.drift_detected = False

    def _reset(self) -> None:
        self.n = 0
        self.errors = 0.0
        self.p_min = math.inf
        self.s_min = math.inf
        self.ps_min = math.inf
        self.warning_detected = False

    def update(self, x: bool | float) -> DDM:
        if self.drift_detected:
            self._reset()
            self.drift_detected = False
        self.n += 1
        self.errors += float(x)
        p = self.errors / self.n
        s = math.sqrt(p * (1.0 - p) / self.n)
        if self.n < self.warm_start:
            return self
        if p + s <= self.ps_min:
            self.p_min, self.s_min, self.ps_min = p, s, p + s
        self.warning_detected = p + s > self.p_min + self.warning_threshold * self.s_min
        if p + s > self.p_min + self.drift_threshold * self.s_min:
            self.drift_detected = True
            self.warning_detected = False
        return self


class ADWIN:
    """ADaptive WINdowing (Bifet and Gavalda, 2007) over real values in [0, 1] (or any range).

    The window is kept as an exponential histogram (at most ``max_buckets`` buckets of each
    size 2^i, so memory is logarithmic in its length). Every ``clock`` updates each split of
    the window into an older and a newer part is tested; when their means differ by more than
    the Hoeffding-style bound at confidence ``delta``, the oldest buckets are dropped and
    ``drift_detected`` is set for that update. Defaults as river's ``drift.ADWIN``.
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        # levels[i]: buckets of 2^i values as [total, variance sum], oldest first; higher
        # levels hold older values.
        self.levels: list[list[list[float]]] = [[]]
        self.width = 0
        self.total = 0.0
        self.variance = 0.0  # sum of squared deviations from the window mean
        self.n_seen = 0
        self.drift_detected = False

    @property
    def estimation(self) -> float:
        return self.total / self.width if self.width else 0.0

    def update(self, x: float) -> ADWIN:
        x = float(x)
        self.n_seen += 1
        if self.width > 0:
            mean = self.total / self.width
            self.variance += self.width * (x - mean) ** 2 / (self.width + 1)
        self.width += 1
        self.total += x
        self.levels[0].append([x, 0.0])
        self._compress()
        self.drift_detected = False
        if self.n_seen % self.clock == 0 and self.width > self.grace_period:
            self.drift_detected = self._detect()
        return self

    def _compress(self) -> None:
        i = 0
        while i < len(self.levels) and len(self.levels[i]) > self.max_buckets:
            (t1, v1), (t2, v2) = self.levels[i][0], self.levels[i][1]
            size = 2.0**i
            merged = [t1 + t2, v1 + v2 + size * size / (2 * size) * (t1 / size - t2 / size) ** 2]
            del self.levels[i][:2]
            if i + 1 == len(self.levels):
                self.levels.append([])
            self.levels[i + 1].append(merged)
            i += 1

    def _drop_oldest(self) -> None:
        level = len(self.levels) - 1
        while not self.levels[level]:
            level -= 1
        t_b, v_b = self.levels[level].pop(0)
        n_b = 2.0**level
        rest_n = self.width - n_b
        if rest_n > 0:
            mu_b, mu_rest = t_b / n_b, (self.total - t_b) / rest_n
            self.variance -= v_b + n_b * rest_n / self.width * (mu_b - mu_rest) ** 2
        else:
            self.variance = 0.0
        self.width -= int(n_b)
        self.total -= t_b
        self.variance = max(self.variance, 0.0)
        while len(self.levels) > 1 and not self.levels[-1]:
            self.levels.pop()

    def _detect(self) -> bool:
        found = False
        changed = True
        while changed and self.width > self.grace_period:
            changed = False
            n0, s0 = 0.0, 0.0
            v = self.variance / self.width
            dd = math.log(2.0 * math.log(self.width) / self.delta)
            for level in range(len(self.levels) - 1, -1, -1):
                size = 2.0**level
                for total, _ in self.levels[level]:
                    n0 += size
                    s0 += total
                    n1 = self.width - n0
                    if n1 < self.min_window_length:
                        break
                    if n0 < self.min_window_length:
                        continue
                    m = 1.0 / (n0 - self.min_window_length + 1) + 1.0 / (
                        n1 - self.min_window_length + 1
                    )
                    eps = math.sqrt(2.0 * m * v * dd) + 2.0 / 3.0 * dd * m
                    if abs(s0 / n0 - (self.total - s0) / n1) > eps:
                        self._drop_oldest()
                        found = changed = True
                        break
                if changed:
                    break
        return found


def detect_changes(errors: Any, detector: Any) -> list[int]:
    """Positions in ``errors`` (1 = wrong, 0 = right) where ``detector`` signalled a drift.

    ``detector``: anything with ``update(x)`` and ``drift_detected`` (these, or river's)."""
    out = []
    for i, x in enumerate(np.asarray(errors, dtype=np.float64)):
        detector.update(x)
        if detector.drift_detected:
            out.append(i)
    return out


# -- quality over time -------------------------------------------------------------------------


def windowed_quality(
    correct: Any,
    window: int,
    *,
    y_true: Any = None,
    y_pred: Any = None,
    confidence: float = 0.95,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy per consecutive window of ``window`` outcomes with its Wilson interval.

    With ``y_true`` and ``y_pred`` (``correct`` may then be None) it adds macro F1 per window
    with a bootstrap percentile interval. Columns: window, start, stop, n, accuracy, low,
    high (and f1, f1_low, f1_high). The last window may be shorter.
    """
    if window < 1:
        raise ValueError(f"window={window}: expected at least 1")
    if correct is None:
        if y_true is None or y_pred is None:
            raise ValueError("windowed_quality: give correct, or y_true and y_pred")
        correct = np.asarray(y_true) == np.asarray(y_pred)
    ok = np.asarray(correct, dtype=bool)
    starts = np.arange(0, ok.size, window)
    stops = np.minimum(starts + window, ok.size)
    hits = np.add.reduceat(ok.astype(np.int64), starts) if ok.size else np.zeros(0, np.int64)
    n = stops - starts
    low, high = wilson_interval(hits, n, confidence)
    frame = pd.DataFrame(
        {
            "window": np.arange(starts.size),
            "start": starts,
            "stop": stops,
            "n": n,
            "accuracy": hits / np.maximum(n, 1),
            "low": np.atleast_1d(low),
            "high": np.atleast_1d(high),
        }
    )
    if y_true is not None and y_pred is not None:
        from sklearn.metrics import f1_score

        yt, yp = np.asarray(y_true), np.asarray(y_pred)
        rng = np.random.default_rng(seed)
        q = (1.0 - confidence) / 2.0
        f1s, lows, highs = [], [], []
        for a, b in zip(starts, stops, strict=True):
            t, p = yt[a:b], yp[a:b]
            f1s.append(float(f1_score(t, p, average="macro", zero_division=0)))
            idx = rng.integers(0, b - a, size=(n_boot, b - a))
            boot = [f1_score(t[i], p[i], average="macro", zero_division=0) for i in idx]
            lows.append(float(np.quantile(boot, q)))
            highs.append(float(np.quantile(boot, 1.0 - q)))
        frame["f1"], frame["f1_low"], frame["f1_high"] = f1s, lows, highs
    return frame


@dataclass
class AccuracyEstimate:
    """Confidence-based performance estimation, and how it compares with realised accuracy."""

    estimate: float
    n: int
    realised: float | None = None
    low: float | None = None
    high: float | None = None
    n_labelled: int = 0

    @property
    def error(self) -> float | None:
        return None if self.realised is None else self.estimate - self.realised

    @property
    def within_interval(self) -> bool | None:
        if self.low is None or self.high is None:
            return None
        return self.low <= self.estimate <= self.high


def estimate_accuracy(
    confidences: Any, *, correct: Any = None, confidence: float = 0.95
) -> AccuracyEstimate:
    """Expected accuracy where labels are missing: the mean calibrated confidence of the
    predicted class (CBPE). Calibrate first (the project's calibrators do); an over-confident
    model over-estimates. Given ``correct`` (audited outcomes for some or all of the same
    rows; NaN where unlabelled) it adds the realised accuracy and its Wilson interval.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    if conf.ndim == 2:
        conf = conf.max(axis=1)
    if conf.size == 0:
        raise ValueError("estimate_accuracy: no confidences")
    if np.any((conf < 0) | (conf > 1)):
        raise ValueError("estimate_accuracy: confidences must lie in [0, 1]")
    out = AccuracyEstimate(estimate=float(conf.mean()), n=int(conf.size))
    if correct is not None:
        c = np.asarray(correct, dtype=np.float64)
        c = c[~np.isnan(c)]
        if c.size:
            hits = int(c.sum())
            low, high = wilson_interval(hits, int(c.size), confidence)
            out.realised, out.low, out.high = hits / c.size, float(low), float(high)
            out.n_labelled = int(c.size)
    return out
