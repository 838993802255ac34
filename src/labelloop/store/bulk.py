"""Fast bulk inserts that skip conflicting rows, below SQLAlchemy's per-row parameter handling.

Ingest is the hottest write path (millions of rows), and SQLAlchemy's per-parameter
processing cost more than the database itself, so rows go to the driver as plain tuples:
``executemany`` on SQLite, and ``COPY`` into a staging table then ``INSERT ... SELECT ...
ON CONFLICT DO NOTHING`` on PostgreSQL. JSON values arrive already serialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection


def insert_ignore_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    conflict: Sequence[str],
    *,
    likely_new: bool = False,
) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table``, skipping conflicts;
    how many were inserted.

    ``likely_new``: the caller has checked that the rows are not there yet. On PostgreSQL
    they are then copied straight into the table inside a savepoint; if another writer got
    there first (a unique violation), the savepoint is rolled back and the conflict-safe
    staging path runs instead, so the result is the same either way.
    """
    if not rows:
        return 0
    cols = ", ".join(columns)
    on_conflict = f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    dialect = conn.dialect.name
    if dialect == "sqlite":
        marks = ", ".join("?" for _ in columns)
        result = conn.exec_driver_sql(
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) {on_conflict}", list(rows)
        )
        return int(result.rowcount)  # sqlite3's executemany: the rows it changed
    elif dialect == "postgresql":
        stage = f"_stage_{table}"
        raw = conn.connection.dbapi_connection
        assert raw is not None
        if likely_new and _copy_directly(raw, table, cols, rows):
            return len(rows)
        with raw.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {stage}")
            cur.execute(
                f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {table} WITH NO DATA"
            )
            with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} {on_conflict}")
            return int(cur.rowcount)
    else:
        raise NotImplementedError(f"labelloop supports SQLite and PostgreSQL, not {dialect}")


def _copy_directly(raw: Any, table: str, cols: str, rows: Sequence[tuple[Any, ...]]) -> bool:
    import psycopg

    try:
        with raw.transaction(), raw.cursor() as cur:
            with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        return True
    except psycopg.errors.UniqueViolation:
        return False


def datetime_param(conn: Connection, column: Any, value: Any) -> Any:
    """``value`` as the driver expects it for ``column`` (SQLite stores datetimes as text)."""
    proc = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return proc(value) if proc else value
