"""The users, API tokens and browser sessions tables.

Each function is one transaction of its own. Users come back as plain dicts with ``id``,
``username`` and ``role`` (and, where said, more columns). Only hashes reach these functions:
hashing and checking passwords and tokens is ``labelloop.auth``'s work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from labelloop.store.db import Database
from labelloop.store.models import ApiTokenRow, UserRow, WebSessionRow

_USER_COLUMNS = (UserRow.id, UserRow.username, UserRow.role)


def insert_user(
    db: Database, username: str, role: str, password_hash: str | None
) -> dict[str, Any] | None:
    """Add a user; the new user, or None when the insert breaks a constraint (the name is
    taken)."""
    try:
        with db.engine.begin() as conn:
            user_id = conn.execute(
                insert(UserRow).values(username=username, role=role, password_hash=password_hash)
            ).inserted_primary_key[0]
    except IntegrityError:
        return None
    return {"id": user_id, "username": username, "role": role}


def list_users(db: Database) -> list[dict[str, Any]]:
    """Every user, oldest first."""
    with db.engine.connect() as conn:
        return [
            dict(r) for r in conn.execute(select(*_USER_COLUMNS).order_by(UserRow.id)).mappings()
        ]


def set_password_hash(db: Database, username: str, password_hash: str | None) -> bool:
    """Store a new password hash for ``username``; False if there is no such user."""
    with db.engine.begin() as conn:
        n = conn.execute(
            update(UserRow).where(UserRow.username == username).values(password_hash=password_hash)
        ).rowcount
    return bool(n)


def user_login(db: Database, username: str) -> dict[str, Any] | None:
    """The user named ``username`` with its ``active`` flag and ``password_hash``, or None."""
    with db.engine.connect() as conn:
        row = (
            conn.execute(
                select(*_USER_COLUMNS, UserRow.active, UserRow.password_hash).where(
                    UserRow.username == username
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


def insert_token(db: Database, username: str, name: str, token_hash: str) -> bool:
    """Add an API token (its hash) for ``username``; False if there is no such user."""
    with db.engine.begin() as conn:
        user_id = (
            conn.execute(select(UserRow.id).where(UserRow.username == username)).scalars().first()
        )
        if user_id is None:
            return False
        conn.execute(insert(ApiTokenRow).values(user_id=user_id, name=name, token_hash=token_hash))
    return True


def user_for_token_hash(db: Database, token_hash: str) -> dict[str, Any] | None:
    """The active user owning the unrevoked API token with this hash, or None."""
    with db.engine.connect() as conn:
        row = (
            conn.execute(
                select(*_USER_COLUMNS)
                .join(ApiTokenRow, ApiTokenRow.user_id == UserRow.id)
                .where(ApiTokenRow.token_hash == token_hash, ~ApiTokenRow.revoked, UserRow.active)
            )
            .mappings()
            .one_or_none()
        )
    return dict(row) if row is not None else None


def insert_session(
    db: Database, user_id: int, token_hash: str, csrf_token: str, expires_at: datetime
) -> None:
    """Add a browser session (its token's hash) for the user."""
    with db.engine.begin() as conn:
        conn.execute(
            insert(WebSessionRow).values(
                user_id=user_id, token_hash=token_hash, csrf_token=csrf_token, expires_at=expires_at
            )
        )


def session_user(db: Database, token_hash: str) -> dict[str, Any] | None:
    """The active user of the session with this token hash, with the session's
    ``csrf_token`` and ``expires_at`` (as stored: SQLite drops the zone); None if unknown."""
    with db.engine.connect() as conn:
        row = (
            conn.execute(
                select(*_USER_COLUMNS, WebSessionRow.csrf_token, WebSessionRow.expires_at)
                .join(WebSessionRow, WebSessionRow.user_id == UserRow.id)
                .where(WebSessionRow.token_hash == token_hash, UserRow.active)
            )
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


def delete_session(db: Database, token_hash: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(WebSessionRow).where(WebSessionRow.token_hash == token_hash))
