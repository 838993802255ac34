"""Items of a project found by content hash (bulk annotation stores results against them)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, select

from labelloop.store.models import ItemRow

_CHUNK = 500


def item_ids_by_hash(
    conn: Connection, project_id: int, hashes: Iterable[str], *, state: str | None = None
) -> dict[str, int]:
    """Content hash -> item id, for the ``hashes`` that are items of the project (in
    ``state``, when given)."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), _CHUNK):
        stmt = select(ItemRow.content_hash, ItemRow.id).where(
            ItemRow.project_id == project_id,
            ItemRow.content_hash.in_(unique[start : start + _CHUNK]),
        )
        if state is not None:
            stmt = stmt.where(ItemRow.state == state)
        found.update({h: int(i) for h, i in conn.execute(stmt)})
    return found
