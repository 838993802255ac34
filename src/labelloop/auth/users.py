"""Users with roles (admin, reviewer, viewer), API tokens for machines, browser sessions.

Only hashes are stored: scrypt for passwords, SHA-256 for random tokens (which carry 256
bits of entropy, so a fast hash is enough).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from labelloop.auth.passwords import hash_password, token_digest, verify_password
from labelloop.core.errors import LabelloopError
from labelloop.store.db import Database
from labelloop.store.models import ApiTokenRow, UserRow, WebSessionRow, utcnow

ROLES = ("admin", "reviewer", "viewer")
SESSION_HOURS = 12
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


class AuthError(LabelloopError):
    """Unknown user, wrong password, bad role, or a token that is not valid."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str

    def can(self, needed: str) -> bool:
        """admin can do everything a reviewer can, a reviewer everything a viewer can."""
        return ROLES.index(self.role) <= ROLES.index(needed)


def _user(row: UserRow) -> User:
    return User(row.id, row.username, row.role)


def create_user(db: Database, username: str, role: str, password: str | None = None) -> User:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if not _USERNAME.match(username):
        raise AuthError(f"user name {username!r} may hold only letters, digits and _ . @ -")
    try:
        with db.session() as s:
            row = UserRow(
                username=username,
                role=role,
                password_hash=hash_password(password) if password else None,
            )
            s.add(row)
            s.flush()
            return _user(row)
    except IntegrityError:
        raise AuthError(f"user {username!r} already exists") from None


def list_users(db: Database) -> list[User]:
    with db.session() as s:
        return [_user(r) for r in s.scalars(select(UserRow).order_by(UserRow.id))]


def set_password(db: Database, username: str, password: str) -> None:
    with db.session() as s:
        n = s.execute(
            update(UserRow)
            .where(UserRow.username == username)
            .values(password_hash=hash_password(password))
        ).rowcount
    if not n:
        raise AuthError(f"no user {username!r}")


def authenticate(db: Database, username: str, password: str) -> User:
    with db.session() as s:
        row = s.scalars(select(UserRow).where(UserRow.username == username)).first()
        ok = row is not None and row.active and verify_password(password, row.password_hash)
        if not ok:
            raise AuthError("wrong user name or password")
        return _user(row)


def create_token(db: Database, username: str, name: str = "api") -> str:
    """A new API token for ``username``; the plain value is returned once and never stored."""
    token = "llt_" + secrets.token_urlsafe(32)
    with db.session() as s:
        row = s.scalars(select(UserRow).where(UserRow.username == username)).first()
        if row is None:
            raise AuthError(f"no user {username!r}")
        s.add(ApiTokenRow(user_id=row.id, name=name, token_hash=token_digest(token)))
    return token


def user_for_token(db: Database, token: str) -> User | None:
    with db.session() as s:
        row = s.execute(
            select(UserRow)
            .join(ApiTokenRow, ApiTokenRow.user_id == UserRow.id)
            .where(
                ApiTokenRow.token_hash == token_digest(token), ~ApiTokenRow.revoked, UserRow.active
            )
        ).scalar_one_or_none()
        return _user(row) if row else None


def start_session(db: Database, user: User) -> tuple[str, str]:
    """(cookie value, CSRF token) for a new browser session of ``user``."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    with db.session() as s:
        s.add(
            WebSessionRow(
                user_id=user.id,
                token_hash=token_digest(token),
                csrf_token=csrf,
                expires_at=utcnow() + timedelta(hours=SESSION_HOURS),
            )
        )
    return token, csrf


def user_for_session(db: Database, token: str) -> tuple[User, str] | None:
    """The user and CSRF token of a live session, or None."""
    with db.session() as s:
        row = s.execute(
            select(UserRow, WebSessionRow.csrf_token, WebSessionRow.expires_at)
            .join(WebSessionRow, WebSessionRow.user_id == UserRow.id)
            .where(WebSessionRow.token_hash == token_digest(token), UserRow.active)
        ).first()
        if row is None or _aware(row[2]) < utcnow():
            return None
        return _user(row[0]), row[1]


def end_session(db: Database, token: str) -> None:
    with db.session() as s:
        s.execute(delete(WebSessionRow).where(WebSessionRow.token_hash == token_digest(token)))


def _aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they were written in UTC."""
    from datetime import UTC

    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
