"""HTTP request metrics and request ids for labelloop's web apps (the review app and the
prediction app), issue 15, item 3.

Every response carries ``X-Request-ID`` (the caller's, when it is a short token, else a new
one) and is counted in ``labelloop_http_requests`` by app, method, route template and status,
its time in ``labelloop_http_request_seconds``; one log line per request on
``labelloop.http`` carries the id, so a JSON log (``--log-json``) can be joined with the
caller's.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import FastAPI, Request
from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "labelloop_http_requests",
    "HTTP requests by app, method, route and status.",
    ["app", "method", "route", "status"],
)
LATENCY = Histogram(
    "labelloop_http_request_seconds",
    "Seconds to answer an HTTP request, by app, method and route.",
    ["app", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PREDICTIONS = Counter(
    "labelloop_predictions",
    "Rows answered by the prediction app, by model, version and variant (shadow: not served).",
    ["model", "version", "variant"],
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = logging.getLogger("labelloop.http")


def request_id(given: str | None) -> str:
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def instrument(app: FastAPI, name: str) -> None:
    """Count, time and tag every request of ``app`` (``name``: review, predict)."""

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
            REQUESTS.labels(name, request.method, route, str(status)).inc()
            LATENCY.labels(name, request.method, route).observe(took)
            log.info(
                "%s %s %s",
                request.method,
                route,
                status,
                extra={"request_id": rid, "status": status, "seconds": round(took, 6)},
            )
        response.headers["X-Request-ID"] = rid
        return response
