"""Who is calling: a browser session (cookie + CSRF token) or a machine (Bearer token).

A session's state-changing request must carry its CSRF token, in the ``X-CSRF-Token`` header
(fetch) or a ``csrf_token`` form field (plain forms); a Bearer request needs none, since a
browser never adds that header on its own.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from labelloop.auth import AuthError, User, check_token, session_for
from labelloop.project import Project

SESSION_COOKIE = "labelloop_session"
LOGIN_CSRF_COOKIE = "labelloop_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user; the CSRF token and session id when they came through a browser
    session, the token id when through an API token (a password change keeps that one)."""

    user: User
    csrf: str | None = None
    session_id: int | None = None
    token_id: int | None = None

    @property
    def name(self) -> str:
        return self.user.username


def project_of(request: Request) -> Project:
    return request.app.state.project


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # Starlette caches it for the endpoint's own Form params
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"missing or invalid CSRF token: send the {CSRF_HEADER} header of this session",
        )


async def current_caller(request: Request) -> Caller:
    """The caller, or 401. Bearer tokens win over cookies when both are sent."""
    project = project_of(request)
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("use 'Authorization: Bearer <token>'")
        try:
            user, token_id = await run_in_threadpool(check_token, project.db, token.strip())
        except AuthError as exc:  # unknown, revoked, expired, or its user deactivated
            raise _unauthorized(str(exc)) from None
        return Caller(user, token_id=token_id)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise _unauthorized("not logged in: log in at /login or send a Bearer token")
    found = await run_in_threadpool(session_for, project.db, cookie)
    if found is None:
        raise _unauthorized("the session expired or ended: log in again at /login")
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, found.csrf)
    return Caller(found.user, found.csrf, session_id=found.id)


def require(role: str) -> Callable[..., Caller]:
    """A dependency that lets through callers with ``role`` or a higher one, else 403."""

    def dependency(caller: Caller = Depends(current_caller)) -> Caller:  # noqa: B008
        if not caller.user.can(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"user {caller.name!r} has role {caller.user.role!r}; this needs {role!r}",
            )
        return caller

    dependency.__name__ = f"require_{role}"
    return dependency


def require_self_or_admin(caller: Caller, username: str) -> None:
    """403 unless ``caller`` is ``username`` or an admin (their own tokens, their own password)."""
    if caller.name != username and not caller.user.can("admin"):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"user {caller.name!r} may manage only their own account; this needs 'admin'",
        )


viewer = require("viewer")
reviewer = require("reviewer")
admin = require("admin")
