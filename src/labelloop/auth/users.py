"""Users with roles (admin, reviewer, viewer), API tokens for machines, browser sessions.

Only hashes are stored: scrypt for passwords, SHA-256 for random tokens (which carry 256
bits of entropy, so a fast hash is enough).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from labelloop.auth.passwords import DUMMY_HASH, hash_password, token_digest, verify_password
from labelloop.core.errors import LabelloopError
from labelloop.store import users as su
from labelloop.store.db import Database
from labelloop.store.models import utcnow

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


def _user(row: dict[str, Any]) -> User:
    return User(row["id"], row["username"], row["role"])


def create_user(db: Database, username: str, role: str, password: str | None = None) -> User:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if not _USERNAME.match(username):
        raise AuthError(f"user name {username!r} may hold only letters, digits and _ . @ -")
    row = su.insert_user(db, username, role, hash_password(password) if password else None)
    if row is None:
        raise AuthError(f"user {username!r} already exists")
    return _user(row)


def list_users(db: Database) -> list[User]:
    return [_user(r) for r in su.list_users(db)]


def set_password(db: Database, username: str, password: str) -> None:
    if not su.set_password_hash(db, username, hash_password(password)):
        raise AuthError(f"no user {username!r}")


def authenticate(db: Database, username: str, password: str) -> User:
    """The user, or AuthError. The password hash is checked whatever happens (against a dummy
    for an unknown, inactive or password-less user), so the time taken does not tell which
    user names exist."""
    row = su.user_login(db, username)
    usable = row is not None and bool(row["active"]) and bool(row["password_hash"])
    matches = verify_password(password, row["password_hash"] if usable else DUMMY_HASH)
    if not (usable and matches):
        raise AuthError("wrong user name or password")
    return _user(row)


def create_token(db: Database, username: str, name: str = "api") -> str:
    """A new API token for ``username``; the plain value is returned once and never stored."""
    token = "llt_" + secrets.token_urlsafe(32)
    if not su.insert_token(db, username, name, token_digest(token)):
        raise AuthError(f"no user {username!r}")
    return token


def user_for_token(db: Database, token: str) -> User | None:
    row = su.user_for_token_hash(db, token_digest(token))
    return _user(row) if row else None


def start_session(db: Database, user: User) -> tuple[str, str]:
    """(cookie value, CSRF token) for a new browser session of ``user``."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    su.insert_session(
        db, user.id, token_digest(token), csrf, utcnow() + timedelta(hours=SESSION_HOURS)
    )
    return token, csrf


def user_for_session(db: Database, token: str) -> tuple[User, str] | None:
    """The user and CSRF token of a live session, or None."""
    row = su.session_user(db, token_digest(token))
    if row is None or _aware(row["expires_at"]) < utcnow():
        return None
    return _user(row), row["csrf_token"]


def end_session(db: Database, token: str) -> None:
    su.delete_session(db, token_digest(token))


def _aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they were written in UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
