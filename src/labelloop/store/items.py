"""Writing items in bulk and reading the review queue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from labelloop.store.bulk import datetime_param, insert_ignore_rows
from labelloop.store.db import Database
from labelloop.store.dialect import insert_ignore
from labelloop.store.models import ItemRow, ItemState, QuarantineRow, utcnow

ITEM_COLUMNS = (
    "project_id",
    "content_hash",
    "content",
    "media_path",
    "meta",
    "source",
    "position",
    "state",
    "priority",
    "created_at",
)
_IN_CHUNK = 900  # stays under SQLite's limit on bound parameters
SIGHTING_COLUMNS = ("project_id", "source", "position", "content_hash", "external_id", "meta")


def insert_items(
    conn: Connection,
    items: Sequence[tuple[Any, ...]],
    sightings: Sequence[tuple[Any, ...]],
) -> tuple[int, int]:
    """Insert new items and the extra sightings of exact duplicates, skipping conflicts;
    (items inserted, sightings inserted).

    ``items`` are tuples of (project_id, content_hash, content, media_path, meta_json, source,
    position); ``sightings`` tuples follow ``SIGHTING_COLUMNS`` with meta as a JSON string.
    Conflicts are skipped, so re-ingesting a source adds nothing.
    """
    now = datetime_param(conn, ItemRow.__table__.c.created_at, utcnow())
    tail = (ItemState.new, 0.0, now)
    # The caller looked the hashes up first, so these rows are most likely new.
    added = insert_ignore_rows(
        conn,
        "items",
        ITEM_COLUMNS,
        [r + tail for r in items],
        ["project_id", "content_hash"],
        likely_new=True,
    )
    linked = insert_ignore_rows(
        conn, "item_sources", SIGHTING_COLUMNS, sightings, ["project_id", "source", "position"]
    )
    return added, linked


def first_sightings(
    conn: Connection, project_id: int, hashes: Sequence[str]
) -> dict[str, tuple[str, int]]:
    """For hashes already stored as items: the (source, position) where each was first seen."""
    found: dict[str, tuple[str, int]] = {}
    unique = list(dict.fromkeys(hashes))
    sql = "SELECT content_hash, source, position FROM items WHERE project_id = "
    # Raw driver SQL: compiling an expanding IN with SQLAlchemy cost more than the query.
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(sql + "%s AND content_hash = ANY(%s)", (project_id, unique))
        found.update({h: (src, pos) for h, src, pos in rows})
        return found
    for start in range(0, len(unique), _IN_CHUNK):
        part = unique[start : start + _IN_CHUNK]
        marks = ", ".join("?" * len(part))
        rows = conn.exec_driver_sql(sql + f"? AND content_hash IN ({marks})", (project_id, *part))
        found.update({h: (src, pos) for h, src, pos in rows})
    return found


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


def refresh_planner_stats(db: Database) -> None:
    """Let PostgreSQL's planner see that the tables are no longer empty.

    Before autovacuum's first ANALYZE the planner takes a fresh table for empty and scans
    it whole for each duplicate lookup, which makes a first big ingest quadratic.
    """
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE items")
            conn.exec_driver_sql("ANALYZE item_sources")
