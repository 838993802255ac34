"""Answers of edge devices (``POST /api/edge/sync``): stored once, low-confidence ones linked
to the item their text became.

The key (project, device id, local result id) makes a repeated sync harmless: rows go in with
``INSERT ... ON CONFLICT DO NOTHING`` and the insert tells which were new. Linking to items is
a second step keyed on ``item_id IS NULL``, so a sync interrupted between the two is finished
by the next one (the device sends the same batch again: it was never marked synced).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from labelloop.store.db import Database
from labelloop.store.dialect import insert_ignore
from labelloop.store.models import EdgeResultRow, ItemRow, ItemState, utcnow

_CHUNK = 500
# Items an edge answer may send to people: not labeled by anyone, not queued already.
_UNREVIEWED = (ItemState.new, ItemState.suggested)


def store_edge_results(
    conn: Connection, project_id: int, device_id: str, rows: Sequence[dict[str, Any]]
) -> set[int]:
    """Insert the device's answers (``result_id``, ``label``, ``confidence``,
    ``model_version``, ``needs_review``, optional ``created_at``); the result ids new now."""
    if not rows:
        return set()
    table = EdgeResultRow.__table__
    now = utcnow()
    values = [
        {
            "project_id": project_id,
            "device_id": device_id,
            "result_id": int(r["result_id"]),
            "label": r["label"],
            "confidence": float(r["confidence"]),
            "model_version": r["model_version"],
            "needs_review": bool(r["needs_review"]),
            "item_id": None,
            "created_at": r.get("created_at") or now,
        }
        for r in {int(r["result_id"]): r for r in rows}.values()
    ]
    stmt = insert_ignore(conn, table, ["project_id", "device_id", "result_id"])
    return {int(i) for i in conn.execute(stmt.returning(table.c.result_id), values).scalars()}


def results_without_item(
    conn: Connection, project_id: int, device_id: str, result_ids: Iterable[int]
) -> set[int]:
    """Of ``result_ids``, those needing review whose text has not become an item yet."""
    t = EdgeResultRow.__table__
    wanted = [int(i) for i in result_ids]
    found: set[int] = set()
    for start in range(0, len(wanted), _CHUNK):
        stmt = select(t.c.result_id).where(
            t.c.project_id == project_id,
            t.c.device_id == device_id,
            t.c.result_id.in_(wanted[start : start + _CHUNK]),
            t.c.needs_review.is_(True),
            t.c.item_id.is_(None),
        )
        found.update(int(i) for i in conn.execute(stmt).scalars())
    return found


def link_items(
    conn: Connection, project_id: int, device_id: str, pairs: Sequence[tuple[int, int]]
) -> None:
    """Record the item each (result id, item id) answer's text became."""
    if not pairs:
        return
    t = EdgeResultRow.__table__
    stmt = (
        update(t)
        .where(
            t.c.project_id == project_id,
            t.c.device_id == device_id,
            t.c.result_id == bindparam("r"),
        )
        .values(item_id=bindparam("i"))
    )
    conn.execute(stmt, [{"r": int(r), "i": int(i)} for r, i in pairs])


def unreviewed_items(conn: Connection, project_id: int, item_ids: Iterable[int]) -> list[int]:
    """Of ``item_ids``, those nobody labeled and no queue holds yet (new or suggested)."""
    wanted = sorted({int(i) for i in item_ids})
    out: list[int] = []
    for start in range(0, len(wanted), _CHUNK):
        stmt = select(ItemRow.id).where(
            ItemRow.project_id == project_id,
            ItemRow.id.in_(wanted[start : start + _CHUNK]),
            ItemRow.state.in_(_UNREVIEWED),
        )
        out += [int(i) for i in conn.execute(stmt).scalars()]
    return out


def edge_results(
    db: Database, project_id: int, device_id: str | None = None
) -> list[dict[str, Any]]:
    """The stored answers (of one device, or all), oldest first."""
    t = EdgeResultRow.__table__
    stmt = select(t).where(t.c.project_id == project_id).order_by(t.c.id)
    if device_id is not None:
        stmt = stmt.where(t.c.device_id == device_id)
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def edge_result_count(db: Database, project_id: int) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(EdgeResultRow)
                .where(EdgeResultRow.project_id == project_id)
            ).scalar_one()
        )
