"""Limits on what a request may bring: body size, which forwarded headers count, and how much
of a bad input an error repeats.

Plain ASGI middleware (no dependency on the server or the FastAPI version): ``BodyLimit``
answers 413 before the app reads a body that is too large; ``TrustedProxies`` takes the
client address and scheme from ``X-Forwarded-For`` / ``X-Forwarded-Proto`` only when the
socket peer is a configured proxy.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EXCERPT_CHARS = 80
_MAX_ERROR_MSG = 300


class BodyLimit:
    """413 for a request body over ``max_body`` bytes (``max_upload`` on ``upload_paths``).

    A declared ``Content-Length`` over the limit is refused before anything is read; a body
    sent without one (chunked) is counted as it arrives and refused once it passes the limit.
    """

    def __init__(
        self, app: ASGIApp, *, max_body: int, max_upload: int, upload_paths: Iterable[str]
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload
        self.upload_paths = frozenset(upload_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.upload_paths:
            limit, setting = self.max_upload, "api.max_upload_bytes"
        else:
            limit, setting = self.max_body, "api.max_body_bytes"
        detail = f"the request body is larger than {limit:,} bytes ({setting})"
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI passes an HTTPException raised while reading the body on to the
                    # app's handler, which answers 413 with this detail.
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class TrustedProxies:
    """Believe ``X-Forwarded-For`` and ``X-Forwarded-Proto`` only from ``proxies`` (IP
    addresses or networks). The client is the right-most forwarded address that is not itself
    a trusted proxy (each proxy appends the address it saw, so only that one is vouched for)."""

    def __init__(self, app: ASGIApp, proxies: Iterable[str]) -> None:
        self.app = app
        self.networks = [ipaddress.ip_network(p.strip(), strict=False) for p in proxies]

    def trusted(self, host: str | None) -> bool:
        if not host or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self.trusted(client[0]):
            forwarded: list[str] = []
            proto = None
            for name, value in scope.get("headers", ()):
                if name == b"x-forwarded-for":
                    forwarded += [h.strip() for h in value.decode("latin-1").split(",")]
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").strip().lower()
            hops = [_host_of(h) for h in forwarded if h]
            scope = dict(scope)
            if hops:
                untrusted = [h for h in hops if not self.trusted(h)]
                scope["client"] = ((untrusted[-1] if untrusted else hops[0])[:100], 0)
            if proto in ("http", "https") and scope["type"] == "http":
                scope["scheme"] = proto
        await self.app(scope, receive, send)


def _host_of(hop: str) -> str:
    """The address of one X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``)."""
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> Any:
    """A short, JSON-safe stand-in for a piece of request input in an error body: small values
    as they are, long ones cut to ``limit`` characters with an ellipsis, NaN and infinities as
    text (JSON has no words for them)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int | str):
        text = str(value)
        if len(text) <= limit:
            return value
        return f"{text[:limit]}… ({len(text):,} characters)"
    try:
        plain = jsonable_encoder(value)
        text = json.dumps(plain, allow_nan=False)
    except (TypeError, ValueError):
        plain, text = None, repr(value)
    if plain is not None and len(text) <= limit:
        return plain
    return f"{text[:limit]}… ({len(text):,} characters)"


def trimmed_errors(errors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors with the input they quote cut to an excerpt."""
    out = []
    for error in errors:
        error = dict(error)
        if "input" in error:
            error["input"] = excerpt(error["input"])
        if isinstance(error.get("msg"), str) and len(error["msg"]) > _MAX_ERROR_MSG:
            error["msg"] = error["msg"][:_MAX_ERROR_MSG] + "…"
        ctx = error.get("ctx")
        if isinstance(ctx, dict):
            error["ctx"] = {
                k: excerpt(v if isinstance(v, int | float | str) else str(v))
                for k, v in ctx.items()
            }
        out.append(error)
    return jsonable_encoder(out)
