"""The FastAPI application: the JSON API under /api and the review pages, over one Project."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from labelloop.api import routes_api, routes_edge, routes_models, routes_monitor, routes_pages
from labelloop.api.limits import BodyLimit, TrustedProxies, trimmed_errors
from labelloop.api.observability import instrument, refresh_project_gauges
from labelloop.api.security import Caller, admin
from labelloop.auth.throttle import LoginThrottle
from labelloop.core.errors import LabelError, LabelloopError
from labelloop.project import Project
from labelloop.review.queue import LeaseError

STATIC = Path(__file__).parent / "static"
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_NO_CSP: tuple[str, ...] = ()
# Endpoints that take file uploads: their bodies may reach api.max_upload_bytes.
UPLOAD_PATHS = ("/api/ingest", "/api/import/label-studio")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get(
        "accept", ""
    )


def _error(request: Request, code: int, detail: object) -> Response:
    if _wants_html(request):
        if code == status.HTTP_401_UNAUTHORIZED:
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return routes_pages.templates.TemplateResponse(
            request,
            "error.html",
            {"code": code, "detail": detail, "caller": None},
            status_code=code,
        )
    return JSONResponse({"detail": detail}, status_code=code)


def create_app(project: Project, login_throttle: LoginThrottle | None = None) -> FastAPI:
    """The web app over ``project``; the project stays open for the app's lifetime.

    ``login_throttle`` limits failed logins (default: 5 per user name or address per 15 min).
    The project's ``api`` settings bound request bodies and uploads and name the reverse
    proxies whose forwarded headers count; read once, here.
    """
    app = FastAPI(
        title=f"labelloop: {project.config.name}",
        description=(
            "Review queue, labels and administration of one labelloop project. Browsers log "
            "in at /login (session cookie; state-changing requests send the X-CSRF-Token "
            "header); machines send `Authorization: Bearer <token>` "
            "(create one with `labelloop user token NAME`)."
        ),
        version="1",
        # Swagger UI and ReDoc load from a CDN (nothing may be fetched here) and every page but
        # /health and /login needs a login: our own /docs page and /openapi.json replace them.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.project = project
    app.state.login_throttle = login_throttle or LoginThrottle()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(routes_pages.router)
    app.include_router(routes_api.router)
    app.include_router(routes_edge.router)
    app.include_router(routes_models.router)
    app.include_router(routes_monitor.router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        response = _error(request, exc.status_code, exc.detail)
        for key, value in (exc.headers or {}).items():
            response.headers.setdefault(key, value)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own handler repeats each bad input whole (a 10 MB string, a NaN that JSON
        # cannot even encode); this one quotes a short excerpt.
        return JSONResponse({"detail": trimmed_errors(exc.errors())}, status_code=422)

    @app.exception_handler(LeaseError)
    async def lease_error(request: Request, exc: LeaseError) -> Response:
        return _error(request, status.HTTP_409_CONFLICT, str(exc))

    @app.exception_handler(LabelError)
    async def label_error(request: Request, exc: LabelError) -> Response:
        return _error(request, 422, str(exc))

    @app.exception_handler(LabelloopError)
    async def labelloop_error(request: Request, exc: LabelloopError) -> Response:
        return _error(request, status.HTTP_400_BAD_REQUEST, str(exc))

    # Added before (so inside) the headers middleware below: its 413s get those headers, and
    # the 413 it raises while a chunked body is read reaches FastAPI as is (from under a
    # BaseHTTPMiddleware it would arrive wrapped and turn into a 400).
    settings = project.config.api
    app.add_middleware(
        BodyLimit,
        max_body=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # noqa: ANN001, ANN202
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith(_NO_CSP):
            response.headers.setdefault("Content-Security-Policy", _CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
        if request.url.path.startswith("/api"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    instrument(app, "review")  # request ids, counts and latency (outside the headers middleware)
    if settings.trusted_proxies:  # the outermost layer: every other one sees the real client
        app.add_middleware(TrustedProxies, proxies=settings.trusted_proxies)
    _ops_routes(app, project)
    return app


def _ops_routes(app: FastAPI, project: Project) -> None:
    """``GET /ready`` (no login, like /health): 200 when the store answers, else 503;
    ``GET /metrics`` (admin): the process's Prometheus metrics."""
    from labelloop.workers.metrics import store_status

    @app.get("/ready", include_in_schema=False)
    def ready() -> Response:
        store = store_status(project.db, project.id)
        if store == "ok":
            return JSONResponse({"store": "ok"})
        # The error may name the database's host: logged, not shown to a caller with no login.
        logging.getLogger("labelloop.api").warning("not ready: store %s", store)
        return JSONResponse({"store": "unavailable"}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    def metrics(caller: Annotated[Caller, Depends(admin)]) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        try:
            refresh_project_gauges(project)
        except Exception as exc:  # noqa: BLE001 - a scrape still answers with the rest
            logging.getLogger("labelloop.api").warning("project gauges: %s", exc)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
