"""The model registry's append-only history (``model_history``): rows are inserted, never
updated or deleted, so every promotion, refusal and rollback stays with its reason."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from labelloop.store.db import Database
from labelloop.store.models import ModelHistoryRow, utcnow


def append_history(
    db: Database,
    project_id: int,
    model_name: str,
    action: str,
    *,
    reason: str,
    alias: str | None = None,
    version: int | None = None,
    previous_version: int | None = None,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
) -> int:
    with db.engine.begin() as conn:
        return int(
            conn.execute(
                insert(ModelHistoryRow)
                .values(
                    project_id=project_id,
                    model_name=model_name,
                    action=action,
                    alias=alias,
                    version=version,
                    previous_version=previous_version,
                    reason=reason,
                    details=details or {},
                    actor=actor,
                    created_at=utcnow(),
                )
                .returning(ModelHistoryRow.id)
            ).scalar_one()
        )


def read_history(
    db: Database, project_id: int, model_name: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """The newest ``limit`` entries first."""
    q = select(ModelHistoryRow).where(ModelHistoryRow.project_id == project_id)
    if model_name is not None:
        q = q.where(ModelHistoryRow.model_name == model_name)
    q = q.order_by(ModelHistoryRow.id.desc()).limit(limit)
    cols = [c.name for c in ModelHistoryRow.__table__.columns]
    with db.engine.connect() as conn:
        rows = conn.execute(q.with_only_columns(*ModelHistoryRow.__table__.columns)).all()
    return [dict(zip(cols, r, strict=True)) for r in rows]
