"""Request metrics and request ids for the web app, and the project gauges ``/metrics``
refreshes on each scrape (issue 15, item 3).

Every response carries ``X-Request-ID`` (the caller's, when it is a short token, else a new
one) and is counted in ``labelloop_http_requests`` by method, route template and status, its
time in ``labelloop_http_request_seconds``; one log line per request on ``labelloop.http``
carries the id, so a JSON log (``--log-json``) can be joined with the caller's.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "labelloop_http_requests",
    "HTTP requests by method, route and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "labelloop_http_request_seconds",
    "Seconds to answer an HTTP request, by method and route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ITEMS = Gauge("labelloop_items", "Items per state.", ["project", "state"])
CHAMPION = Gauge(
    "labelloop_model_version",
    "The registered version an alias points at.",
    ["project", "model", "alias"],
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = logging.getLogger("labelloop.http")


def request_id(given: str | None) -> str:
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def instrument(app: FastAPI) -> None:
    @app.middleware("http")
    async def count_and_tag(request: Request, call_next):  # noqa: ANN001, ANN202
        rid = request_id(request.headers.get("x-request-id"))
        request.state.request_id = rid
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            took = time.perf_counter() - started
            route = getattr(request.scope.get("route"), "path", None) or "unmatched"
            REQUESTS.labels(request.method, route, str(status)).inc()
            LATENCY.labels(request.method, route).observe(took)
            log.info(
                "%s %s %s",
                request.method,
                route,
                status,
                extra={"request_id": rid, "status": status, "seconds": round(took, 6)},
            )
        response.headers["X-Request-ID"] = rid
        return response


def refresh_project_gauges(project: Any) -> None:
    """Items per state, and the versions the registry's aliases point at (only when the
    project has a registry already: a scrape never creates one)."""
    from labelloop.store.items import counts_by_state

    with project.db.engine.connect() as conn:
        states = counts_by_state(conn, project.id)
    for state, n in states.items():
        ITEMS.labels(project.config.name, state).set(n)
    if project._registry is None and not (project.folder / "mlflow.db").exists():
        return
    reg = project.registry
    for name in (reg.name, reg.student_name):
        for alias in ("champion", "challenger"):
            mv = reg.by_alias(alias, name)
            if mv is not None:
                CHAMPION.labels(project.config.name, name, alias).set(mv.version)
