"""The users, API tokens and browser sessions tables.

Each function is one transaction of its own. Users come back as plain dicts with ``id``,
``username`` and ``role`` (and, where said, more columns). Only hashes reach these functions:
hashing and checking passwords and tokens is ``labelloop.auth``'s work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, DateTime, String, delete, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from labelloop.store.db import Database
from labelloop.store.models import ApiTokenRow, UserRow, WebSessionRow, utcnow

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
    """Every user, oldest first, with ``active`` and ``created_at``."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(*_USER_COLUMNS, UserRow.active, UserRow.created_at).order_by(UserRow.id)
        ).mappings()
        return [dict(r) for r in rows]


def any_user(db: Database) -> bool:
    """Whether at least one user exists (a first run has none)."""
    with db.engine.connect() as conn:
        return conn.execute(select(UserRow.id).limit(1)).first() is not None


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


def insert_token(
    db: Database,
    username: str,
    name: str,
    token_hash: str,
    expires_at: datetime,
    scope: str = "api",
) -> int | None:
    """Add an API token (its hash) for ``username`` if that user exists and is active; the
    token's id, or None (no such user, or deactivated: the caller tells which).

    One ``INSERT ... SELECT``: the user's row is read and the token written in one statement,
    and on PostgreSQL ``FOR SHARE`` makes it wait for a deactivation of the same user in
    flight, so a token is never made for a user who was just deactivated."""
    source = (
        select(
            UserRow.id,
            literal(name, String(100)),
            literal(token_hash, String(64)),
            literal(utcnow(), DateTime(timezone=True)),
            literal(False),
            literal(expires_at, DateTime(timezone=True)),
            literal(scope, String(32)),
        )
        .where(UserRow.username == username, UserRow.active)
        .with_for_update(read=True)
    )
    columns = ["user_id", "name", "token_hash", "created_at", "revoked", "expires_at", "scope"]
    stmt = insert(ApiTokenRow).from_select(columns, source).returning(ApiTokenRow.id)
    with db.engine.begin() as conn:
        return conn.execute(stmt).scalar()


def token_login(db: Database, token_hash: str) -> dict[str, Any] | None:
    """The user owning the API token with this hash (with its ``active`` flag) and the token's
    ``token_id``, ``revoked``, ``expires_at`` and ``last_used_at`` (as stored: SQLite drops
    the zone), whatever their state; None if no token has this hash."""
    with db.engine.connect() as conn:
        row = (
            conn.execute(
                select(
                    *_USER_COLUMNS,
                    UserRow.active,
                    ApiTokenRow.id.label("token_id"),
                    ApiTokenRow.revoked,
                    ApiTokenRow.expires_at,
                    ApiTokenRow.last_used_at,
                    ApiTokenRow.scope,
                )
                .join(ApiTokenRow, ApiTokenRow.user_id == UserRow.id)
                .where(ApiTokenRow.token_hash == token_hash)
            )
            .mappings()
            .one_or_none()
        )
    return dict(row) if row is not None else None


def stamp_token_use(db: Database, token_id: int, when: datetime) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            update(ApiTokenRow).where(ApiTokenRow.id == token_id).values(last_used_at=when)
        )


def list_tokens(db: Database, username: str) -> list[dict[str, Any]] | None:
    """The user's API tokens, oldest first: ``id``, ``name``, ``created_at``, ``expires_at``,
    ``last_used_at``, ``revoked`` (never the hash). None if there is no such user."""
    with db.engine.connect() as conn:
        user_id = _user_id(conn, username)
        if user_id is None:
            return None
        rows = conn.execute(
            select(
                ApiTokenRow.id,
                ApiTokenRow.name,
                ApiTokenRow.created_at,
                ApiTokenRow.expires_at,
                ApiTokenRow.last_used_at,
                ApiTokenRow.revoked,
            )
            .where(ApiTokenRow.user_id == user_id)
            .order_by(ApiTokenRow.id)
        ).mappings()
        return [dict(r) for r in rows]


def revoke_tokens(db: Database, username: str, token_id: int | None = None) -> int | None:
    """Revoke the user's token ``token_id``, or all their tokens; how many were live (not yet
    revoked). None if there is no such user, or no token ``token_id`` of theirs."""
    with db.engine.begin() as conn:
        user_id = _user_id(conn, username)
        if user_id is None:
            return None
        if token_id is not None:
            owned = conn.execute(
                select(ApiTokenRow.id).where(
                    ApiTokenRow.id == token_id, ApiTokenRow.user_id == user_id
                )
            ).first()
            if owned is None:
                return None
        return _revoke(conn, user_id, only=token_id)


def deactivate_user(db: Database, username: str) -> dict[str, Any] | None:
    """Mark the user inactive, revoke their tokens and end their sessions, in one transaction.
    None if there is no such user; else ``last_admin`` (True: refused, nothing changed),
    ``was_active``, ``revoked_tokens`` and ``ended_sessions``.

    On PostgreSQL the active admins' rows are locked first (``FOR UPDATE``), so two admins
    deactivating each other at once run one after the other and the second is refused. SQLite
    ignores ``FOR UPDATE``; there the second of two such writers fails with "database is
    locked" instead of going through."""
    with db.engine.begin() as conn:
        active_admins = set(
            conn.execute(
                select(UserRow.username)
                .where(UserRow.role == "admin", UserRow.active)
                .with_for_update()
            ).scalars()
        )
        row = (
            conn.execute(select(UserRow.id, UserRow.active).where(UserRow.username == username))
            .mappings()
            .first()
        )
        if row is None:
            return None
        if active_admins == {username}:
            return {
                "last_admin": True,
                "was_active": True,
                "revoked_tokens": 0,
                "ended_sessions": 0,
            }
        conn.execute(update(UserRow).where(UserRow.id == row["id"]).values(active=False))
        return {
            "last_admin": False,
            "was_active": bool(row["active"]),
            "revoked_tokens": _revoke(conn, row["id"]),
            "ended_sessions": _end_sessions(conn, row["id"]),
        }


def reactivate_user(db: Database, username: str) -> bool | None:
    """Mark the user active again (their old tokens and sessions stay gone); whether they were
    inactive, or None if there is no such user."""
    with db.engine.begin() as conn:
        row = (
            conn.execute(select(UserRow.id, UserRow.active).where(UserRow.username == username))
            .mappings()
            .first()
        )
        if row is None:
            return None
        conn.execute(update(UserRow).where(UserRow.id == row["id"]).values(active=True))
    return not row["active"]


def replace_password(
    db: Database,
    username: str,
    password_hash: str,
    *,
    keep_token_id: int | None = None,
    keep_session_id: int | None = None,
) -> dict[str, int] | None:
    """Store a new password hash and, in the same transaction, revoke the user's tokens and end
    their sessions except the ones named (the caller's own). ``revoked_tokens`` and
    ``ended_sessions``, or None if there is no such user."""
    with db.engine.begin() as conn:
        user_id = _user_id(conn, username)
        if user_id is None:
            return None
        conn.execute(
            update(UserRow).where(UserRow.id == user_id).values(password_hash=password_hash)
        )
        return {
            "revoked_tokens": _revoke(conn, user_id, keep=keep_token_id),
            "ended_sessions": _end_sessions(conn, user_id, keep=keep_session_id),
        }


def _user_id(conn: Connection, username: str) -> int | None:
    return conn.execute(select(UserRow.id).where(UserRow.username == username)).scalar()


def _revoke(
    conn: Connection, user_id: int, *, only: int | None = None, keep: int | None = None
) -> int:
    """Revoke the user's live tokens (just ``only``, or all but ``keep``); how many."""
    stmt = update(ApiTokenRow).where(ApiTokenRow.user_id == user_id, ~ApiTokenRow.revoked)
    if only is not None:
        stmt = stmt.where(ApiTokenRow.id == only)
    if keep is not None:
        stmt = stmt.where(ApiTokenRow.id != keep)
    return conn.execute(stmt.values(revoked=True)).rowcount


def _end_sessions(conn: Connection, user_id: int, *, keep: int | None = None) -> int:
    """Delete the user's browser sessions (all but ``keep``); how many were still live."""
    mine = [WebSessionRow.user_id == user_id]
    if keep is not None:
        mine.append(WebSessionRow.id != keep)
    conn.execute(delete(WebSessionRow).where(*mine, WebSessionRow.expires_at <= utcnow()))
    return conn.execute(delete(WebSessionRow).where(*mine)).rowcount


def insert_session(
    db: Database, user_id: int, token_hash: str, csrf_token: str, expires_at: datetime
) -> None:
    """Add a browser session (its token's hash) for the user; sessions past their end are
    deleted on the way (a table of a few rows per person: no index needed)."""
    with db.engine.begin() as conn:
        conn.execute(delete(WebSessionRow).where(WebSessionRow.expires_at < utcnow()))
        conn.execute(
            insert(WebSessionRow).values(
                user_id=user_id, token_hash=token_hash, csrf_token=csrf_token, expires_at=expires_at
            )
        )


def session_user(db: Database, token_hash: str) -> dict[str, Any] | None:
    """The active user of the session with this token hash, with the session's
    ``session_id``, ``csrf_token`` and ``expires_at`` (as stored: SQLite drops the zone); None
    if unknown or the user is deactivated."""
    with db.engine.connect() as conn:
        row = (
            conn.execute(
                select(
                    *_USER_COLUMNS,
                    WebSessionRow.id.label("session_id"),
                    WebSessionRow.csrf_token,
                    WebSessionRow.expires_at,
                )
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
