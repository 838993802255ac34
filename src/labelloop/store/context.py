"""What a stage needs to work on one project: its folder, config, store and id.

Stages (suggest, route, retrain, export, import) take a ``ProjectContext`` instead of the
notebook facade, so a worker on another machine can rebuild one from a storage URL and a
project id (``ProjectContext.from_storage``) and nothing below ``api``, ``cli`` and ``demo``
imports ``labelloop.project``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from labelloop.core.config import ProjectConfig, load_project_config, parse_project_config
from labelloop.core.errors import StoreError
from labelloop.store.db import Database
from labelloop.store.models import ProjectRow
from labelloop.store.projects import ensure_project


@dataclass(frozen=True)
class ProjectContext:
    """One project's folder, validated config, open store and id (immutable)."""

    folder: Path
    config: ProjectConfig
    db: Database
    id: int

    @property
    def quarantine_dir(self) -> Path:
        return self.folder / "quarantine"

    @classmethod
    def connect(cls, folder: Path, config: ProjectConfig) -> ProjectContext:
        """Open the store the config names (migrating it) and find or create the project row."""
        db = Database(config.resolved_storage(folder.resolve()))
        with db.session() as s:
            project_id = ensure_project(s, config)
        return cls(folder, config, db, project_id)

    @classmethod
    def open(cls, path: str | Path = ".") -> ProjectContext:
        """The project in a folder (or given its YAML file)."""
        p = Path(path)
        folder = p if p.is_dir() else p.parent
        return cls.connect(folder, load_project_config(p))

    @classmethod
    def from_storage(
        cls, storage_url: str, project_id: int, folder: str | Path | None = None
    ) -> ProjectContext:
        """Rebuild a context from the store alone (a worker with no project folder): the
        config is the one the project row holds. ``folder`` defaults to the current one."""
        db = Database(storage_url)
        with db.engine.connect() as conn:
            data = conn.execute(
                select(ProjectRow.config).where(ProjectRow.id == project_id)
            ).scalar_one_or_none()
        if data is None:
            db.dispose()
            raise StoreError(f"{storage_url}: no project with id {project_id}")
        config = parse_project_config(data, f"{storage_url}#project={project_id}")
        return cls(Path(folder or "."), config, db, project_id)

    def close(self) -> None:
        self.db.dispose()
