"""The gateway's metrics and request spans: `/metrics`, and one ASGI middleware around every
HTTP request that counts and times it and, when tracing is on, makes it a server span.

The span's context replaces the request's `traceparent` header before the routes read it, so
the task message carries the gateway's span and the worker's span becomes its child; a caller's
own `traceparent` is the server span's parent. With tracing off the header passes untouched.
"""

from __future__ import annotations

import json
import os
import time
from contextvars import Token
from typing import Any

from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.registry import task_type_names
from infra.observability.metrics import HTTP_DURATION, HTTP_REQUESTS, SUBMISSIONS
from infra.observability.task_middleware import service_name
from infra.observability.tracing import (
    TRACEPARENT,
    configure_tracing,
    current_traceparent,
    parent_context,
)

_SUBMIT_ROUTE = "/tasks"
# Where `POST /tasks` notes the task type it validated (request.state), for the submissions metric.
SUBMITTED_TASK_TYPE = "submitted_task_type"
_UNMATCHED = "unmatched"
_TRACE_HEADERS = frozenset({TRACEPARENT.encode(), b"tracestate"})


def install_observability(app: FastAPI) -> None:
    """Serve `/metrics` and wrap every request in the metrics and tracing middleware."""
    app.add_route("/metrics", _metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(RequestObservability, provider=configure_tracing(service_name("gateway")),
                       task_types=frozenset(task_type_names()))


async def _metrics(request: Request) -> Response:
    # With several uvicorn processes each has its own counters: PROMETHEUS_MULTIPROC_DIR makes
    # them share files, and any process can then answer for all of them.
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class RequestObservability:
    """Counts, times and (when tracing is on) traces each HTTP request."""

    def __init__(
        self, app: ASGIApp, *, provider: TracerProvider | None, task_types: frozenset[str]
    ) -> None:
        self._app = app
        self._tracer: Tracer | None = (provider.get_tracer("taskproc.gateway")
                                       if provider is not None else None)
        self._task_types = task_types
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._submissions: dict[tuple[str, int], Counter] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        submission = method == "POST" and scope["path"] == _SUBMIT_ROUTE
        body: list[bytes] = []
        answer = {"code": 500}

        async def receive_and_keep() -> Message:
            message = await receive()
            if submission and message["type"] == "http.request":
                body.append(message.get("body", b""))
            return message

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["code"] = message["status"]
            await send(message)

        span: trace.Span | None = None
        attached: Token[otel_context.Context] | None = None
        if self._tracer is not None:
            scope = dict(scope)
            span = self._start_span(scope)
            attached = otel_context.attach(trace.set_span_in_context(span))
            scope["headers"] = [*(h for h in scope["headers"] if h[0] not in _TRACE_HEADERS),
                                (TRACEPARENT.encode(), (current_traceparent() or "").encode())]
        try:
            await self._app(scope, receive_and_keep if submission else receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or _UNMATCHED
            code = answer["code"]
            self._count(method, route, code, time.perf_counter() - started)
            if submission:
                # The route notes the type of a request it took; only a refused one (422) has
                # its kept body read again here.
                noted = scope.get("state", {}).get(SUBMITTED_TASK_TYPE)
                self._count_submission(noted or self._task_type_of(body), code)
            if span is not None and attached is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
                otel_context.detach(attached)

    def _count(self, method: str, route: str, code: int, seconds: float) -> None:
        # Label children are kept: looking one up costs more than the increment.
        key = (method, route, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                HTTP_REQUESTS.labels(method=method, route=route, code=str(code)),
                HTTP_DURATION.labels(method=method, route=route))
        requests, duration = children
        requests.inc()
        duration.observe(seconds)

    def _count_submission(self, task_type: str, code: int) -> None:
        counter = self._submissions.get((task_type, code))
        if counter is None:
            counter = self._submissions[(task_type, code)] = SUBMISSIONS.labels(
                task_type=task_type, code=str(code))
        counter.inc()

    def _start_span(self, scope: dict[str, Any]) -> trace.Span:
        assert self._tracer is not None
        incoming = next((value.decode("latin-1") for name, value in scope["headers"]
                         if name == TRACEPARENT.encode()), None)
        return self._tracer.start_span(
            f"{scope['method']} {scope['path']}", context=parent_context(incoming),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
        )

    def _task_type_of(self, body: list[bytes]) -> str:
        """The request's task type if it names a known one: a label never holds caller text."""
        try:
            task_type = json.loads(b"".join(body)).get("task_type")
        except (ValueError, AttributeError):
            return "invalid"
        # Checked as a string first: an object or a list as task_type is unhashable.
        known = isinstance(task_type, str) and task_type in self._task_types
        return task_type if known else "invalid"
