"""Writing items in bulk and reading the review queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from labelloop.store.dialect import insert_ignore
from labelloop.store.models import ItemRow, ItemSourceRow, ItemState, QuarantineRow, utcnow


def insert_items(
    conn: Connection,
    items: Sequence[dict[str, Any]],
    sightings: Sequence[dict[str, Any]],
) -> None:
    """Insert items (once per content hash) and their sightings (once per source position).

    ``items`` rows carry project_id, content_hash, content, media_path, meta, source, position;
    ``sightings`` rows carry project_id, source, position, content_hash, external_id, meta.
    Conflicts are skipped, so re-ingesting a source adds nothing.
    """
    now = utcnow()
    if items:
        rows = [
            {**r, "state": ItemState.new, "priority": 0.0, "created_at": now} for r in items
        ]
        conn.execute(insert_ignore(conn, ItemRow.__table__, ["project_id", "content_hash"]), rows)
    if sightings:
        conn.execute(
            insert_ignore(conn, ItemSourceRow.__table__, ["project_id", "source", "position"]),
            list(sightings),
        )


def insert_quarantine(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Keep bad rows with source, position and reason (once per source position)."""
    if rows:
        now = utcnow()
        conn.execute(
            insert_ignore(conn, QuarantineRow.__table__, ["project_id", "source", "position"]),
            [{**r, "created_at": now} for r in rows],
        )


def count_rows(conn: Connection, table: Any, project_id: int) -> int:
    return conn.execute(
        select(func.count()).select_from(table).where(table.c.project_id == project_id)
    ).scalar_one()


def next_for_review(conn: Connection, project_id: int, limit: int = 50) -> list[ItemRow]:
    """The highest-priority queued items (served by the ``ix_items_queue`` index)."""
    t = ItemRow.__table__
    stmt = (
        select(t)
        .where(t.c.project_id == project_id, t.c.state == ItemState.queued)
        .order_by(t.c.priority.desc(), t.c.id)
        .limit(limit)
    )
    return list(conn.execute(stmt).mappings())


def counts_by_state(conn: Connection, project_id: int) -> dict[str, int]:
    t = ItemRow.__table__
    rows = conn.execute(
        select(t.c.state, func.count()).where(t.c.project_id == project_id).group_by(t.c.state)
    )
    counts = dict.fromkeys(ItemState.all, 0)
    counts.update({state: n for state, n in rows})
    return counts
