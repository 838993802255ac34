"""The store a benchmark measures on (shared by bench_queue_api.py and bench_stream.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def fresh_store(storage: str, work: Path) -> Iterator[str]:
    """The store URL to measure: a SQLite file under ``work`` for ``sqlite``, any other
    non-PostgreSQL URL as given, or a fresh database on the PostgreSQL server ``storage``
    names (dropped at the end, its connections ended first)."""
    if storage == "sqlite":
        yield f"sqlite:///{work / 'labelloop.db'}"
        return
    if not storage.startswith("postgresql"):
        yield storage
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"labelloop_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(storage, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(storage).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
