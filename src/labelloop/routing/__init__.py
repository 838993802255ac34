"""Routing: calibrate labeler confidences, fit per-label thresholds for a precision target
on a random calibration sample with per-class shrinkage (one threshold on whole label sets for
multi-label tasks), decide auto-accept vs review, audit a share of the auto-accepted labels and
tighten a class when a sequential test on its audits says it falls short."""

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
from labelloop.routing.sample import (
    calibration_members,
    calibration_size,
    inclusion,
    keyed_uniforms,
)
from labelloop.routing.sequential import below_target, log_e_value, tighten_thresholds
from labelloop.routing.thresholds import (
    LabelThreshold,
    SetThreshold,
    ThresholdSet,
    effective_counts,
    fit_sample_thresholds,
    fit_set_threshold,
    fit_thresholds,
    precision_lower_bound,
    predicted_sets,
    proportion_interval,
    shrunk_lower_bounds,
    weighted_precision_bound,
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
    "below_target",
    "calibration_members",
    "calibration_size",
    "effective_counts",
    "fit_sample_thresholds",
    "inclusion",
    "keyed_uniforms",
    "log_e_value",
    "shrunk_lower_bounds",
    "tighten_thresholds",
    "weighted_precision_bound",
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
