"""The one place that maps errors to HTTP answers. No answer ever carries a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from infra.rabbitmq.broker import PublishError
from service.errors import (
    AlreadyFinished,
    Forbidden,
    IdempotencyConflict,
    IdempotencyInProgress,
    InvalidCursor,
    NotRetryable,
    PublishFailed,
    QueueFull,
    RateLimited,
    StoreUnavailable,
    TaskNotFound,
    Unauthenticated,
)
from service.schedules import TooManySchedules

log = logging.getLogger(__name__)

RETRY_AFTER_S = "5"


def _validation_errors(errors: Any) -> list[dict[str, Any]]:
    # Only where and what: pydantic's `input` and `ctx` would echo the body, secrets included.
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors]


async def _on_validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return JSONResponse(status_code=422,
                        content=jsonable_encoder({"detail": _validation_errors(error.errors())}))


async def _on_not_found(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=404, content={"detail": str(error)})


async def _on_key_conflict(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": [{
        "loc": ["header", "Idempotency-Key"], "type": "idempotency_key_reused",
        "msg": "this Idempotency-Key was used with a different request"}]})


async def _on_key_in_progress(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, headers={"Retry-After": "1"}, content={
        "detail": "a request with this Idempotency-Key is still being queued; retry shortly"})


async def _on_not_retryable(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(error)})


async def _on_already_finished(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(error)})


async def _on_too_many_schedules(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=409, content={"detail": str(error)})


async def _on_broker(request: Request, error: Exception) -> JSONResponse:
    log.warning("%s %s: 503, %s", request.method, request.url.path, error)
    return JSONResponse(status_code=503, headers={"Retry-After": RETRY_AFTER_S},
                        content={"detail": "message broker unavailable; nothing was queued"})


async def _on_queue_full(request: Request, error: Exception) -> JSONResponse:
    log.warning("%s %s: 503, %s", request.method, request.url.path, error)
    return JSONResponse(status_code=503, headers={"Retry-After": RETRY_AFTER_S},
                        content={"detail": "the task queue is full; nothing was queued"})


async def _on_store(request: Request, error: Exception) -> JSONResponse:
    log.warning("%s %s: 503, %s", request.method, request.url.path, error)
    return JSONResponse(status_code=503, headers={"Retry-After": RETRY_AFTER_S},
                        content={"detail": "status store unavailable"})


async def _on_unauthenticated(request: Request, error: Exception) -> JSONResponse:
    # RFC 6750: no credentials get a bare challenge; bad ones say the token is invalid.
    challenge = ('Bearer error="invalid_token"' if request.headers.get("authorization")
                 else "Bearer")
    return JSONResponse(status_code=401, headers={"WWW-Authenticate": challenge},
                        content={"detail": "a valid API key is required: "
                                           "Authorization: Bearer <key>"})


async def _on_forbidden(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, Forbidden)
    return JSONResponse(status_code=403, headers={
        "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{error.scope}"'},
        content={"detail": f"this API key lacks the scope {error.scope}"})


async def _on_rate_limited(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RateLimited)
    return JSONResponse(status_code=429, headers={"Retry-After": str(error.retry_after_s)},
                        content={"detail": "this API key is over its rate limit"})


async def _on_invalid_cursor(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": [{
        "loc": ["query", "cursor"], "type": "invalid_cursor", "msg": str(error)}]})


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return JSONResponse(status_code=500, content={"detail": "internal error"})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(Unauthenticated, _on_unauthenticated)
    app.add_exception_handler(Forbidden, _on_forbidden)
    app.add_exception_handler(RateLimited, _on_rate_limited)
    app.add_exception_handler(TaskNotFound, _on_not_found)
    app.add_exception_handler(IdempotencyConflict, _on_key_conflict)
    app.add_exception_handler(IdempotencyInProgress, _on_key_in_progress)
    app.add_exception_handler(NotRetryable, _on_not_retryable)
    app.add_exception_handler(AlreadyFinished, _on_already_finished)
    app.add_exception_handler(TooManySchedules, _on_too_many_schedules)
    app.add_exception_handler(QueueFull, _on_queue_full)
    app.add_exception_handler(PublishFailed, _on_broker)
    # `retry` still reaches the broker itself, not through the service layer's port.
    app.add_exception_handler(PublishError, _on_broker)
    app.add_exception_handler(StoreUnavailable, _on_store)
    app.add_exception_handler(InvalidCursor, _on_invalid_cursor)
    app.add_exception_handler(Exception, _on_unexpected)
