"""Monitoring: data and prediction drift, change detectors on outcome streams, quality over
time. Pure functions over arrays and frames (no store, no I/O), like the other pure floors."""

from labelloop.monitor.detectors import (
    ADWIN,
    DDM,
    AccuracyEstimate,
    detect_changes,
    estimate_accuracy,
    windowed_quality,
)
from labelloop.monitor.drift import (
    ColumnDrift,
    ColumnProfile,
    DriftReport,
    EmbeddingDrift,
    ReferenceProfile,
    WindowCounts,
    check_drift,
    column_drift,
    domain_classifier_auc,
    embedding_drift,
    infer_kind,
    mmd_permutation,
    prediction_drift,
    profile_reference,
    window_counts,
)

__all__ = [
    "ADWIN",
    "DDM",
    "AccuracyEstimate",
    "ColumnDrift",
    "ColumnProfile",
    "DriftReport",
    "EmbeddingDrift",
    "ReferenceProfile",
    "WindowCounts",
    "check_drift",
    "column_drift",
    "detect_changes",
    "domain_classifier_auc",
    "embedding_drift",
    "estimate_accuracy",
    "infer_kind",
    "mmd_permutation",
    "prediction_drift",
    "profile_reference",
    "window_counts",
    "windowed_quality",
]
