"""Routing: calibrate labeler confidences, fit per-label thresholds for a precision target,
decide auto-accept vs review, and audit a share of the auto-accepted labels."""

from labelloop.routing.calibration import (
    CalibrationReport,
    Calibrator,
    IdentityCalibrator,
    TemperatureCalibrator,
    TopLabelIsotonicCalibrator,
    expected_calibration_error,
    fit_calibrator,
    negative_log_likelihood,
)
from labelloop.routing.router import (
    Decisions,
    adjust_thresholds,
    audited_precision,
    route,
)
from labelloop.routing.thresholds import (
    LabelThreshold,
    ThresholdSet,
    fit_thresholds,
    precision_lower_bound,
    proportion_interval,
)

__all__ = [
    "CalibrationReport",
    "Calibrator",
    "Decisions",
    "IdentityCalibrator",
    "LabelThreshold",
    "TemperatureCalibrator",
    "ThresholdSet",
    "TopLabelIsotonicCalibrator",
    "adjust_thresholds",
    "audited_precision",
    "expected_calibration_error",
    "fit_calibrator",
    "fit_thresholds",
    "negative_log_likelihood",
    "precision_lower_bound",
    "proportion_interval",
    "route",
]
