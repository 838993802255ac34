"""Active learning: which items people should label next (uncertainty, disagreement,
representativeness, diversity), and near-duplicate groups that share one label."""

from labelloop.active.acquisition import (
    UNCERTAINTY_SCORES,
    entropy_score,
    label_set_uncertainty,
    least_confidence_score,
    margin_score,
    mean_kl_to_consensus,
    vote_entropy,
)
from labelloop.active.dedup import near_duplicate_groups, representatives, spread_labels
from labelloop.active.diversity import (
    density,
    k_center_greedy,
    typiclust_cold_start,
    uncertain_k_center,
)
from labelloop.active.priority import combined_priority, normalise_scores, top_k

__all__ = [
    "UNCERTAINTY_SCORES",
    "combined_priority",
    "density",
    "entropy_score",
    "k_center_greedy",
    "least_confidence_score",
    "label_set_uncertainty",
    "margin_score",
    "mean_kl_to_consensus",
    "near_duplicate_groups",
    "normalise_scores",
    "representatives",
    "spread_labels",
    "top_k",
    "typiclust_cold_start",
    "uncertain_k_center",
    "vote_entropy",
]
