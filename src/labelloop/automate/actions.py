"""What a policy can do. Each action takes the project context and the run's registry and
returns a small dict (``summary`` plus figures) for the run's record; an exception fails the
run and stops the actions after it.

* ``prioritize_drift``: a classifier tells the newest items from the reference items; queued
  items it places among the new ones (probability of being new at least
  ``monitoring.drift_item_probability``) gain ``automation.drift_boost`` priority, and drifted
  items machines labeled are sent to a person as audits: drift detection feeding the queue.
* ``retrain_student``: the annotation loop's retrain (the student is registered).
* ``train``: the deployed model trained and registered as the challenger.
* ``promote``: the challenger replaces the champion only if it earns it (``registry.promote``);
  a refusal is an outcome, not a failure.
* ``rollback``: the champion goes back to the version it replaced when that one is
  significantly more accurate on the latest held-out human labels (validation and test
  splits, never trained on; McNemar, ``model.promotion_alpha``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from labelloop.automate.signals import drift_vectors
from labelloop.core.stats import mcnemar_exact
from labelloop.registry import ProjectRegistry
from labelloop.store.context import ProjectContext

Action = Callable[[ProjectContext, ProjectRegistry], dict[str, Any]]


def drift_probabilities(reference: np.ndarray, current: np.ndarray, seed: int = 0) -> np.ndarray:
    """For each current vector, the probability (cross-fitted: each half scored by a model fit
    on the other) that it belongs to the current window rather than the reference."""
    from sklearn.linear_model import LogisticRegression

    X = np.vstack([reference, current])
    y = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, 2, size=len(X))
    out = np.zeros(len(X))
    for k in (0, 1):
        train, test = fold != k, fold == k
        if len(set(y[train])) < 2 or not test.any():
            continue
        # Embeddings are unit vectors: a weak penalty lets the classifier separate a real shift.
        model = LogisticRegression(max_iter=1000, class_weight="balanced", C=10.0)
        model.fit(X[train], y[train])
        out[test] = model.predict_proba(X[test])[:, 1]
    return out[len(reference) :]


def prioritize_drift(ctx: ProjectContext, reg: ProjectRegistry) -> dict[str, Any]:
    from labelloop.review.queue import ReviewQueue
    from labelloop.store.models import ItemState
    from labelloop.store.monitoring import items_in_state, queued_priorities

    vectors = drift_vectors(ctx)
    if vectors is None:
        return {"summary": "too few items to compare", "drifted": 0}
    ref, cur, ids = vectors
    p_new = drift_probabilities(ref, cur)
    cut = ctx.config.monitoring.drift_item_probability
    drifted = [i for i, p in zip(ids, p_new, strict=True) if p >= cut]
    boost = ctx.config.automation.drift_boost
    queued = queued_priorities(ctx.db, ctx.id)
    raised = [i for i in drifted if i in queued]
    queue = ReviewQueue(ctx.db, ctx.id, ctx.config.task)
    if raised:
        queue.set_priorities(raised, [queued[i] + boost for i in raised])
    auto = items_in_state(ctx.db, ctx.id, drifted, ItemState.auto)
    if auto:
        queue.enqueue(auto, [boost] * len(auto), reason="audit")
    return {
        "summary": f"{len(drifted)} of {len(ids)} newest items drifted; {len(raised)} queued "
        f"items raised by {boost:g}, {len(auto)} machine-labeled sent to people",
        "drifted": len(drifted),
        "raised": raised,
        "sent": auto,
    }


def retrain_student(ctx: ProjectContext, reg: ProjectRegistry) -> dict[str, Any]:
    from labelloop.annotate.feedback import retrain
    from labelloop.registry.student import register_student

    report, _ = retrain(ctx, flag_label_issues=ctx.config.loop.flag_label_issues)
    registered = None
    if ctx.config.model.register_student and report.trained:
        mv = register_student(reg, report)
        registered = mv.version if mv else None
    return {
        "summary": f"student retrained on {report.n_labels} labels"
        + (f", registered v{registered}" if registered else ""),
        "n_labels": report.n_labels,
        "held_out_macro_f1": report.held_out_macro_f1,
        "student_version": registered,
    }


def train(ctx: ProjectContext, reg: ProjectRegistry) -> dict[str, Any]:
    from labelloop.mlops import train as train_model
    from labelloop.registry import register_trained

    result = train_model(ctx)
    mv = register_trained(reg, result)
    score = result.test_metrics.get(result.metric)
    return {
        "summary": f"challenger v{mv.version} ({result.winner}, test {result.metric} {score:.4f})",
        "version": mv.version,
        "test_metrics": {k: v for k, v in result.test_metrics.items() if isinstance(v, float)},
    }


def promote(ctx: ProjectContext, reg: ProjectRegistry) -> dict[str, Any]:
    from labelloop.registry import CHALLENGER
    from labelloop.registry import promote as promote_version

    if reg.by_alias(CHALLENGER) is None:
        return {"summary": "no challenger", "promoted": False}
    decision = promote_version(reg, actor="automation")
    return {"summary": decision.reason, **decision.as_dict()}


def rollback(ctx: ProjectContext, reg: ProjectRegistry) -> dict[str, Any]:
    from labelloop.mlops.predictor import Predictor
    from labelloop.registry import CHAMPION
    from labelloop.registry import rollback as rollback_version
    from labelloop.registry.lifecycle import replaced_by

    champion = reg.by_alias(CHAMPION)
    if champion is None:
        return {"summary": "no champion", "rolled_back": False}
    previous = replaced_by(reg, champion.version)
    if previous is None:
        return {"summary": f"champion v{champion.version} replaced nothing", "rolled_back": False}
    from labelloop.automate.signals import held_out_recent, model_inputs, stored_embedder

    rows = held_out_recent(ctx)
    if not rows:
        return {"summary": "no held-out human labels to compare on", "rolled_back": False}

    inputs = model_inputs(ctx, [c for _, c, _ in rows])
    truth = np.array([label for _, _, label in rows])
    right = {}
    for mv in (champion, reg.get(previous)):
        answers = Predictor.load(mv.path, stored_embedder(ctx)).predict_frame(inputs)
        right[mv.version] = answers["label"].to_numpy() == truth
    test = mcnemar_exact(right[champion.version], right[previous])
    accuracy = {f"v{v}": float(r.mean()) for v, r in right.items()}
    if test["p_value"] >= ctx.config.model.promotion_alpha:
        return {
            "summary": f"kept champion v{champion.version}: v{previous} not significantly "
            f"better on the latest {len(rows)} human labels (p={test['p_value']:.3g})",
            "rolled_back": False,
            "accuracy": accuracy,
        }
    reason = (
        f"v{previous} more accurate than v{champion.version} on the latest {len(rows)} human "
        f"labels ({accuracy[f'v{previous}']:.3f} vs {accuracy[f'v{champion.version}']:.3f}, "
        f"p={test['p_value']:.3g})"
    )
    rollback_version(reg, previous, reason=reason, actor="automation")
    return {"summary": f"rolled back: {reason}", "rolled_back": True, "accuracy": accuracy}


ACTIONS: dict[str, Action] = {
    "prioritize_drift": prioritize_drift,
    "retrain_student": retrain_student,
    "train": train,
    "promote": promote,
    "rollback": rollback,
}
