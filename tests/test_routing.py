"""Calibration, precision-target thresholds, routing and audit sampling on synthetic arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from labelloop.routing import (
    TemperatureCalibrator,
    TopLabelIsotonicCalibrator,
    adjust_thresholds,
    audited_precision,
    expected_calibration_error,
    fit_calibrator,
    fit_thresholds,
    negative_log_likelihood,
    precision_lower_bound,
    proportion_interval,
    route,
)


def overconfident_model(n: int, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-calibrated logits sharpened by 3x: the model is right less often than it says."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, k))
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in true_p])
    sharp = np.exp(3 * logits)
    return sharp / sharp.sum(axis=1, keepdims=True), y


def model_with_known_precision(
    n: int, k: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence c is drawn uniformly; the prediction is right with probability c exactly."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(1.0 / k + 0.01, 1.0, size=n)
    pred = rng.integers(k, size=n)
    right = rng.random(n) < conf
    other = (pred + rng.integers(1, k, size=n)) % k
    y = np.where(right, pred, other)
    probs = np.tile(((1 - conf) / (k - 1))[:, None], (1, k))
    probs[np.arange(n), pred] = conf
    return probs, y, pred


# --- calibration ------------------------------------------------------------------------------


def test_temperature_and_selection_reduce_ece_on_overconfident_model():
    probs, y = overconfident_model(3000)
    test_probs, test_y = overconfident_model(3000, seed=1)
    cal = TemperatureCalibrator().fit(probs, y)
    assert cal.temperature == pytest.approx(3.0, rel=0.2)
    raw_ece = expected_calibration_error(test_probs, test_y)
    assert expected_calibration_error(cal.transform(test_probs), test_y) < raw_ece / 3
    chosen = fit_calibrator(probs, y)
    assert chosen.report is not None and chosen.report.chosen != "identity"
    assert chosen.report.scores["identity"] > chosen.report.scores[chosen.method]
    assert negative_log_likelihood(chosen.transform(test_probs), test_y) < negative_log_likelihood(
        test_probs, test_y
    )


def test_isotonic_keeps_predicted_label_and_sums_to_one():
    probs, y = overconfident_model(2000, k=5)
    cal = TopLabelIsotonicCalibrator().fit(probs, y)
    out = cal.transform(probs)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
    assert np.array_equal(out.argmax(axis=1), probs.argmax(axis=1))
    assert expected_calibration_error(out, y) < expected_calibration_error(probs, y) / 2


def test_calibration_keeps_identity_when_already_calibrated():
    probs, y, _ = model_with_known_precision(4000, 3)
    cal = fit_calibrator(probs, y, methods=("identity", "temperature"))
    assert cal.report.scores["identity"] <= cal.report.scores["temperature"] + 0.01


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="outside the 3 labels"):
        fit_calibrator(np.full((4, 3), 1 / 3), np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="non-finite value in row 1"):
        fit_calibrator(np.array([[0.5, 0.5], [np.nan, 1.0]]), np.array([0, 1]))


# --- bounds and thresholds --------------------------------------------------------------------


def test_wilson_lower_bound_rises_with_n_at_fixed_rate():
    n = np.array([10, 20, 50, 100, 1000, 10000])
    lows = precision_lower_bound(0.96 * n, n, alpha=0.05)
    assert np.all(np.diff(lows) > 0)
    assert lows[-1] < 0.96 and lows[-1] > 0.955


def test_bounds_agree_roughly_and_cover_the_estimate():
    for method in ("wilson", "clopper-pearson"):
        est, low, high = proportion_interval(45, 50, method=method)
        assert low < est < high
        assert 0.75 < low < 0.82 and 0.95 < high < 0.99
    assert precision_lower_bound(50, 50, method="clopper-pearson") == pytest.approx(
        0.05 ** (1 / 50), abs=1e-9
    )
    assert precision_lower_bound(0, 0) == 0.0


def test_thresholds_meet_target_on_synthetic_data_with_known_precision():
    probs, y, _ = model_with_known_precision(20000, 3, seed=2)
    ts = fit_thresholds(probs, y, target=0.9, alpha=0.05, min_support=30)
    fresh, fresh_y, fresh_pred = model_with_known_precision(20000, 3, seed=3)
    for j, t in enumerate(ts.labels):
        assert t.auto_accepts and t.lower_bound >= 0.9 and t.precision >= t.lower_bound
        accepted = (fresh_pred == j) & (fresh.max(axis=1) >= t.threshold)
        assert (fresh_y[accepted] == j).mean() >= 0.9
        # Precision above t is (1 + t) / 2 here; the lowest t that reaches 0.9 is ~0.8.
        assert 0.79 < t.threshold < 0.86


def test_thresholds_refuse_with_too_little_support():
    probs, y, _ = model_with_known_precision(20000, 3, seed=4)
    rare = np.zeros(20000, dtype=bool)
    keep = np.flatnonzero(probs.argmax(axis=1) == 2)[:20]
    rare[probs.argmax(axis=1) != 2] = True
    rare[keep] = True
    ts = fit_thresholds(probs[rare], y[rare], target=0.9, min_support=30, label_names="abc")
    assert ts["c"].threshold == math.inf and not ts["c"].auto_accepts
    assert "min_support" in ts["c"].reason and ts["c"].support == 20
    assert ts["a"].auto_accepts


def test_thresholds_use_the_bound_not_the_point_estimate():
    # 40 items, all right: point precision 1.0, Wilson 95% lower bound ~0.93 < 0.95.
    probs = np.tile([0.99, 0.01], (40, 1))
    y = np.zeros(40, dtype=int)
    assert fit_thresholds(probs, y, target=0.95, min_support=10).values[0] == math.inf
    assert fit_thresholds(np.tile(probs, (3, 1)), np.zeros(120, int), 0.95, min_support=10).values[
        0
    ] == pytest.approx(0.99)


# --- routing and audit ------------------------------------------------------------------------


def test_route_accepts_above_threshold_and_audits_about_the_rate():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, size=50000)
    probs = np.stack([conf, 1 - conf], axis=1)
    d = route(probs, np.array([0.8, math.inf]), audit_rate=0.05, seed=1)
    assert np.array_equal(d.auto, conf >= 0.8)
    assert not d.audit[~d.auto].any()
    assert d.audit[d.auto].mean() == pytest.approx(0.05, abs=0.006)
    assert set(d.route[d.audit]) == {"review"}
    again = route(probs, np.array([0.8, math.inf]), audit_rate=0.05, seed=1)
    assert np.array_equal(d.audit, again.audit)


def test_route_with_keys_gives_an_item_the_same_audit_in_any_batch():
    probs = np.tile([0.99, 0.01], (4000, 1))
    keys = [f"hash{i}" for i in range(4000)]
    whole = route(probs, [0.5, 0.5], audit_rate=0.1, keys=keys)
    half = route(probs[2000:], [0.5, 0.5], audit_rate=0.1, keys=keys[2000:])
    assert np.array_equal(whole.audit[2000:], half.audit)
    assert whole.audit.mean() == pytest.approx(0.1, abs=0.02)


def test_route_rejects_wrong_threshold_count():
    with pytest.raises(ValueError, match="expected 3 values"):
        route(np.full((2, 3), 1 / 3), [0.5, 0.5])


def test_audited_precision_interval():
    est, low, high = audited_precision([True] * 90 + [False] * 10)
    assert est == pytest.approx(0.9) and low < 0.9 < high
    assert math.isnan(audited_precision([])[0])


def test_adjust_thresholds_raises_only_labels_with_significant_shortfall():
    probs, y, _ = model_with_known_precision(20000, 2, seed=5)
    ts = fit_thresholds(probs, y, target=0.9, label_names=["a", "b"])
    rng = np.random.default_rng(0)
    n = 400
    labels = np.repeat([0, 1], n // 2)
    conf = rng.uniform(0.8, 1.0, size=n)
    # Label "a": precise; label "b": right only when confidence > 0.95.
    correct = np.where(labels == 0, rng.random(n) < 0.97, conf > 0.95)
    new = adjust_thresholds(ts, labels, conf, correct, min_remaining=10)
    assert new["a"].threshold == ts["a"].threshold
    assert 0.94 < new["b"].threshold < 0.96 and new["b"].threshold > ts["b"].threshold
    kept = conf[labels == 1] >= new["b"].threshold
    assert correct[labels == 1][kept].mean() >= 0.9
    assert "audit" in new["b"].reason


def test_adjust_thresholds_stops_auto_accepting_when_no_threshold_fixes_it():
    ts = fit_thresholds(*model_with_known_precision(20000, 2, seed=6)[:2], target=0.9)
    labels = np.zeros(100, dtype=int)
    conf = np.linspace(0.9, 1.0, 100)
    correct = np.arange(100) % 2 == 0  # half wrong at every confidence
    new = adjust_thresholds(ts, labels, conf, correct)
    assert new.labels[0].threshold == math.inf and new.labels[1] == ts.labels[1]


def test_fit_calibrator_skips_isotonic_on_few_items():
    probs, y = overconfident_model(60)
    cal = fit_calibrator(probs, y)
    assert "isotonic" not in cal.report.scores and cal.report.n_items == 60
