"""Reads the web app needs that ``Project`` does not offer yet.

These belong on ``Project`` (or in ``store``); they live here, small and read-only, until the
lead moves them, so that the routers themselves never build a query.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select

from labelloop.project import Project
from labelloop.store.models import HumanLabelRow, ItemRow, LeaseRow, utcnow


def item_exists(project: Project, item_id: int) -> bool:
    """True if ``item_id`` is an item of ``project``."""
    t = ItemRow.__table__
    with project.db.engine.connect() as conn:
        return (
            conn.execute(
                select(t.c.id).where(t.c.id == item_id, t.c.project_id == project.id)
            ).first()
            is not None
        )


def leased_media_path(project: Project, item_id: int, annotator: str | None) -> str | None:
    """The media file of an item leased (live) to ``annotator``; any item's when None."""
    t = ItemRow.__table__
    stmt = select(t.c.media_path).where(t.c.id == item_id, t.c.project_id == project.id)
    if annotator is not None:
        lease = LeaseRow.__table__
        stmt = stmt.join(lease, lease.c.item_id == t.c.id).where(
            lease.c.annotator == annotator, lease.c.expires_at > utcnow()
        )
    with project.db.engine.connect() as conn:
        return conn.execute(stmt).scalar_one_or_none()


def human_actions(project: Project) -> pd.DataFrame:
    """Every human action on the project's items: item_id, annotator, labels, action,
    time_spent_ms, created_at (oldest first)."""
    h = HumanLabelRow.__table__
    t = ItemRow.__table__
    stmt = (
        select(
            h.c.item_id, h.c.annotator, h.c.labels, h.c.action, h.c.time_spent_ms, h.c.created_at
        )
        .join(t, t.c.id == h.c.item_id)
        .where(t.c.project_id == project.id)
        .order_by(h.c.id)
    )
    with project.db.engine.connect() as conn:
        rows: list[dict[str, Any]] = [dict(r) for r in conn.execute(stmt).mappings()]
    return pd.DataFrame(
        rows,
        columns=["item_id", "annotator", "labels", "action", "time_spent_ms", "created_at"],
    )
