"""Learning from human labels: choosing the student model and semi-supervised suggestions.

Pure functions over numpy arrays (no storage, no HTTP); the feedback loop wires them in.

    sel = select_student(X_human, y_human)            # sel.estimator, sel.table, sel.seconds
    P = label_spreading_probs(X_all, human_idx, y_idx) # (n, K) suggestions, labeler "spreading"
    rows, labels = pseudo_labels(P, human_idx, 0.9)    # confident unlabeled items
"""

from labelloop.learn.selection import (
    HeldOutScores,
    Selection,
    cross_val_scores,
    default_candidates,
    holdout_scores,
    make_folds,
    select_student,
    should_replace,
)
from labelloop.learn.semi_supervised import (
    label_spreading_probs,
    pseudo_labels,
    self_training_probs,
)

__all__ = [
    "HeldOutScores",
    "Selection",
    "cross_val_scores",
    "default_candidates",
    "holdout_scores",
    "label_spreading_probs",
    "make_folds",
    "pseudo_labels",
    "select_student",
    "self_training_probs",
    "should_replace",
]
