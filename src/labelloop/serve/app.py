"""The prediction app: the registry's champion (and challenger) behind HTTP, apart from the
annotation app (``labelloop serve-models``; ``labelloop serve`` is the review app).

- ``GET /health``: the process answers (no auth). ``GET /ready``: 503 until a champion is
  loaded (no auth), for a load balancer's readiness probe.
- ``POST /predict``: ``{"input": row}`` or ``{"inputs": [rows]}``, optional ``"key"`` that
  makes the A/B split sticky (a user or entity id).
- ``POST /invocations``: MLflow's scoring protocol (``dataframe_split``, ``dataframe_records``,
  ``instances``, ``inputs``, or a ``text/csv`` body), answered ``{"predictions": [...]}`` as
  ``mlflow models serve`` answers for a model returning a DataFrame. The sticky key, if any,
  comes in the ``X-Variant-Key`` header.
- ``GET /models``: the versions in use, the serving settings, the log's counters.
  ``POST /reload`` (an admin's token): re-resolve the aliases now rather than at the next poll.

Every endpoint but the two probes needs ``Authorization: Bearer <token>`` with a token of scope
``predict`` (``labelloop user token NAME --scope predict``). A valid token is remembered for
``token_ttl`` seconds (30): checking one costs a store read (about a millisecond on SQLite),
which would otherwise be most of a one-row request's overhead. The price: a revoked token
keeps working for up to that long here.

A/B: ``model.serving.challenger_share`` of the keys go to the challenger (``serve.traffic``).
Shadow (``model.serving.shadow``): a request the champion answers is also scored by the
challenger after the answer is computed, in the log's thread; logged with ``variant
"shadow"``, ``served`` false, never returned. The log (``model.serving.log_predictions``) is
written by that thread in batches (``serve.recorder``), never on the request path.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from labelloop.auth import AuthError, User, check_token
from labelloop.core.config import ServingSettings
from labelloop.core.errors import LabelloopError
from labelloop.serve.http_metrics import PREDICTIONS, instrument
from labelloop.serve.inputs import InputError, Rows, check_rows, csv_rows, mlflow_rows, predict_rows
from labelloop.serve.recorder import Answer, Recorder
from labelloop.serve.service import (
    CHALLENGER,
    CHAMPION,
    POLL_SECONDS,
    Loaded,
    ModelService,
    Resolve,
    model_name_of,
    records,
    registry_resolver,
    timed_predict,
)
from labelloop.serve.traffic import choose_variant

if TYPE_CHECKING:
    from labelloop.store.context import ProjectContext

TOKEN_TTL_SECONDS = 30.0
# Requests of at most this many rows are scored on the event loop: the model holds the GIL
# for most of a one-row call anyway, and the hop to the threadpool and back costs more than
# it saves (bench/bench_predict_api.py). Larger ones go to the threadpool, so a long batch
# does not stall the probes and the other requests.
INLINE_ROWS = 16
_TOKEN_CACHE_MAX = 10_000
SCOPE = "predict"


class PredictRequest(BaseModel):
    """``input`` (one row) or ``inputs`` (a list); a row is an object of table columns for a
    table model, a string or ``{"text": ...}`` for a text model."""

    model_config = ConfigDict(extra="forbid")

    input: Any = None
    inputs: list[Any] | None = None
    key: str | None = Field(
        default=None, max_length=256, description="Sticky A/B key (a user or entity id)."
    )


@dataclass(frozen=True, slots=True)
class Scored:
    """One request's answer, before it is shaped for ``/predict`` or ``/invocations``."""

    request_id: str
    variant: str
    loaded: Loaded
    frame: pd.DataFrame
    outputs: list[dict[str, Any]]
    model_ms: float

    def headers(self) -> dict[str, str]:
        """``Server-Timing`` carries the model's own time: a client (the benchmark) subtracts
        it from the round trip to get the serving overhead of each request."""
        return {
            "X-Request-Id": self.request_id,
            "X-Model-Version": f"{self.loaded.name}/{self.loaded.version}",
            "X-Variant": self.variant,
            "Server-Timing": f"model;dur={self.model_ms:.3f}",
        }


class TokenCache:
    """Bearer token -> user, remembered ``ttl`` seconds after a successful check."""

    def __init__(self, ctx: ProjectContext, ttl: float) -> None:
        self.ctx = ctx
        self.ttl = ttl
        self._valid: dict[bytes, tuple[User, float]] = {}

    async def user(self, request: Request) -> User:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized(
                "send 'Authorization: Bearer <token>' with a token of scope predict"
            )
        key = hashlib.sha256(token.encode()).digest()  # no token values kept in memory
        now = time.monotonic()
        hit = self._valid.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            user, _ = await run_in_threadpool(check_token, self.ctx.db, token, SCOPE)
        except AuthError as exc:
            self._valid.pop(key, None)
            raise _unauthorized(str(exc)) from None
        if len(self._valid) >= _TOKEN_CACHE_MAX:
            self._valid.clear()
        self._valid[key] = (user, now + self.ttl)
        return user


class BodyLimit:
    """413 for a body over ``limit`` bytes: a declared length is refused before reading, a
    chunked body once it passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = {"detail": f"the request body is larger than {self.limit:,} bytes"}
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await JSONResponse(detail, status_code=413)(scope, receive, send)
                return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, detail["detail"])
            return message

        await self.app(scope, counted, send)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def create_predict_app(
    ctx: ProjectContext,
    *,
    resolve: Resolve | None = None,
    settings: ServingSettings | None = None,
    poll_seconds: float = POLL_SECONDS,
    token_ttl: float = TOKEN_TTL_SECONDS,
    max_body_bytes: int | None = None,
    inline_rows: int = INLINE_ROWS,
) -> FastAPI:
    """The prediction app for one project. ``resolve``: alias -> model version (default: the
    project's registry); ``settings`` default to the config's ``model.serving``;
    ``poll_seconds`` 0 turns the alias polling off (``POST /reload`` still works)."""
    serving = settings or ctx.config.model.serving
    service = ModelService(resolve or registry_resolver(ctx), poll_seconds=poll_seconds)
    recorder = Recorder(ctx.db, ctx.id, log_predictions=serving.log_predictions)
    tokens = TokenCache(ctx, token_ttl)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        recorder.start()
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            service.stop()
            await run_in_threadpool(recorder.stop)

    app = FastAPI(
        title="labelloop prediction app",
        description=f"Predictions of the registered model {model_name_of(ctx)!r}.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.service = service
    app.state.recorder = recorder
    app.state.serving = serving
    app.state.tokens = tokens

    async def caller(request: Request) -> User:
        return await tokens.user(request)

    async def started() -> None:
        """Load the models on first use when the server runs without a lifespan."""
        if not service.started:
            recorder.start()
            await run_in_threadpool(service.start)

    def serving_model(variant: str) -> tuple[str, Loaded]:
        champion, challenger = service.champion, service.challenger
        if variant == CHALLENGER and challenger is not None:
            return CHALLENGER, challenger
        if champion is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"no champion loaded yet: {service.last_error or 'the registry has none'}",
            )
        return CHAMPION, champion

    async def answer(rows: Rows, key: str | None, request_id: str | None = None) -> Scored:
        """Score ``rows`` with the variant the key lands on; queue the log and the shadow."""
        await started()
        variant, loaded = serving_model(choose_variant(key, serving.challenger_share))
        check_rows(rows, loaded.predictor, serving.max_rows)
        try:
            if len(rows) <= inline_rows:
                frame, ms = timed_predict(loaded, rows)
            else:
                frame, ms = await run_in_threadpool(timed_predict, loaded, rows)
        except (LabelloopError, ValueError, TypeError, KeyError) as exc:
            raise InputError(f"the model cannot score these rows: {exc}") from None
        # The request's id from the metrics middleware (the caller's X-Request-ID, if any):
        # one id in the answer, the header, the access log and the prediction log.
        request_id = request_id or uuid.uuid4().hex
        outputs = records(frame, loaded.predictor.classes)
        PREDICTIONS.labels(loaded.name, str(loaded.version), variant).inc(len(rows))
        recorder.submit(
            Answer(request_id, rows, loaded.name, loaded.version, variant, True, outputs, ms)
        )
        shadow = service.challenger
        if serving.shadow and variant == CHAMPION and shadow is not None:
            recorder.submit(
                Answer(
                    request_id,
                    rows,
                    shadow.name,
                    shadow.version,
                    "shadow",
                    False,
                    None,
                    0.0,
                    score=lambda r, m=shadow: records(
                        m.predictor.predict_frame(r), m.predictor.classes
                    ),
                )
            )
        return Scored(request_id, variant, loaded, frame, outputs, ms)

    @app.exception_handler(InputError)
    async def bad_input(_request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ping", include_in_schema=False)  # what MLflow's scoring server answers
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        await started()
        champion = service.champion
        body = {
            "ready": champion is not None,
            "champion": champion.as_dict() if champion else None,
            "error": service.last_error,
        }
        return JSONResponse(body, status_code=200 if champion is not None else 503)

    @app.post("/predict")
    async def predict(
        body: PredictRequest,
        request: Request,
        user: User = Depends(caller),  # noqa: B008
    ) -> JSONResponse:
        payload = body.model_dump(include=body.model_fields_set - {"key"})
        done = await answer(
            predict_rows(payload), body.key, getattr(request.state, "request_id", None)
        )
        return JSONResponse(
            {
                "request_id": done.request_id,
                "model_name": done.loaded.name,
                "model_version": done.loaded.version,
                "variant": done.variant,
                "predictions": done.outputs,
            },
            headers=done.headers(),
        )

    @app.post("/invocations")
    async def invocations(request: Request, user: User = Depends(caller)) -> JSONResponse:  # noqa: B008
        content_type = request.headers.get("content-type", "application/json")
        raw = await request.body()
        if content_type.startswith("text/csv"):
            rows: Rows = csv_rows(raw)
        elif content_type.startswith("application/json"):
            try:
                payload = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InputError(f"the body is not valid JSON: {exc}") from None
            await started()
            champion = service.champion
            rows = mlflow_rows(payload, champion.predictor.columns if champion else ())
        else:
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                "send application/json (MLflow's dataframe_split, dataframe_records, "
                "instances or inputs) or text/csv",
            )
        done = await answer(
            rows, request.headers.get("x-variant-key"), getattr(request.state, "request_id", None)
        )
        return JSONResponse(
            {"predictions": done.frame.to_dict(orient="records")}, headers=done.headers()
        )

    def models_body() -> dict[str, Any]:
        return {
            "model_name": model_name_of(ctx),
            "champion": service.champion.as_dict() if service.champion else None,
            "challenger": service.challenger.as_dict() if service.challenger else None,
            "serving": serving.model_dump(),
            "poll_seconds": poll_seconds,
            "last_refresh": service.last_refresh.isoformat() if service.last_refresh else None,
            "error": service.last_error,
            "log": recorder.stats(),
        }

    @app.get("/models")
    async def models(user: User = Depends(caller)) -> dict[str, Any]:  # noqa: B008
        await started()
        return models_body()

    @app.get("/metrics", include_in_schema=False)
    async def metrics(user: User = Depends(caller)) -> Response:  # noqa: B008
        """Prometheus metrics of this process: requests, latency, predictions by variant."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/reload")
    async def reload(user: User = Depends(caller)) -> dict[str, Any]:  # noqa: B008
        if not user.can("admin"):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"user {user.username!r} has role {user.role!r}; a reload needs 'admin'",
            )
        await started()
        changes = await run_in_threadpool(service.refresh)
        return {"changes": changes, **models_body()}

    limit = max_body_bytes or ctx.config.api.max_body_bytes
    app.add_middleware(BodyLimit, limit=limit)
    instrument(app, "predict")
    return app
