"""A server span per HTTP request, installed only when tracing is on.

The span's context replaces the request's `traceparent` (and drops its `tracestate`) before
the routes read it, so the task message carries the gateway's span and the worker's span
becomes its child; a caller's own `traceparent` is the server span's parent. The span is named
`<method> <route template>` once the request has been answered, and is an error from 500 up.
"""

from __future__ import annotations

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.middleware.response_status import NotedStatus
from gateway.middleware.route_template import route_template
from infra.observability.tracing import TRACEPARENT, current_traceparent, parent_context

_TRACEPARENT = TRACEPARENT.encode()
_TRACE_HEADERS = frozenset({_TRACEPARENT, b"tracestate"})


class RequestTracing:
    """Makes each HTTP request a server span and the current context while it is answered."""

    def __init__(self, app: ASGIApp, *, tracer: Tracer) -> None:
        self._app = app
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        method: str = scope["method"]
        headers = scope["headers"]
        incoming = next((value.decode("latin-1") for name, value in headers
                         if name == _TRACEPARENT), None)
        span = self._tracer.start_span(
            f"{method} {scope['path']}", context=parent_context(incoming), kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]})
        attached = otel_context.attach(trace.set_span_in_context(span))
        # Replaced in this scope, not a copy: the middleware outside reads the route template
        # that the router writes into it.
        scope["headers"] = [*(h for h in headers if h[0] not in _TRACE_HEADERS),
                            (_TRACEPARENT, (current_traceparent() or "").encode())]
        status = NotedStatus(send)
        try:
            await self._app(scope, receive, status.send)
        finally:
            route = route_template(scope)
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status.code)
            if status.code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            otel_context.detach(attached)
