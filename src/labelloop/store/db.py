"""Opening the store: engine settings per database, and migrations on open."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.resources import files
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from labelloop.core.errors import StoreError

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_WRITER_PAUSE_S = 0.01
SQLITE_WRITER_MAX_PAUSE_S = 0.1


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("labelloop.store") / "migrations"))
    return cfg


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers (the review app) go on while a writer (ingest, retrain) works.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite gets WAL and a busy timeout; ``postgresql://`` uses psycopg 3."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"storage URL {url!r} is not a valid SQLAlchemy URL") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (a no-op when it is already there)."""
    with engine.begin() as conn:
        rev = current_revision(conn)
        known = {
            s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
        }
        if rev is not None and rev not in known:
            raise StoreError(
                f"the database is at schema revision {rev}, which this version of labelloop does "
                "not know (it was written by a newer labelloop): upgrade labelloop"
            )
        if rev == head_revision():
            return
        cfg = _alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


_BACKGROUND: ContextVar[bool] = ContextVar("labelloop_background_writer", default=False)


@contextmanager
def background_writer() -> Iterator[None]:
    """Mark the writes in this block (this thread) as background work that yields to people:
    see ``Database.short_write``."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


class Database:
    """An engine plus a session factory, migrated on open."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        try:
            if migrate:
                upgrade(self.engine)
            else:
                with self.engine.connect():
                    pass
        except OperationalError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot open the store at {self.safe_url}: {exc.orig}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed at the end of the block, rolled back on error."""
        with self._sessions() as s, s.begin():
            yield s

    @contextmanager
    def short_write(self) -> Iterator[Connection]:
        """One of the many short transactions of a long rewrite (a retrain's re-route).

        SQLite has one writer at a time, and a writer kept waiting retries on a back-off (1, 2,
        5, 10, 15, 20, 25, 25, 25, 50 ... ms): a loop that commits and at once begins again
        wins the lock every time and starves a reviewer's one-row write. So after each commit
        the loop rests as long as it held the lock (10 to 100 ms): it holds the lock at most
        about half the time, and a waiting reviewer's retry lands in a gap. It rests only in
        background work (``background_writer``: the loop worker), never in a command someone
        waits for. PostgreSQL locks rows, not the database: no rest there."""
        started = time.perf_counter()
        with self.engine.begin() as conn:
            yield conn
        if self.dialect == "sqlite" and _BACKGROUND.get():
            held = time.perf_counter() - started
            time.sleep(min(max(held, SQLITE_WRITER_PAUSE_S), SQLITE_WRITER_MAX_PAUSE_S))

    def dispose(self) -> None:
        self.engine.dispose()
