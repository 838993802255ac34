"""Server-rendered pages: login, the review page and the dashboard."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from labelloop.api.dashboard import (
    SOURCE_COLORS,
    SOURCES,
    bar_chart_svg,
    breakable,
    column_chart_svg,
    dashboard_numbers,
    progress_bar_html,
    share_bar_svg,
)
from labelloop.api.label_keys import CANDIDATE_KEYS, digit_scheme, label_codes
from labelloop.api.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Caller,
    project_of,
    reviewer,
    viewer,
)
from labelloop.auth import (
    AuthError,
    any_user,
    authenticate,
    end_session,
    start_session,
    user_for_session,
)
from labelloop.auth.throttle import LoginThrottle

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only same-site paths: no scheme, no host, no '//' (an open redirect otherwise)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if len(target) > 2000:  # echoed into the login page: no megabyte of it
        return "/"
    return target


def _home_for(caller: Caller) -> str:
    return "/review" if caller.user.can("reviewer") else "/dashboard"


def _login_page(
    request: Request,
    *,
    next_url: str,
    error: str | None = None,
    code: int = 200,
    first_run: bool = False,
) -> HTMLResponse:
    """The login form; ``first_run`` (no user exists yet) adds how to create the first admin."""
    token = secrets.token_urlsafe(24)
    context = {
        "csrf_token": token,
        "next": next_url,
        "error": error,
        "caller": None,
        "first_run": first_run,
    }
    response = templates.TemplateResponse(request, "login.html", context, status_code=code)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/login",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    first_run = not any_user(project_of(request).db)
    return _login_page(request, next_url=_safe_next(next), first_run=first_run)


@router.post("/login")
async def login(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _login_page(
            request,
            next_url=_safe_next(next),
            error="The login form expired; please try again.",
            code=status.HTTP_403_FORBIDDEN,
        )
    db = project_of(request).db
    throttle: LoginThrottle = request.app.state.login_throttle
    name_key = f"user:{username.strip().lower()[:200]}"  # names are at most 100 characters
    # The socket peer, or the forwarded client when the peer is one of api.trusted_proxies
    # (limits.TrustedProxies rewrites it); never a header from anyone else.
    keys = (name_key, f"ip:{request.client.host if request.client else '?'}")
    wait = throttle.retry_after(*keys)
    if wait:
        response = _login_page(
            request,
            next_url=_safe_next(next),
            error=f"Too many failed logins. Try again in {max(1, round(wait / 60))} minute(s).",
            code=status.HTTP_429_TOO_MANY_REQUESTS,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    try:
        user = await run_in_threadpool(authenticate, db, username, password)
    except AuthError:
        throttle.failed(*keys)
        return _login_page(
            request,
            next_url=_safe_next(next),
            error="Wrong user name or password.",
            code=status.HTTP_401_UNAUTHORIZED,
        )
    throttle.succeeded(name_key)  # not the address: one good account must not reset it
    hours = project_of(request).config.auth.session_hours
    cookie, _ = await run_in_threadpool(start_session, db, user, hours)
    target = _safe_next(next)
    if target == "/":
        target = "/review" if user.can("reviewer") else "/dashboard"
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(hours * 3600),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    """End the session; needs the session's CSRF token so other sites cannot log people out."""
    db = project_of(request).db
    cookie = request.cookies.get(SESSION_COOKIE)
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    if cookie:
        found = await run_in_threadpool(user_for_session, db, cookie)
        if found is not None:
            if not hmac.compare_digest(csrf_token.encode(), found[1].encode()):
                return Response("missing or invalid CSRF token", status_code=403)
            await run_in_threadpool(end_session, db, cookie)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(caller: Annotated[Caller, Depends(viewer)]) -> RedirectResponse:
    return RedirectResponse(_home_for(caller), status_code=status.HTTP_303_SEE_OTHER)


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, caller: Annotated[Caller, Depends(reviewer)]) -> HTMLResponse:
    """The review page. Keys (label_keys.py): letters filter the labels and each label's code
    typed there puts it first; digits pick labels 1-9 in a small taxonomy, else the item's
    top 5 machine candidates."""
    config = project_of(request).config
    scheme = digit_scheme(len(config.labels))
    codes = label_codes([spec.name for spec in config.labels])
    labels = [
        {
            "key": i + 1 if scheme == "positions" else None,
            "code": code,
            "name": spec.name,
            "description": spec.description,
            "guidelines": spec.guidelines,
            "examples": spec.examples[:3],
        }
        for i, (spec, code) in enumerate(zip(config.labels, codes, strict=True))
    ]
    return templates.TemplateResponse(
        request,
        "review.html",
        {
            "caller": caller,
            "project": config.name,
            "labels": labels,
            "multi": config.task == "multi_label",
            "scheme": scheme,
            "candidate_keys": CANDIDATE_KEYS,
            "image": config.modality == "image",
        },
    )


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request, caller: Annotated[Caller, Depends(viewer)]) -> HTMLResponse:
    numbers: dict[str, Any] = dashboard_numbers(project_of(request))
    throughput = numbers["throughput"]
    charts = {
        "progress": progress_bar_html(numbers["progress"]["by_state"]),
        "throughput": column_chart_svg(
            throughput["bins"],
            title=f"human labels per {throughput['unit']}",
            unit=f"labels in the {throughput['unit']}",
        ),
        "sources": share_bar_svg(
            numbers["items_by_source"], title="who decided the final labels", colors=SOURCE_COLORS
        ),
        "per_reviewer": bar_chart_svg(
            [(r["annotator"], r["labels"]) for r in numbers["reviewers"]],
            title="labels per reviewer",
        ),
    }
    return templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            "caller": caller,
            "numbers": numbers,
            "charts": charts,
            "sources": SOURCES,
            "breakable": breakable,
        },
    )


@router.get("/monitoring", response_class=HTMLResponse)
def monitoring_page(request: Request, caller: Annotated[Caller, Depends(viewer)]) -> HTMLResponse:
    from labelloop.api.monitoring_page import monitoring_numbers

    return templates.TemplateResponse(
        request,
        "monitoring.html",
        {"caller": caller, "m": monitoring_numbers(project_of(request))},
    )


@router.get("/openapi.json")
def openapi_document(request: Request, caller: Annotated[Caller, Depends(viewer)]) -> Response:
    """The OpenAPI document of the REST API (for any logged-in user or token)."""
    from fastapi.responses import JSONResponse

    return JSONResponse(request.app.openapi())


@router.get("/docs", response_class=HTMLResponse)
def api_docs_page(request: Request, caller: Annotated[Caller, Depends(viewer)]) -> HTMLResponse:
    """The REST API, endpoint by endpoint, rendered from the OpenAPI document (works offline)."""
    doc = request.app.openapi()
    endpoints = []
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {})
            body_ref = next(
                (c.get("schema", {}).get("$ref", "") for c in body.values()), ""
            ).rsplit("/", 1)[-1]
            ok = op.get("responses", {}).get("200", {}).get("content", {})
            out_ref = next((c.get("schema", {}).get("$ref", "") for c in ok.values()), "").rsplit(
                "/", 1
            )[-1]
            endpoints.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "params": [
                        f"{p['name']} ({p['in']}{', required' if p.get('required') else ''})"
                        for p in op.get("parameters", [])
                    ],
                    "body": body_ref or (", ".join(body) if body else ""),
                    "returns": out_ref,
                    "errors": sorted(c for c in op.get("responses", {}) if c != "200"),
                }
            )
    return templates.TemplateResponse(
        request,
        "api_docs.html",
        {"caller": caller, "info": doc.get("info", {}), "endpoints": endpoints},
    )
