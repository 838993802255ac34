"""Register, promote and roll back a project's deployed model, with every step in the history.

* ``register_trained``: a training result becomes a new registered version with the alias
  ``challenger`` (the loop's student is registered the same way under ``<name>-student``).
* ``promote``: the challenger (or a named version) replaces the ``champion`` only when it
  meets every ship threshold and, if a champion exists, is better on the same test items by
  a paired test (McNemar's exact test on right/wrong for classification, a paired bootstrap on
  absolute errors for regression) at ``model.promotion_alpha``. A refusal is recorded too.
* ``rollback``: the champion goes back to the version it replaced (or a named one).

The history (``store.model_history``) is append-only; MLflow holds the versions and aliases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from labelloop.core.errors import LabelloopError
from labelloop.core.stats import mcnemar_exact, paired_bootstrap
from labelloop.mlops.datasets import snapshot
from labelloop.mlops.evaluate import classification_metrics, regression_metrics, ship_check
from labelloop.mlops.predictor import Predictor
from labelloop.mlops.train import TrainResult, feature_frame, targets
from labelloop.registry.base import CHALLENGER, CHAMPION, ModelVersion, Registry
from labelloop.registry.mlflow_registry import MlflowRegistry, RegistryError, model_name
from labelloop.store.context import ProjectContext
from labelloop.store.model_history import append_history, read_history


@dataclass
class ProjectRegistry:
    """A project's registry and the name its deployed model is registered under."""

    ctx: ProjectContext
    registry: Registry
    name: str

    @property
    def student_name(self) -> str:
        return f"{self.name}-student"

    def by_alias(self, alias: str, name: str | None = None) -> ModelVersion | None:
        return self.registry.by_alias(name or self.name, alias)

    def get(self, version: int, name: str | None = None) -> ModelVersion:
        return self.registry.get(name or self.name, version)

    def resolve(self, *, version: int | None = None, alias: str | None = None) -> ModelVersion:
        """The registered ``version``, or the one ``alias`` (default ``champion``) points at;
        RegistryError when no version holds the alias."""
        if version is not None:
            return self.get(version)
        found = self.by_alias(alias or CHAMPION)
        if found is None:
            raise RegistryError(
                f"model {self.name!r} has no version with alias {alias or CHAMPION!r} "
                "(labelloop train, then promote)"
            )
        return found

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        return self.registry.versions(name or self.name)

    def history(self, name: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        return read_history(self.ctx.db, self.ctx.id, name or self.name, limit)

    def set_alias(self, alias: str, version: int, *, reason: str, actor: str | None = None) -> None:
        before = self.by_alias(alias)
        self.registry.set_alias(self.name, alias, version)
        append_history(
            self.ctx.db,
            self.ctx.id,
            self.name,
            "alias",
            alias=alias,
            version=version,
            previous_version=before.version if before else None,
            reason=reason,
            actor=actor,
        )


def open_registry(ctx: ProjectContext, tracking_uri: str | None = None) -> ProjectRegistry:
    """The project's registry: MLflow's SQLite store in the project folder unless
    ``MLFLOW_TRACKING_URI`` (or ``tracking_uri``) names another."""
    name = model_name(ctx.config.name, ctx.config.model.registry_name)
    return ProjectRegistry(ctx, MlflowRegistry(ctx.folder, tracking_uri), name)


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def register_trained(
    reg: ProjectRegistry,
    result: TrainResult,
    *,
    name: str | None = None,
    actor: str | None = None,
) -> ModelVersion:
    """Log ``result`` (params, cross-validation, test metrics, plots, the model) as a run and
    register it as a new version of the project's model, aliased ``challenger``."""
    from pathlib import Path

    name = name or reg.name
    metrics = {f"test_{k}": v for k, v in _flat_metrics(result.test_metrics).items()}
    metrics |= {f"cv_{k}": float(v) for k, v in result.cv_scores.items()}
    params = {"winner": result.winner, **{f"param_{k}": v for k, v in result.params.items()}}
    params |= {f"split_{k}": v for k, v in result.split_sizes.items()}
    tags = {
        "dataset_version": result.dataset_version,
        "winner": result.winner,
        "primary_metric": result.metric,
        "ships": str(result.ships).lower(),
    }
    mv = reg.registry.register(
        name, Path(result.model_path).parent, params=params, metrics=metrics, tags=tags
    )
    reg.registry.set_alias(name, CHALLENGER, mv.version)
    append_history(
        reg.ctx.db,
        reg.ctx.id,
        name,
        "register",
        alias=CHALLENGER,
        version=mv.version,
        reason=f"trained on dataset {result.dataset_version}: {result.winner}, "
        f"test {result.metric} {result.test_metrics.get(result.metric, float('nan')):.4f}",
        details={"test_metrics": _flat_metrics(result.test_metrics), "ship": result.ship},
        actor=actor,
    )
    return reg.get(mv.version, name)


@dataclass
class PromotionDecision:
    """What ``promote`` decided and the evidence: both models' scores on the same test items,
    the paired test, and each ship threshold."""

    promoted: bool
    reason: str
    challenger: int
    champion: int | None
    test_items: int
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    paired_test: dict[str, float] = field(default_factory=dict)
    ship: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _test_outcomes(
    ctx: ProjectContext, versions: list[ModelVersion]
) -> tuple[np.ndarray, list[dict[str, Any]], list[np.ndarray]]:
    """The current test split's targets and, per version, its metrics and predictions."""
    ds = snapshot(ctx, save=False)
    test = ds.split("test")
    if test.empty:
        raise LabelloopError("the test split is empty: label more items before promoting")
    X, _, featurizer = feature_frame(ctx, test["content"].tolist())
    task = ctx.config.model.task
    y = targets(test, task)
    metrics, predictions = [], []
    for mv in versions:
        predictor = Predictor.load(mv.path)
        if predictor.featurizer != featurizer:
            raise RegistryError(
                f"version {mv.version} was trained on features {predictor.featurizer!r}, the "
                f"project now makes {featurizer!r}: it cannot be compared; retrain"
            )
        Xv = X[predictor.columns] if predictor.featurizer == "table" else X
        pred = np.asarray(predictor.pipeline.predict(Xv))
        if task == "classification":
            proba = predictor.pipeline.predict_proba(Xv)
            m = classification_metrics(y, pred, proba, list(predictor.pipeline.classes_))
        else:
            m = regression_metrics(y, pred.astype(float))
        metrics.append(m)
        predictions.append(pred)
    return y, metrics, predictions


def promote(
    reg: ProjectRegistry,
    version: int | None = None,
    *,
    force: bool = False,
    reason: str | None = None,
    actor: str | None = None,
) -> PromotionDecision:
    """Make ``version`` (default: the ``challenger``) the champion if it earns it (see the
    module's docstring); ``force`` skips the checks and records ``reason``. The decision,
    either way, goes to the history."""
    ctx = reg.ctx
    cfg = ctx.config.model
    if force and not (reason or "").strip():
        raise RegistryError("a forced promotion needs a reason (it is kept in the history)")
    if version is None:
        challenger = reg.by_alias(CHALLENGER)
        if challenger is None:
            raise RegistryError("no challenger to promote: train one (labelloop train)")
    else:
        challenger = reg.get(version)
    champion = reg.by_alias(CHAMPION)
    if champion is not None and champion.version == challenger.version:
        raise RegistryError(f"version {challenger.version} is already the champion")
    compared = [challenger] + ([champion] if champion is not None else [])
    y, metrics, predictions = _test_outcomes(ctx, compared)
    ship = ship_check(metrics[0], cfg.ship_thresholds)
    decision = PromotionDecision(
        promoted=False,
        reason="",
        challenger=challenger.version,
        champion=champion.version if champion else None,
        test_items=len(y),
        challenger_metrics=_flat_metrics(metrics[0]),
        champion_metrics=_flat_metrics(metrics[1]) if champion else {},
        ship=ship,
    )
    missed = [
        f"{k} {metrics[0].get(k, float('nan')):.4f} vs {cfg.ship_thresholds[k]}"
        for k, ok in ship.items()
        if not ok
    ]
    if champion is not None:
        if cfg.task == "classification":
            test = mcnemar_exact(predictions[1] == y, predictions[0] == y)
        else:
            test = paired_bootstrap(
                np.abs(predictions[1].astype(float) - y), np.abs(predictions[0].astype(float) - y)
            )
        decision.paired_test = test
    if force:
        decision.promoted = True
        decision.reason = f"forced: {reason or 'no reason given'}"
    elif missed:
        decision.reason = "misses ship threshold(s): " + "; ".join(missed)
    elif champion is None:
        decision.promoted = True
        decision.reason = "first champion: every ship threshold met"
    elif decision.paired_test["p_value"] < cfg.promotion_alpha:
        decision.promoted = True
        decision.reason = (
            f"better than champion v{champion.version} on {len(y)} test items "
            f"(p={decision.paired_test['p_value']:.4g} < {cfg.promotion_alpha})"
        )
    else:
        decision.reason = (
            f"not significantly better than champion v{champion.version} on {len(y)} test "
            f"items (p={decision.paired_test['p_value']:.4g} >= {cfg.promotion_alpha})"
        )
    if reason and not force:
        decision.reason += f"; note: {reason}"
    if decision.promoted:
        reg.registry.set_alias(reg.name, CHAMPION, challenger.version)
        current = reg.by_alias(CHALLENGER)
        if current is not None and current.version == challenger.version:
            reg.registry.delete_alias(reg.name, CHALLENGER)
    append_history(
        ctx.db,
        ctx.id,
        reg.name,
        "promote" if decision.promoted else "refuse",
        alias=CHAMPION,
        version=challenger.version,
        previous_version=champion.version if champion else None,
        reason=decision.reason,
        details=decision.as_dict(),
        actor=actor,
    )
    return decision


def rollback(
    reg: ProjectRegistry,
    version: int | None = None,
    *,
    reason: str,
    actor: str | None = None,
) -> ModelVersion:
    """Point ``champion`` back at ``version`` (default: the one the current champion
    replaced, from the history) and record why."""
    if not reason.strip():
        raise RegistryError("a rollback needs a reason (it is kept in the history)")
    champion = reg.by_alias(CHAMPION)
    if champion is None:
        raise RegistryError("there is no champion to roll back")
    if version is None:
        version = replaced_by(reg, champion.version)
        if version is None:
            raise RegistryError(
                f"champion v{champion.version} replaced no earlier version; name one (--version)"
            )
    if version == champion.version:
        raise RegistryError(f"version {version} is already the champion")
    target = reg.get(version)
    reg.registry.set_alias(reg.name, CHAMPION, target.version)
    append_history(
        reg.ctx.db,
        reg.ctx.id,
        reg.name,
        "rollback",
        alias=CHAMPION,
        version=target.version,
        previous_version=champion.version,
        reason=reason,
        actor=actor,
    )
    return reg.get(target.version)


def replaced_by(reg: ProjectRegistry, version: int) -> int | None:
    """The version that was champion before ``version`` last became champion."""
    for row in reg.history():
        if row["alias"] == CHAMPION and row["version"] == version:
            if row["action"] in ("promote", "rollback", "alias"):
                return row["previous_version"]
    return None
