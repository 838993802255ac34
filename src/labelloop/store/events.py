"""The append-only event log (the database refuses UPDATE and DELETE on it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from labelloop.store.models import EventRow


def log_event(
    session: Session | Connection,
    project_id: int | None,
    kind: str,
    payload: dict[str, Any] | None = None,
    item_id: int | None = None,
) -> None:
    session.execute(
        insert(EventRow).values(
            project_id=project_id, kind=kind, item_id=item_id, payload=payload or {}
        )
    )
