"""Routing: calibrate labeler confidences, fit per-label thresholds for a precision target
(one threshold on whole label sets for multi-label tasks), decide auto-accept vs review, and
audit a share of the auto-accepted labels."""

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
    SetDecisions,
    adjust_set_threshold,
    adjust_thresholds,
    audited_precision,
    route,
    route_sets,
)
from labelloop.routing.thresholds import (
    LabelThreshold,
    SetThreshold,
    ThresholdSet,
    fit_set_threshold,
    fit_thresholds,
    precision_lower_bound,
    predicted_sets,
    proportion_interval,
)

__all__ = [
    "CalibrationReport",
    "Calibrator",
    "Decisions",
    "IdentityCalibrator",
    "LabelThreshold",
    "SetDecisions",
    "SetThreshold",
    "TemperatureCalibrator",
    "ThresholdSet",
    "TopLabelIsotonicCalibrator",
    "adjust_set_threshold",
    "adjust_thresholds",
    "audited_precision",
    "expected_calibration_error",
    "fit_calibrator",
    "fit_set_threshold",
    "fit_thresholds",
    "negative_log_likelihood",
    "precision_lower_bound",
    "predicted_sets",
    "proportion_interval",
    "route",
    "route_sets",
]
