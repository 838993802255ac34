"""The projects table: one row per annotation task."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from labelloop.core.config import ProjectConfig
from labelloop.store.models import ProjectRow


def ensure_project(session: Session, config: ProjectConfig) -> int:
    """The id of the project named ``config.name``, created (or its stored config refreshed)."""
    row = session.scalars(select(ProjectRow).where(ProjectRow.name == config.name)).first()
    data = config.model_dump(mode="json")
    if row is None:
        row = ProjectRow(name=config.name, config=data)
        session.add(row)
        session.flush()
    elif row.config != data:
        row.config = data
    return row.id
