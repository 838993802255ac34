"""How often people's labels are right, measured on gold items (items whose answer is known)
and, for rechecks, on answered rechecks too.

Rechecks weigh the model against it (``annotate.feedback``; ``reviewer_accuracy``, gold and
answered rechecks), and routing corrects the calibration sample's agreement with people for it
(``routing.thresholds.precision_through_noise``; ``reviewer_accuracy_high``, gold answers only,
since rechecks are no random sample): a machine that agrees with 90%-accurate people 88% of the
time is right about 97% of the time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import beta

from labelloop.quality.gold import score_against_gold
from labelloop.quality.label_issues import reviewer_accuracy_estimate
from labelloop.review.gold import gold_answers
from labelloop.store.context import ProjectContext
from labelloop.store.reads import gold_answers_given, recheck_answers

REVIEWER_ACCURACY_PRIOR = 0.95  # a person's label is right this often until measured
REVIEWER_PRIOR_WEIGHT = 20.0  # how many gold answers' worth the prior counts for


def gold_scores(ctx: ProjectContext) -> pd.DataFrame:
    """Each reviewer's accuracy on the gold items they answered (``score_against_gold``: one row
    per annotator, with a Wilson interval)."""
    given = gold_answers_given(ctx.db, ctx.id)
    return score_against_gold(given, gold_answers(ctx) if len(given) else {})


def gold_counts(ctx: ProjectContext) -> tuple[int, int]:
    """(right, answered): every answer people gave on gold items, pooled over reviewers."""
    scores = gold_scores(ctx)
    if not len(scores):
        return 0, 0
    return int(scores["n_correct"].sum()), int(scores["n_gold"].sum())


def recheck_evidence(ctx: ProjectContext) -> tuple[np.ndarray, np.ndarray, int]:
    """(the model's probability of the given label, whether the second person changed it, the
    number of labels) for each answered recheck that recorded the probability."""
    p_given, changed = [], []
    for payload, answers in recheck_answers(ctx.db, ctx.id):
        if len(answers) >= 2 and payload.get("p_given") is not None:
            p_given.append(float(payload["p_given"]))
            changed.append(answers[1] != answers[0])
    return (
        np.array(p_given, dtype=np.float64),
        np.array(changed, dtype=bool),
        len(ctx.config.labels),
    )


def reviewer_accuracy(ctx: ProjectContext) -> tuple[float, int]:
    """(people's accuracy, the answers it rests on): the posterior mean from a prior of
    ``REVIEWER_ACCURACY_PRIOR`` worth ``REVIEWER_PRIOR_WEIGHT`` answers, the gold answers, and
    the answered rechecks (``quality.label_issues.reviewer_accuracy_estimate``): doubted labels
    that hold up raise it, so a careful team gets fewer rechecks; doubted labels that are
    overturned lower it, so a careless one gets more."""
    right, n = gold_counts(ctx)
    p_given, changed, k = recheck_evidence(ctx)
    estimate = reviewer_accuracy_estimate(
        right,
        n,
        p_given,
        changed,
        max(k, 2),
        prior_mean=REVIEWER_ACCURACY_PRIOR,
        prior_weight=REVIEWER_PRIOR_WEIGHT,
    )
    return estimate, n + len(p_given)


def reviewer_accuracy_high(ctx: ProjectContext, alpha: float = 0.025) -> float:
    """An upper bound (level 1 - alpha, Jeffreys) on people's accuracy from the gold answers
    alone; 1 when there are none, so nothing is corrected before it is measured."""
    right, n = gold_counts(ctx)
    if n == 0 or right == n:
        return 1.0
    return float(beta.ppf(1.0 - alpha, right + 0.5, n - right + 0.5))
