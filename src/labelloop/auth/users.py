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
SESSION_HOURS = 12  # the default of auth.session_hours
DEFAULT_TOKEN_DAYS = 90  # the default of auth.token_days
MAX_TOKEN_DAYS = 3650
TOKEN_SCOPES = ("api", "predict")  # see issue_token
# How stale a token's last_used_at may get: stamping it at most once an hour keeps checking a
# token a read, not a write per request (SQLite has one writer at a time).
LAST_USE_RESOLUTION = timedelta(hours=1)
USERNAME_PATTERN = r"[A-Za-z0-9_.@-]{1,100}"
_USERNAME = re.compile(USERNAME_PATTERN)


class AuthError(LabelloopError):
    """Unknown user, wrong password, bad role, or a token that is not valid."""


class UnknownUser(AuthError):
    """No user has this name."""


class InactiveUser(AuthError):
    """The user is deactivated: no logins, no tokens."""


class LastAdmin(AuthError):
    """The change would leave no active admin."""


class WrongPassword(AuthError):
    """The current password given for a password change is wrong."""


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str
    active: bool = True

    def can(self, needed: str) -> bool:
        """admin can do everything a reviewer can, a reviewer everything a viewer can."""
        return ROLES.index(self.role) <= ROLES.index(needed)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new API token: ``token`` is the plain value, shown once and never stored."""

    id: int
    username: str
    name: str
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown about a stored API token (never its value or hash)."""

    id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool

    @property
    def state(self) -> str:
        """``live``, ``revoked`` or ``expired``."""
        if self.revoked:
            return "revoked"
        if self.expires_at is None or self.expires_at <= utcnow():
            return "expired"
        return "live"


@dataclass(frozen=True, slots=True)
class Revocation:
    """What a deactivation or a password change ended: API tokens revoked, sessions ended."""

    revoked_tokens: int
    ended_sessions: int


@dataclass(frozen=True, slots=True)
class Session:
    """A live browser session: its user, CSRF token and id."""

    user: User
    csrf: str
    id: int


def _user(row: dict[str, Any]) -> User:
    return User(row["id"], row["username"], row["role"], bool(row.get("active", True)))


def _new_password_hash(password: str) -> str:
    if not password:
        raise AuthError("the password is empty")
    return hash_password(password)


def create_user(db: Database, username: str, role: str, password: str | None = None) -> User:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if not _USERNAME.fullmatch(username):  # not .match: "$" lets a final newline through
        raise AuthError(f"user name {username!r} may hold only letters, digits and _ . @ -")
    row = su.insert_user(db, username, role, _new_password_hash(password) if password else None)
    if row is None:
        raise AuthError(f"user {username!r} already exists")
    return _user(row)


def list_users(db: Database) -> list[User]:
    return [_user(r) for r in su.list_users(db)]


def any_user(db: Database) -> bool:
    """Whether any user exists yet (the login page explains the first run when none does)."""
    return su.any_user(db)


def has_active_admin(db: Database) -> bool:
    return any(u.role == "admin" and u.active for u in list_users(db))


def authenticate(db: Database, username: str, password: str) -> User:
    """The user, or AuthError. The password hash is checked whatever happens (against a dummy
    for an unknown, inactive or password-less user), so the time taken does not tell which
    user names exist or which are deactivated."""
    # A name no user can have is not looked up (PostgreSQL refuses a NUL byte in a query).
    row = su.user_login(db, username) if _USERNAME.fullmatch(username) else None
    usable = row is not None and bool(row["active"]) and bool(row["password_hash"])
    matches = verify_password(password, row["password_hash"] if usable else DUMMY_HASH)
    if not (usable and matches):
        raise AuthError("wrong user name or password")
    return _user(row)


# -- passwords -------------------------------------------------------------------------------


def set_password(
    db: Database,
    username: str,
    password: str,
    *,
    keep_token_id: int | None = None,
    keep_session_id: int | None = None,
) -> Revocation:
    """Give ``username`` a new password (an admin's reset, or the CLI). Their API tokens are
    revoked and their browser sessions ended, except the ones named (the caller's own)."""
    done = su.replace_password(
        db,
        username,
        _new_password_hash(password),
        keep_token_id=keep_token_id,
        keep_session_id=keep_session_id,
    )
    if done is None:
        raise UnknownUser(f"no user {username!r}")
    return Revocation(done["revoked_tokens"], done["ended_sessions"])


def change_password(
    db: Database,
    username: str,
    current: str,
    new: str,
    *,
    keep_token_id: int | None = None,
    keep_session_id: int | None = None,
) -> Revocation:
    """A user's own change: needs the current password (WrongPassword otherwise), then as
    ``set_password``."""
    row = su.user_login(db, username)
    stored = row["password_hash"] if row is not None and row["active"] else None
    if not verify_password(current, stored or DUMMY_HASH) or not stored:
        raise WrongPassword("the current password is wrong")
    return set_password(
        db, username, new, keep_token_id=keep_token_id, keep_session_id=keep_session_id
    )


# -- deactivation ----------------------------------------------------------------------------


def deactivate_user(db: Database, username: str) -> Revocation:
    """Deactivate ``username`` at once: their tokens are revoked and their sessions ended, they
    cannot log in or get tokens. Refused (LastAdmin) for the last active admin."""
    done = su.deactivate_user(db, username)
    if done is None:
        raise UnknownUser(f"no user {username!r}")
    if done["last_admin"]:
        raise LastAdmin(
            f"user {username!r} is the last active admin; make or reactivate another admin first"
        )
    return Revocation(done["revoked_tokens"], done["ended_sessions"])


def reactivate_user(db: Database, username: str) -> bool:
    """Let ``username`` log in again (with new tokens: the old ones stay revoked); whether they
    were deactivated."""
    changed = su.reactivate_user(db, username)
    if changed is None:
        raise UnknownUser(f"no user {username!r}")
    return changed


# -- API tokens ------------------------------------------------------------------------------


def issue_token(
    db: Database,
    username: str,
    name: str = "api",
    days: int = DEFAULT_TOKEN_DAYS,
    scope: str = "api",
) -> IssuedToken:
    """A new API token for ``username`` that works for ``days`` days; refused for a
    deactivated user. ``scope``: ``"api"`` (the annotation app and its REST API, as the
    user's role allows) or ``"predict"`` (only the prediction app)."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise AuthError(f"a token lasts 1 to {MAX_TOKEN_DAYS} days, not {days}")
    if scope not in TOKEN_SCOPES:
        raise AuthError(f"a token's scope is one of {', '.join(TOKEN_SCOPES)}, not {scope!r}")
    token = "llt_" + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(days=days)
    token_id = su.insert_token(db, username, name, token_digest(token), expires_at, scope)
    if token_id is None:
        row = su.user_login(db, username)
        if row is None:
            raise UnknownUser(f"no user {username!r}")
        raise InactiveUser(f"user {username!r} is deactivated; reactivate them first")
    return IssuedToken(token_id, username, name, token, expires_at)


def create_token(
    db: Database,
    username: str,
    name: str = "api",
    days: int = DEFAULT_TOKEN_DAYS,
    scope: str = "api",
) -> str:
    """The plain value of a new API token (see ``issue_token``)."""
    return issue_token(db, username, name, days, scope).token


def list_tokens(db: Database, username: str) -> list[TokenInfo]:
    rows = su.list_tokens(db, username)
    if rows is None:
        raise UnknownUser(f"no user {username!r}")
    return [
        TokenInfo(
            r["id"],
            r["name"],
            _aware(r["created_at"]),
            _aware_or_none(r["expires_at"]),
            _aware_or_none(r["last_used_at"]),
            bool(r["revoked"]),
        )
        for r in rows
    ]


def revoke_tokens(db: Database, username: str, token_id: int | None = None) -> int:
    """Revoke one of the user's tokens, or all of them; how many were not revoked yet."""
    n = su.revoke_tokens(db, username, token_id)
    if n is None:
        if token_id is not None and su.user_login(db, username) is not None:
            raise UnknownUser(f"user {username!r} has no token {token_id}")
        raise UnknownUser(f"no user {username!r}")
    return n


def check_token(db: Database, token: str, scope: str = "api") -> tuple[User, int]:
    """The user of an API token and the token's id; AuthError saying why it is refused
    (unknown, revoked, expired, its user deactivated, or made for another ``scope``)."""
    row = su.token_login(db, token_digest(token))
    if row is None:
        raise AuthError("unknown API token")
    if row["scope"] != scope:
        raise AuthError(
            f"this API token has scope {row['scope']!r}; this service needs a "
            f"{scope!r} token (labelloop user token --scope {scope})"
        )
    if row["revoked"]:
        raise AuthError("this API token was revoked; ask an admin for a new one")
    if not row["active"]:
        raise InactiveUser(f"user {row['username']!r} of this API token is deactivated")
    now = utcnow()
    expires_at = _aware_or_none(row["expires_at"])
    if expires_at is None or expires_at <= now:
        when = f" on {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else ""
        raise AuthError(f"this API token expired{when}; ask an admin for a new one")
    last_used = _aware_or_none(row["last_used_at"])
    if last_used is None or now - last_used >= LAST_USE_RESOLUTION:
        su.stamp_token_use(db, row["token_id"], now)
    return _user(row), row["token_id"]


def user_for_token(db: Database, token: str) -> User | None:
    """The user of a valid API token, or None (``check_token`` says why)."""
    try:
        return check_token(db, token)[0]
    except AuthError:
        return None


# -- browser sessions ------------------------------------------------------------------------


def start_session(db: Database, user: User, hours: float = SESSION_HOURS) -> tuple[str, str]:
    """(cookie value, CSRF token) for a new browser session of ``user``, good for ``hours``."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    su.insert_session(db, user.id, token_digest(token), csrf, utcnow() + timedelta(hours=hours))
    return token, csrf


def session_for(db: Database, token: str) -> Session | None:
    """The live session with this cookie value, or None (unknown, ended, expired, or its user
    deactivated)."""
    row = su.session_user(db, token_digest(token))
    if row is None or _aware(row["expires_at"]) <= utcnow():
        return None
    return Session(_user(row), row["csrf_token"], row["session_id"])


def user_for_session(db: Database, token: str) -> tuple[User, str] | None:
    """The user and CSRF token of a live session, or None."""
    found = session_for(db, token)
    return (found.user, found.csrf) if found else None


def end_session(db: Database, token: str) -> None:
    su.delete_session(db, token_digest(token))


def _aware(dt: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they were written in UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _aware_or_none(dt: datetime | None) -> datetime | None:
    return None if dt is None else _aware(dt)
