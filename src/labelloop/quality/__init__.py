"""Quality of labels: agreement, aggregation of several annotators, gold checks, label issues,
and bias checks of machine labelers. Pure functions over numpy arrays and pandas tables."""

from labelloop.quality.aggregation import (
    Aggregation,
    DawidSkeneResult,
    aggregate_dawid_skene,
    dawid_skene,
    majority_vote,
    majority_vote_counts,
)
from labelloop.quality.agreement import (
    AgreementReport,
    agreement_report,
    cohen_kappa,
    coincidence_matrix,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    pairwise_cohen_kappa,
)
from labelloop.quality.annotations import EncodedAnnotations, encode_annotations
from labelloop.quality.bias import (
    compare_label_distributions,
    mode_collapse,
    order_sensitivity,
)
from labelloop.quality.gold import score_against_gold, wilson_interval
from labelloop.quality.label_issues import (
    confident_joint,
    find_label_issues,
    out_of_fold_pred_probs,
    per_class_thresholds,
)

__all__ = [
    "Aggregation",
    "AgreementReport",
    "DawidSkeneResult",
    "EncodedAnnotations",
    "aggregate_dawid_skene",
    "agreement_report",
    "cohen_kappa",
    "coincidence_matrix",
    "compare_label_distributions",
    "confident_joint",
    "dawid_skene",
    "encode_annotations",
    "find_label_issues",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "majority_vote",
    "majority_vote_counts",
    "mode_collapse",
    "order_sensitivity",
    "out_of_fold_pred_probs",
    "pairwise_cohen_kappa",
    "per_class_thresholds",
    "score_against_gold",
    "wilson_interval",
]
