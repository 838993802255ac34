"""Read-only queries about review work the web app needs: does an item belong to a project,
which media file a reviewer may see, and every human action (for the dashboard).

Callers pass the ``Database`` and the project id.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select

from labelloop.store.db import Database
from labelloop.store.models import HumanLabelRow, ItemRow, LeaseRow, utcnow

HUMAN_ACTION_COLUMNS = ["item_id", "annotator", "labels", "action", "time_spent_ms", "created_at"]


def item_exists(db: Database, project_id: int, item_id: int) -> bool:
    """True if ``item_id`` is an item of the project."""
    t = ItemRow.__table__
    with db.engine.connect() as conn:
        return (
            conn.execute(
                select(t.c.id).where(t.c.id == item_id, t.c.project_id == project_id)
            ).first()
            is not None
        )


def leased_media_path(
    db: Database, project_id: int, item_id: int, annotator: str | None
) -> str | None:
    """The media file of an item leased (live) to ``annotator``; any item's when None."""
    t = ItemRow.__table__
    stmt = select(t.c.media_path).where(t.c.id == item_id, t.c.project_id == project_id)
    if annotator is not None:
        lease = LeaseRow.__table__
        stmt = stmt.join(lease, lease.c.item_id == t.c.id).where(
            lease.c.annotator == annotator, lease.c.expires_at > utcnow()
        )
    with db.engine.connect() as conn:
        return conn.execute(stmt).scalar_one_or_none()


def human_actions(db: Database, project_id: int) -> pd.DataFrame:
    """Every human action on the project's items: item_id, annotator, labels, action,
    time_spent_ms, created_at (oldest first)."""
    h = HumanLabelRow.__table__
    t = ItemRow.__table__
    stmt = (
        select(
            h.c.item_id, h.c.annotator, h.c.labels, h.c.action, h.c.time_spent_ms, h.c.created_at
        )
        .join(t, t.c.id == h.c.item_id)
        .where(t.c.project_id == project_id)
        .order_by(h.c.id)
    )
    with db.engine.connect() as conn:
        rows: list[dict[str, Any]] = [dict(r) for r in conn.execute(stmt).mappings()]
    return pd.DataFrame(rows, columns=HUMAN_ACTION_COLUMNS)
