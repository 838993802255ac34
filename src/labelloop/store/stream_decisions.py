"""Decisions of the stream workers: one row per (project, item, model version), written once.

The unique key is what makes a redelivered stream entry harmless: the worker inserts its
decisions with ``INSERT ... ON CONFLICT DO NOTHING`` in the transaction that stores the items'
suggestions and machine labels, and writes those only for the rows the insert took. A second
delivery (another worker after a crash, a retry) finds the row and publishes the decision
already made instead of making a new one. A table of its own rather than the events outbox:
events are append-only and read by the loop worker, and a unique key over them would have to
be partial (PostgreSQL) or an expression (SQLite).

``external_ids`` pins an external id to the content it first came with (``POST /api/items``):
sending the same id again is a no-op, and the same id with other content is a conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from labelloop.store.dialect import insert_ignore
from labelloop.store.models import Base, BigId, ItemRow, ItemState, utcnow

_CHUNK = 500


class StreamDecisionRow(Base):
    """What a stream worker decided for an item under one model version ("" before any)."""

    __tablename__ = "stream_decisions"
    __table_args__ = (
        UniqueConstraint(
            "project_id", "item_id", "model_version", name="uq_stream_decisions_item_version"
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("items.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(200))
    model_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(500), nullable=True)
    decision: Mapped[str] = mapped_column(String(16))  # auto / review
    label: Mapped[str | None] = mapped_column(Text, nullable=True)  # multi-label: joined by |
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ExternalIdRow(Base):
    """The content an external id (``POST /api/items``) first came with."""

    __tablename__ = "external_ids"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id", name="uq_external_ids_project_id"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def claim_external_ids(
    conn: Connection, project_id: int, pairs: Sequence[tuple[str, str]]
) -> tuple[set[str], dict[str, str]]:
    """Pin each (external id, content hash) not pinned before. Returns the external ids
    pinned now, and every given external id's pinned content hash."""
    table = ExternalIdRow.__table__
    if not pairs:
        return set(), {}
    now = utcnow()
    values = [
        {"project_id": project_id, "external_id": e, "content_hash": h, "created_at": now}
        for e, h in dict(pairs).items()
    ]
    stmt = insert_ignore(conn, table, ["project_id", "external_id"])
    new = {str(e) for e in conn.execute(stmt.returning(table.c.external_id), values).scalars()}
    pinned: dict[str, str] = {}
    wanted = [v["external_id"] for v in values]
    for start in range(0, len(wanted), _CHUNK):
        stmt2 = select(table.c.external_id, table.c.content_hash).where(
            table.c.project_id == project_id,
            table.c.external_id.in_(wanted[start : start + _CHUNK]),
        )
        pinned.update({str(e): str(h) for e, h in conn.execute(stmt2)})
    return new, pinned


COLUMNS = (
    "item_id",
    "model_version",
    "model_version_id",
    "external_id",
    "decision",
    "label",
    "confidence",
    "reason",
)


def record_decisions(conn: Connection, project_id: int, rows: Sequence[dict[str, Any]]) -> set[int]:
    """Insert decisions (dicts with ``COLUMNS``) not made before; the item ids newly decided."""
    if not rows:
        return set()
    table = StreamDecisionRow.__table__
    values = [
        {**{c: r[c] for c in COLUMNS}, "project_id": project_id, "created_at": utcnow()}
        for r in rows
    ]
    stmt = insert_ignore(conn, table, ["project_id", "item_id", "model_version"])
    taken = conn.execute(stmt.returning(table.c.item_id), values).scalars()
    return {int(i) for i in taken}


def decisions_for(
    conn: Connection, project_id: int, item_ids: Sequence[int], model_version: str
) -> dict[int, dict[str, Any]]:
    """Item id -> the stored decision under ``model_version``."""
    table = StreamDecisionRow.__table__
    found: dict[int, dict[str, Any]] = {}
    unique = list(dict.fromkeys(int(i) for i in item_ids))
    for start in range(0, len(unique), _CHUNK):
        stmt = select(*(table.c[c] for c in COLUMNS)).where(
            table.c.project_id == project_id,
            table.c.model_version == model_version,
            table.c.item_id.in_(unique[start : start + _CHUNK]),
        )
        found.update({int(r.item_id): dict(r._mapping) for r in conn.execute(stmt)})
    return found


def claim_new_items(conn: Connection, item_ids: Sequence[int]) -> set[int]:
    """Move the items still ``new`` to ``suggested`` in one conditional UPDATE per chunk;
    the ids it moved (another writer that got there first keeps its own)."""
    t = ItemRow.__table__
    unique = list(dict.fromkeys(int(i) for i in item_ids))
    out: set[int] = set()
    for start in range(0, len(unique), _CHUNK):
        stmt = (
            update(t)
            .where(t.c.id.in_(unique[start : start + _CHUNK]), t.c.state == ItemState.new)
            .values(state=ItemState.suggested)
            .returning(t.c.id)
        )
        out.update(int(i) for i in conn.execute(stmt).scalars())
    return out


def count_decisions(conn: Connection, project_id: int) -> int:
    from sqlalchemy import func

    table = StreamDecisionRow.__table__
    stmt = select(func.count()).select_from(table).where(table.c.project_id == project_id)
    return int(conn.execute(stmt).scalar_one())


def decided_external_ids(
    db: Any, project_id: int, item_ids: Sequence[int]
) -> dict[int, str | None]:
    """Item id -> its external id, for the items a stream worker decided (others absent)."""
    t = StreamDecisionRow.__table__
    out: dict[int, str | None] = {}
    with db.engine.connect() as conn:
        for start in range(0, len(item_ids), _CHUNK):
            chunk = [int(i) for i in item_ids[start : start + _CHUNK]]
            for item_id, external_id in conn.execute(
                select(t.c.item_id, t.c.external_id).where(
                    t.c.project_id == project_id, t.c.item_id.in_(chunk)
                )
            ):
                if external_id is not None or int(item_id) not in out:
                    out[int(item_id)] = external_id
    return out
