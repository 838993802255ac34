"""The queries behind export and import (``labelloop.interop``): final labels with their
items, the metadata keys they hold, and what an earlier Label Studio import left behind.

Reads stream ``chunk_size`` rows at a time (server-side cursors on PostgreSQL); lookups by
id or hash go in IN lists of at most ``IN_BATCH`` values (under SQLite's old 999-parameter
limit).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, insert, select, text, update

from labelloop.store.db import Database
from labelloop.store.models import (
    EventRow,
    FinalLabelRow,
    HumanLabelRow,
    ItemRow,
    ItemState,
    SuggestionRow,
)

IN_BATCH = 900  # ids per IN (...) list: under SQLite's old 999-parameter limit
_INT64 = (-(2**63), 2**63 - 1)


# -- connections and streaming --------------------------------------------------------------


@contextmanager
def reading(db: Database) -> Iterator[Connection]:
    """A connection for reads (nothing is committed)."""
    with db.engine.connect() as conn:
        yield conn


@contextmanager
def writing(db: Database) -> Iterator[Connection]:
    """A connection in a transaction, committed at the end of the block (rolled back on error)."""
    with db.engine.begin() as conn:
        yield conn


def batches(ids: Sequence[Any]) -> Iterator[list[Any]]:
    """``ids`` in lists of at most ``IN_BATCH``."""
    ids = list(ids)
    for start in range(0, len(ids), IN_BATCH):
        yield ids[start : start + IN_BATCH]


def stream_rows(
    conn: Connection, stmt: Select[Any], chunk_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Rows of ``stmt`` as lists of dicts, ``chunk_size`` at a time (server-side on PostgreSQL)."""
    result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(stmt)
    for part in result.mappings().partitions():
        yield [dict(r) for r in part]


def stream_tuples(conn: Connection, stmt: Select[Any], chunk_size: int) -> Iterator[list[Any]]:
    """Rows of ``stmt`` as tuples, ``chunk_size`` at a time: cheaper than dicts per row."""
    result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(stmt)
    for part in result.partitions():
        yield [tuple(r) for r in part]


# -- final labels ----------------------------------------------------------------------------


def final_labels_query(
    project_id: int, source_kinds: Sequence[str] | None = None, *, media_path: bool = False
) -> Select[Any]:
    """Final labels joined to their items, in item id order.

    Columns: item_id, content_hash, content, labels, source_kind, source_name, source_version,
    confidence, decided_at, source, position, [media_path], meta.
    """
    fl = FinalLabelRow.__table__
    it = ItemRow.__table__
    columns = [
        it.c.id.label("item_id"),
        it.c.content_hash,
        it.c.content,
        fl.c.labels,
        fl.c.source_kind,
        fl.c.source_name,
        fl.c.source_version,
        fl.c.confidence,
        fl.c.decided_at,
        it.c.source,
        it.c.position,
    ]
    if media_path:
        columns.append(it.c.media_path)
    stmt = (
        select(*columns, it.c.meta)
        .join(fl, fl.c.item_id == it.c.id)
        .where(fl.c.project_id == project_id)
        .order_by(it.c.id)
    )
    if source_kinds is not None:
        stmt = stmt.where(fl.c.source_kind.in_(list(source_kinds)))
    return stmt


def final_label_columns(*, media_path: bool = False) -> list[str]:
    """The columns of ``final_labels_query`` (meta, always last, included)."""
    return list(final_labels_query(0, media_path=media_path).selected_columns.keys())


def stream_final_labels(
    conn: Connection,
    project_id: int,
    source_kinds: Sequence[str] | None,
    chunk_size: int,
    *,
    media_path: bool = False,
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``final_labels_query`` as tuples, ``chunk_size`` at a time."""
    stmt = final_labels_query(project_id, source_kinds, media_path=media_path)
    yield from stream_tuples(conn, stmt, chunk_size)


def count_by_source_kind(
    conn: Connection, project_id: int, source_kinds: Sequence[str] | None
) -> dict[str, int]:
    """Final labels per source kind (human, machine, import)."""
    fl = FinalLabelRow.__table__
    stmt = (
        select(fl.c.source_kind, func.count())
        .where(fl.c.project_id == project_id)
        .group_by(fl.c.source_kind)
        .order_by(fl.c.source_kind)
    )
    if source_kinds is not None:
        stmt = stmt.where(fl.c.source_kind.in_(list(source_kinds)))
    return {kind: n for kind, n in conn.execute(stmt)}


# -- metadata keys ---------------------------------------------------------------------------


def kind_of(value: Any) -> str | None:
    """The kind of a metadata value: bool, int, float, str or json (None for null and NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "float"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "json"


# The kinds of JSON value each database names, as ``kind_of`` names them.
_SQL_KINDS = {
    "true": "bool",
    "false": "bool",
    "integer": "int",
    "real": "float",
    "text": "str",
    "array": "json",
    "object": "json",
    "null": None,
}
_META_KEYS_SQL = {
    # json_each yields one row per key with its JSON type (null, true, false, integer, real,
    # text, array, object); the database does the decoding, Python sees one row per key.
    "sqlite": """
        SELECT j.key, j.type, MIN(i.id) AS first_id, MIN(j.id) AS place
        FROM items i JOIN final_labels f ON f.item_id = i.id, json_each(i.meta) j
        WHERE f.project_id = :pid {kinds}
        GROUP BY j.key, j.type""",
    # json_typeof says "number" for both: an integer is a number whose text is only digits.
    "postgresql": """
        SELECT j.key,
               CASE json_typeof(j.value)
                 WHEN 'number' THEN
                   CASE WHEN j.value::text ~ '^-?[0-9]{{1,18}}$' THEN 'integer' ELSE 'real' END
                 WHEN 'boolean' THEN 'true'
                 WHEN 'string' THEN 'text'
                 ELSE json_typeof(j.value)
               END AS type,
               MIN(i.id) AS first_id, MIN(j.place) AS place
        FROM items i JOIN final_labels f ON f.item_id = i.id
             CROSS JOIN LATERAL json_each(i.meta::json) WITH ORDINALITY AS j(key, value, place)
        WHERE f.project_id = :pid AND json_typeof(i.meta::json) = 'object' {kinds}
        GROUP BY 1, 2""",
}


def scan_meta(
    conn: Connection, project_id: int, source_kinds: Sequence[str] | None, chunk_size: int
) -> dict[str, set[str]]:
    """Every metadata key of the final-labeled items (in order of first sight) with the kinds
    of value it holds. A CSV header and a Parquet schema are fixed up front, hence this pass;
    on SQLite and PostgreSQL the database does it, elsewhere Python reads every row.
    """
    sql = _META_KEYS_SQL.get(conn.dialect.name)
    if sql is not None:
        params: dict[str, Any] = {"pid": project_id}
        stmt = text(sql.format(kinds="AND f.source_kind IN :kinds" if source_kinds else ""))
        if source_kinds:
            stmt = stmt.bindparams(bindparam("kinds", expanding=True))
            params["kinds"] = list(source_kinds)
        # in order of first sight: the first item holding the key, then the key's place in it
        rows = sorted(conn.execute(stmt, params), key=lambda r: (r[2], r[3], r[0]))
        found: dict[str, set[str]] = {}
        for key, sql_kind, *_ in rows:
            kind = _SQL_KINDS.get(sql_kind, "json")
            found.setdefault(key, set()).update([kind] if kind else [])
        return found
    return scan_meta_python(conn, project_id, source_kinds, chunk_size)


def scan_meta_python(
    conn: Connection, project_id: int, source_kinds: Sequence[str] | None, chunk_size: int
) -> dict[str, set[str]]:
    """``scan_meta`` in Python, row by row: for databases without a JSON key function."""
    fl = FinalLabelRow.__table__
    it = ItemRow.__table__
    stmt = (
        select(it.c.meta)
        .join(fl, fl.c.item_id == it.c.id)
        .where(fl.c.project_id == project_id)
        .order_by(it.c.id)
    )
    if source_kinds is not None:
        stmt = stmt.where(fl.c.source_kind.in_(list(source_kinds)))
    keys: dict[str, set[str]] = {}
    for chunk in stream_tuples(conn, stmt, chunk_size):
        for (meta,) in chunk:
            for k, v in (meta or {}).items():
                seen = keys.setdefault(k, set())
                kind = kind_of(v)
                if kind is not None:
                    seen.add(kind)
    return keys


# -- Label Studio export ---------------------------------------------------------------------


def stream_items_with_final_labels(
    conn: Connection, project_id: int, chunk_size: int, *, include_unlabeled: bool = True
) -> Iterator[list[dict[str, Any]]]:
    """Items (id, content_hash, content, media_path, meta) with their final label (labels, source_kind,
    source_name, source_version, confidence, decided_at; None where unlabeled), in id order,
    ``chunk_size`` at a time. Without ``include_unlabeled`` only labeled items come."""
    it = ItemRow.__table__
    fl = FinalLabelRow.__table__
    stmt = (
        select(
            it.c.id,
            it.c.content_hash,
            it.c.content,
            it.c.media_path,
            it.c.meta,
            fl.c.labels,
            fl.c.source_kind,
            fl.c.source_name,
            fl.c.source_version,
            fl.c.confidence,
            fl.c.decided_at,
        )
        .select_from(it.join(fl, fl.c.item_id == it.c.id, isouter=include_unlabeled))
        .where(it.c.project_id == project_id)
        .order_by(it.c.id)
    )
    yield from stream_rows(conn, stmt, chunk_size)


def latest_human_labels(
    conn: Connection, item_ids: Sequence[int]
) -> dict[int, tuple[str, int | None]]:
    """(annotator, time spent in ms) of the latest human label of each item."""
    hl = HumanLabelRow.__table__
    out: dict[int, tuple[str, int | None]] = {}
    for batch in batches(item_ids):
        latest = select(func.max(hl.c.id)).where(hl.c.item_id.in_(batch)).group_by(hl.c.item_id)
        rows = conn.execute(
            select(hl.c.item_id, hl.c.annotator, hl.c.time_spent_ms).where(
                hl.c.id.in_(latest.scalar_subquery())
            )
        )
        out.update({i: (a, t) for i, a, t in rows})
    return out


# -- Label Studio import ---------------------------------------------------------------------


def human_labels_by_action(
    conn: Connection, item_ids: set[int], action: str
) -> set[tuple[int, str, tuple[str, ...]]]:
    """(item id, annotator, labels) of the human labels of ``item_ids`` with ``action``."""
    hl = HumanLabelRow.__table__
    found: set[tuple[int, str, tuple[str, ...]]] = set()
    for batch in batches(sorted(item_ids)):
        for item_id, annotator, labels in conn.execute(
            select(hl.c.item_id, hl.c.annotator, hl.c.labels).where(
                hl.c.item_id.in_(batch), hl.c.action == action
            )
        ):
            found.add((item_id, annotator, tuple(labels)))
    return found


def suggestion_versions(conn: Connection, item_ids: set[int], labeler: str) -> set[tuple[int, str]]:
    """(item id, labeler version) of the suggestions of ``labeler`` on ``item_ids``."""
    sg = SuggestionRow.__table__
    found: set[tuple[int, str]] = set()
    for batch in batches(sorted(item_ids)):
        for item_id, version in conn.execute(
            select(sg.c.item_id, sg.c.labeler_version).where(
                sg.c.item_id.in_(batch), sg.c.labeler == labeler
            )
        ):
            found.add((item_id, version))
    return found


def final_labels_of(conn: Connection, item_ids: set[int]) -> dict[int, tuple[list[str], str, str]]:
    """(labels, source kind, source name) of the final label of each of ``item_ids``."""
    fl = FinalLabelRow.__table__
    found: dict[int, tuple[list[str], str, str]] = {}
    for batch in batches(sorted(item_ids)):
        for item_id, labels, kind, name in conn.execute(
            select(fl.c.item_id, fl.c.labels, fl.c.source_kind, fl.c.source_name).where(
                fl.c.item_id.in_(batch)
            )
        ):
            found[item_id] = (list(labels), kind, name)
    return found


def insert_human_labels(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert human labels (item_id, annotator, labels, action, time_spent_ms, created_at)."""
    if rows:
        conn.execute(insert(HumanLabelRow.__table__), list(rows))


def mark_suggested(conn: Connection, item_ids: Sequence[int]) -> None:
    """Items still new become suggested (they now hold a suggestion)."""
    for batch in batches(sorted(set(item_ids))):
        conn.execute(
            update(ItemRow)
            .where(ItemRow.id.in_(batch), ItemRow.state == ItemState.new)
            .values(state=ItemState.suggested)
        )


# Human label rows that are not an answer: passing on an item, and an answer taken back.
NOT_ANSWERS = ("skip", "undo", "undone")


def human_answers(
    conn: Connection, item_ids: Sequence[int]
) -> dict[int, list[tuple[int, str, list[str], str, int | None, Any]]]:
    """Per item, each annotator's latest answer (skips and taken-back answers left out) as
    (human label id, annotator, labels, action, time spent in ms, created at), oldest first."""
    hl = HumanLabelRow.__table__
    latest: dict[tuple[int, str], tuple[int, str, list[str], str, int | None, Any]] = {}
    items: dict[int, None] = {}
    for batch in batches(item_ids):
        rows = conn.execute(
            select(
                hl.c.item_id,
                hl.c.id,
                hl.c.annotator,
                hl.c.labels,
                hl.c.action,
                hl.c.time_spent_ms,
                hl.c.created_at,
            )
            .where(hl.c.item_id.in_(batch), hl.c.action.notin_(NOT_ANSWERS))
            .order_by(hl.c.id)
        )
        for item_id, row_id, annotator, labels, action, spent, created in rows:
            items.setdefault(item_id)
            latest[(item_id, annotator)] = (row_id, annotator, list(labels), action, spent, created)
    out: dict[int, list[tuple[int, str, list[str], str, int | None, Any]]] = {}
    for (item_id, _), answer in sorted(latest.items(), key=lambda kv: kv[1][0]):
        out.setdefault(item_id, []).append(answer)
    return out


def answer_keys(conn: Connection, item_ids: set[int]) -> set[tuple[int, str, tuple[str, ...]]]:
    """(item id, annotator, labels) of every answer given on ``item_ids`` (any action but a
    skip or a taken-back answer)."""
    hl = HumanLabelRow.__table__
    found: set[tuple[int, str, tuple[str, ...]]] = set()
    for batch in batches(sorted(item_ids)):
        for item_id, annotator, labels in conn.execute(
            select(hl.c.item_id, hl.c.annotator, hl.c.labels).where(
                hl.c.item_id.in_(batch), hl.c.action.notin_(NOT_ANSWERS)
            )
        ):
            found.add((item_id, annotator, tuple(labels)))
    return found


def latest_suggestions(
    conn: Connection, item_ids: Sequence[int]
) -> dict[int, list[tuple[str, str, str | None, dict[str, float], float | None]]]:
    """Per item, the latest valid suggestion of each labeler as (labeler, version, label,
    probabilities, confidence), in labeler order."""
    sg = SuggestionRow.__table__
    out: dict[int, list[tuple[str, str, str | None, dict[str, float], float | None]]] = {}
    for batch in batches(item_ids):
        newest = (
            select(func.max(sg.c.id))
            .where(sg.c.item_id.in_(batch), sg.c.status == "ok")
            .group_by(sg.c.item_id, sg.c.labeler)
        )
        rows = conn.execute(
            select(
                sg.c.item_id,
                sg.c.labeler,
                sg.c.labeler_version,
                sg.c.label,
                sg.c.probs,
                sg.c.confidence,
            )
            .where(sg.c.id.in_(newest.scalar_subquery()))
            .order_by(sg.c.item_id, sg.c.labeler)
        )
        for item_id, labeler, version, label, probs, confidence in rows:
            out.setdefault(item_id, []).append((labeler, version, label, probs or {}, confidence))
    return out


def suggestion_keys(conn: Connection, item_ids: set[int]) -> set[tuple[int, str, str]]:
    """(item id, labeler, labeler version) of every suggestion on ``item_ids``."""
    sg = SuggestionRow.__table__
    found: set[tuple[int, str, str]] = set()
    for batch in batches(sorted(item_ids)):
        for item_id, labeler, version in conn.execute(
            select(sg.c.item_id, sg.c.labeler, sg.c.labeler_version).where(sg.c.item_id.in_(batch))
        ):
            found.add((item_id, labeler, version))
    return found


def item_ids_by_media_path(
    conn: Connection, project_id: int, paths: set[str]
) -> dict[str, tuple[int, str]]:
    """(id, content hash) of each item of the project whose media file is one of ``paths``."""
    t = ItemRow.__table__
    found: dict[str, tuple[int, str]] = {}
    for batch in batches(sorted(paths)):
        rows = conn.execute(
            select(t.c.media_path, t.c.id, t.c.content_hash).where(
                t.c.project_id == project_id, t.c.media_path.in_(batch)
            )
        )
        found.update({path: (i, h) for path, i, h in rows})
    return found


def event_payloads(
    conn: Connection, project_id: int, kind: str, *, newest_first: bool = False
) -> Iterator[dict[str, Any]]:
    """Payloads of the project's events of ``kind``, oldest first (or newest first)."""
    e = EventRow.__table__
    order = e.c.id.desc() if newest_first else e.c.id
    stmt = select(e.c.payload).where(e.c.project_id == project_id, e.c.kind == kind).order_by(order)
    for (payload,) in conn.execute(stmt):
        yield payload or {}
