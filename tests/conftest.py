"""Shared fixtures. Store tests run twice: on SQLite and on the real PostgreSQL.

PostgreSQL is reached at ``LABELLOOP_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``);
a fresh database is created for the session and dropped at the end. Without a server the
PostgreSQL runs are skipped, unless ``LABELLOOP_REQUIRE_POSTGRES=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "src" / "labelloop" / "demo" / "data"
PG_ADMIN_URL = os.environ.get(
    "LABELLOOP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    name = f"labelloop_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server here
        admin.dispose()
        if os.environ.get("LABELLOOP_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
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


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A storage URL for each database the project supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def make_project(tmp_path: Path, storage_url: str):
    """Build a project in a temporary folder on the parametrized store."""
    from labelloop.project import Project

    opened: list[Project] = []

    def _make(**fields):
        fields.setdefault("name", f"t-{uuid.uuid4().hex[:8]}")
        fields.setdefault("labels", ["ham", "spam"])
        fields.setdefault("storage", storage_url)
        folder = tmp_path / fields["name"]
        p = Project.init(folder, **fields)
        opened.append(p)
        return p

    yield _make
    for p in opened:
        p.close()


TEST_REDIS_URL = os.environ.get("LABELLOOP_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis() -> Iterator[Any]:
    """A Redis client; keys made by the test (prefix ``t:<uuid>``) are deleted afterwards."""
    try:
        import redis as redis_py

        client = redis_py.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
        client.ping()
    except Exception as exc:
        if os.environ.get("LABELLOOP_REQUIRE_REDIS") == "1":
            pytest.fail(f"Redis is required but unreachable at {TEST_REDIS_URL}: {exc}")
        pytest.skip(f"Redis unreachable at {TEST_REDIS_URL}: {exc}")
    client.test_prefix = f"t:{uuid.uuid4().hex[:10]}"  # type: ignore[attr-defined]
    yield client
    keys = list(client.scan_iter(match=f"{client.test_prefix}*"))  # type: ignore[attr-defined]
    if keys:
        client.delete(*keys)
    client.close()
