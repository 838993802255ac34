"""The model registry (issue 14, item 5): MLflow tracking and registry, the ``champion`` and
``challenger`` aliases, promotion by a paired test and the ship thresholds, rollback, and an
append-only history of all of it."""

from labelloop.registry.base import ALIASES, CHALLENGER, CHAMPION, ModelVersion, Registry
from labelloop.registry.lifecycle import (
    ProjectRegistry,
    PromotionDecision,
    open_registry,
    promote,
    register_trained,
    rollback,
)
from labelloop.registry.mlflow_registry import MlflowRegistry, RegistryError

__all__ = [
    "ALIASES",
    "CHALLENGER",
    "CHAMPION",
    "MlflowRegistry",
    "ModelVersion",
    "ProjectRegistry",
    "PromotionDecision",
    "Registry",
    "RegistryError",
    "open_registry",
    "promote",
    "register_trained",
    "rollback",
]
