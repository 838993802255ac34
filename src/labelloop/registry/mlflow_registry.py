"""MLflow as labelloop's tracking store and model registry.

Default: a SQLite tracking and registry store in the project folder (``mlflow.db``) and
artifacts beside it (``mlartifacts/``), no server; ``MLFLOW_TRACKING_URI`` (or the
``tracking_uri`` argument) points at any MLflow server instead. Only ``mlflow-skinny`` is
needed (the client, the SQL store through the SQLAlchemy and Alembic labelloop already has);
the MLflow UI is the full ``mlflow`` package, optional.

Each registered version is a run (its parameters, metrics, reports and plots) plus an MLflow
pyfunc model (``registry.pyfunc``) that carries the saved pipeline, so ``mlflow models serve``
and ``mlflow.pyfunc.load_model`` work on it too. The version's ``model.joblib`` is read from
the local artifact folder directly, or downloaded once into ``.model-cache/`` for a remote
store.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from labelloop.core.errors import LabelloopError
from labelloop.registry.base import ModelVersion

MODEL_ARTIFACT = "model"  # the pyfunc's folder inside the run's artifacts
MODEL_FILE = "model.joblib"
EXPERIMENT_PREFIX = "labelloop/"
_FLUENT_LOCK = threading.Lock()  # mlflow's fluent API keeps global state


class RegistryError(LabelloopError):
    """The registry refused or could not do something; the message says what."""


def model_name(project_name: str, configured: str | None = None) -> str:
    """A registry-safe name (used in ``models:/<name>@<alias>`` URIs)."""
    raw = configured or project_name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.")
    if not name:
        raise RegistryError(f"cannot make a model name from {raw!r}")
    return name


def default_tracking_uri(folder: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(folder).resolve()}/mlflow.db"


def _quiet_mlflow() -> None:
    # MLflow's SQL store logs each Alembic migration at INFO on first use, and its artifact
    # calls draw their own progress bars; labelloop's CLI prints its own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _no_dir() -> Iterator[None]:
    yield None


class MlflowRegistry:
    """:class:`~labelloop.registry.base.Registry` over an MLflow tracking and registry store."""

    def __init__(self, folder: str | Path, tracking_uri: str | None = None) -> None:
        try:
            import mlflow  # noqa: F401
            from mlflow import MlflowClient
        except ImportError as exc:  # pragma: no cover - mlflow-skinny is a default dependency
            raise RegistryError(
                "the model registry needs MLflow: pip install mlflow-skinny"
            ) from exc
        _quiet_mlflow()
        self.folder = Path(folder).resolve()
        self.tracking_uri = tracking_uri or default_tracking_uri(self.folder)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # -- runs ----------------------------------------------------------------------------

    def _experiment_id(self, name: str) -> str:
        exp_name = EXPERIMENT_PREFIX + name
        exp = self.client.get_experiment_by_name(exp_name)
        if exp is not None:
            return str(exp.experiment_id)
        artifacts = None
        if self.tracking_uri.startswith("sqlite:"):
            artifacts = (self.folder / "mlartifacts").as_uri()
        return str(self.client.create_experiment(exp_name, artifact_location=artifacts))

    @contextmanager
    def _fluent(self) -> Iterator[Any]:
        import mlflow

        with _FLUENT_LOCK:
            before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            try:
                yield mlflow
            finally:
                mlflow.set_tracking_uri(before[0])
                mlflow.set_registry_uri(before[1])

    def register(
        self,
        name: str,
        model_dir: Path,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        pyfunc: bool = True,
    ) -> ModelVersion:
        """Log a run (params, metrics, every file of ``model_dir`` as reports) and the pyfunc
        model made from ``model_dir/model.joblib``, then register it as a new version. With
        ``pyfunc=False`` the files of ``model_dir`` are the model, as they are (the loop's
        student: a stored labeler set, which needs the project's embedder to answer)."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        from labelloop.registry.pyfunc import save_pyfunc

        model_dir = Path(model_dir)
        if pyfunc and not (model_dir / MODEL_FILE).is_file():
            raise RegistryError(f"no {MODEL_FILE} in {model_dir}")
        run = self.client.create_run(self._experiment_id(name), tags={"labelloop.model": name})
        run_id = run.info.run_id
        try:
            now = int(datetime.now(UTC).timestamp() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                params=[Param(k, str(v)[:6000]) for k, v in params.items()],
                tags=[RunTag(k, str(v)) for k, v in tags.items()],
            )
            if not pyfunc:
                self.client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT)
            reports = [p for p in model_dir.iterdir() if p.is_file() and p.name != MODEL_FILE]
            for path in reports if pyfunc else []:
                self.client.log_artifact(run_id, str(path), "reports")
            with tempfile.TemporaryDirectory() if pyfunc else _no_dir() as tmp:
                if tmp is not None:
                    pyfunc_dir = Path(tmp) / MODEL_ARTIFACT
                    save_pyfunc(model_dir / MODEL_FILE, pyfunc_dir)
                    self.client.log_artifacts(run_id, str(pyfunc_dir), MODEL_ARTIFACT)
            self.client.set_terminated(run_id)
        except Exception:
            self.client.set_terminated(run_id, status="FAILED")
            raise
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name)
        source = f"{run.info.artifact_uri}/{MODEL_ARTIFACT}"
        flavor = {"labelloop.flavor": "pyfunc" if pyfunc else "files"}
        mv = self.client.create_model_version(name, source, run_id=run_id, tags=tags | flavor)
        return self.get(name, int(mv.version))

    # -- versions and aliases ------------------------------------------------------------

    def _version(self, mv: Any) -> ModelVersion:
        run_metrics: dict[str, float] = {}
        dataset = mv.tags.get("dataset_version") if mv.tags else None
        if mv.run_id:
            run = self.client.get_run(mv.run_id)
            run_metrics = dict(run.data.metrics)
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
        return ModelVersion(
            name=mv.name,
            version=int(mv.version),
            path=self._local_model_dir(mv),
            run_id=mv.run_id,
            dataset_version=dataset,
            metrics=run_metrics,
            aliases=tuple(getattr(mv, "aliases", None) or ()),
            created_at=created,
            tags=dict(mv.tags or {}),
        )

    def _local_model_dir(self, mv: Any) -> Path:
        """The folder holding the version's model.joblib (the pyfunc's ``artifacts/``), or
        the model's own files for a version registered with ``pyfunc=False``."""
        inner = "artifacts" if (mv.tags or {}).get("labelloop.flavor") != "files" else ""
        source = str(mv.source)
        parsed = urlparse(source)
        if parsed.scheme in ("", "file"):
            return Path(unquote(parsed.path)) / inner
        cache = self.folder / ".model-cache" / mv.name / str(mv.version)
        if not any(cache.iterdir() if cache.is_dir() else ()):
            import mlflow

            cache.mkdir(parents=True, exist_ok=True)
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{mv.name}/{mv.version}",
                dst_path=str(cache),
                tracking_uri=self.tracking_uri,
            )
        return cache / inner

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version, oldest first; aliases from the registered model (MLflow's search
        leaves them out of its results)."""
        from dataclasses import replace

        from mlflow.exceptions import MlflowException

        try:
            aliases = dict(self.client.get_registered_model(name).aliases or {})
        except MlflowException:
            return []
        found = self.client.search_model_versions(f"name='{name}'")
        out = []
        for mv in sorted(found, key=lambda v: int(v.version)):
            held = tuple(a for a, v in aliases.items() if int(v) == int(mv.version))
            out.append(replace(self._version(mv), aliases=held))
        return out

    def get(self, name: str, version: int) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            return self._version(self.client.get_model_version(name, str(version)))
        except MlflowException as exc:
            raise RegistryError(f"model {name!r} has no version {version}") from exc

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        return self._version(mv)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.get(name, version)  # a clear error for a missing version
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException:
            pass
