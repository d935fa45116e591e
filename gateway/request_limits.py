"""The gateway's bounds: request body size, requests in progress, and the caps per task type.

Both middlewares are plain ASGI, so a refused request costs no parsing: a body over
MAX_REQUEST_BYTES answers 413 (by its Content-Length, or counted as a chunked body streams in,
never holding more than the limit), and past GATEWAY_MAX_CONCURRENCY requests in progress a
new one answers 503 with Retry-After instead of waiting in an unbounded queue.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.limits import TaskLimits, over_limits
from contracts.registry import task_types
from infra.runtime.settings.tasks import TaskLimitSettings

# Liveness and readiness probes are answered even when the gateway is saturated: a saturated
# gateway is alive, and restarting it would only lose the work in progress.
_ALWAYS_ANSWERED = frozenset({"/health", "/health/ready"})
BUSY_RETRY_AFTER_S = "1"


class BodySizeLimit:
    """Answer 413 to a request body over `max_bytes`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _answer(send, 413, {"detail": self._detail()})
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised into the route's body parsing, which passes HTTPException on: the
                    # request ends as a 413 with at most one chunk past the limit held.
                    # `Connection: close`: the server stops reading the rest of the body.
                    raise HTTPException(status_code=413, detail=self._detail(),
                                        headers={"Connection": "close"})
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"request body over {self.max_bytes} bytes (MAX_REQUEST_BYTES)"


class ConcurrencyLimit:
    """Answer 503 with Retry-After once `max_requests` requests are in progress."""

    def __init__(self, app: ASGIApp, *, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _ALWAYS_ANSWERED:
            await self.app(scope, receive, send)
            return
        if self.in_progress >= self.max_requests:
            await _answer(send, 503, {"detail": "the gateway is at its concurrency limit; "
                                                "retry shortly"},
                          headers=((b"retry-after", BUSY_RETRY_AFTER_S.encode()),))
            return
        # One event loop per process: the counter needs no lock.
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _answer(
    send: Send, status: int, body: dict[str, str],
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    content = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
        (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": content})


LimitTable = Mapping[str, TaskLimits]


def limit_table(settings: TaskLimitSettings) -> dict[str, TaskLimits]:
    """Each task type's caps under these settings."""
    return {spec.name: settings.limits_for(spec) for spec in task_types()}


def limits_of(request: Request) -> LimitTable:
    limits: LimitTable = request.app.state.task_limits
    return limits


async def get_limits(request: Request) -> LimitTable:
    return limits_of(request)


LimitsDep = Annotated[LimitTable, Depends(get_limits)]


def check_limits(
    limits: LimitTable, task_type: str, *, timeout_s: float | None, max_attempts: int | None,
    not_before: datetime | None,
) -> None:
    """Raise a 422 naming every cap the submission is above."""
    found = over_limits(task_type, limits[task_type], timeout_s=timeout_s,
                        max_attempts=max_attempts, not_before=not_before, now=datetime.now(UTC))
    if found:
        raise RequestValidationError([
            {"loc": ("body", over.field), "msg": over.message, "type": "over_limit"}
            for over in found
        ])
