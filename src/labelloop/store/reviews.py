"""Read-only queries about review work the web app needs: does an item belong to a project,
which media file a reviewer may see, and every human action (for the dashboard).

Callers pass the ``Database`` and the project id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import case, func, select

from labelloop.store.db import Database
from labelloop.store.models import (
    FinalLabelRow,
    HumanLabelRow,
    ItemRow,
    ItemState,
    LeaseRow,
    utcnow,
)
from labelloop.store.queue import ANSWER_ACTIONS

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


def queue_progress_counts(db: Database, project_id: int) -> dict[str, int]:
    """The project's review progress: ``left``, items queued for people (an index range of
    ``ix_items_queue``), and ``done``, items whose final label people decided
    (``ix_final_labels_project``). Both are counts over an index: ~0.1 s at a million items
    on SQLite, so callers cache them (``review.progress``)."""
    t = ItemRow.__table__
    f = FinalLabelRow.__table__
    with db.engine.connect() as conn:
        left = conn.execute(
            select(func.count()).where(t.c.project_id == project_id, t.c.state == ItemState.queued)
        ).scalar_one()
        done = conn.execute(
            select(func.count()).where(f.c.project_id == project_id, f.c.source_kind == "human")
        ).scalar_one()
    return {"left": int(left), "done": int(done)}


def reviewer_answer_counts(
    db: Database, project_id: int, annotator: str, since: datetime, cap_ms: int
) -> dict[str, int]:
    """``mine``: ``annotator``'s answers in the project (label, accept, correct; an undone
    answer no longer counts); ``timed`` and ``timed_ms``: those given since ``since`` with a
    time spent, and the sum of their times, each cut at ``cap_ms`` (a tab left open is not
    work)."""
    t = ItemRow.__table__
    h = HumanLabelRow.__table__
    recent = (h.c.created_at >= since) & h.c.time_spent_ms.is_not(None)
    spent = case((h.c.time_spent_ms > cap_ms, cap_ms), else_=h.c.time_spent_ms)
    stmt = (
        select(
            func.count(),
            func.coalesce(func.sum(case((recent, 1), else_=0)), 0),
            func.coalesce(func.sum(case((recent, spent), else_=0)), 0),
        )
        .select_from(h.join(t, t.c.id == h.c.item_id))
        .where(
            h.c.annotator == annotator,
            h.c.action.in_(ANSWER_ACTIONS),
            t.c.project_id == project_id,
        )
    )
    with db.engine.connect() as conn:
        mine, timed, timed_ms = conn.execute(stmt).one()
    return {"mine": int(mine), "timed": int(timed), "timed_ms": int(timed_ms)}
