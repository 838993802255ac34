"""What a model registry is to labelloop: versions of a named model, aliases on them, and the
local folder each version's ``model.joblib`` can be read from.

One protocol, so the stages (promotion, serving, the edge export) do not care which registry
holds the models; :class:`~labelloop.registry.mlflow_registry.MlflowRegistry` is the one
implementation (MLflow's SQLite store in the project folder by default, any MLflow server by
``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: ``path`` is a local folder holding its ``model.joblib``."""

    name: str
    version: int
    path: Path
    run_id: str | None
    dataset_version: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created_at: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "dataset_version": self.dataset_version,
            "metrics": self.metrics,
            "aliases": list(self.aliases),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "tags": self.tags,
        }


class Registry(Protocol):
    """Versions and aliases of named models."""

    def register(
        self,
        name: str,
        model_dir: Path,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        pyfunc: bool = True,
    ) -> ModelVersion: ...

    def versions(self, name: str) -> list[ModelVersion]: ...

    def get(self, name: str, version: int) -> ModelVersion: ...

    def by_alias(self, name: str, alias: str) -> ModelVersion | None: ...

    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    def delete_alias(self, name: str, alias: str) -> None: ...
