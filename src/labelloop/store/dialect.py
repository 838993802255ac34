"""INSERT ... ON CONFLICT DO NOTHING for the two databases we support."""

from __future__ import annotations

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


def insert_ignore(conn: Connection, table: Table, conflict: list[str]) -> Insert:
    """An INSERT that silently skips rows conflicting on the ``conflict`` columns."""
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict)
    if name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=conflict)
    raise NotImplementedError(f"labelloop supports SQLite and PostgreSQL, not {name}")
