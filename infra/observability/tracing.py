"""OpenTelemetry traces: one trace per task, from the HTTP request to the read model.

The W3C `traceparent` travels in the task message's header of the same name (the gateway puts
its request span's context there), the worker continues it in a span per attempt and puts that
span's context on every status event it publishes, and the projector continues each event's in
a span per event written. Export is configured by the standard `OTEL_*` variables and is off
unless `OTEL_TRACES_EXPORTER` names an exporter: with none, no span is made at all and only the
incoming `traceparent` is carried on to the status events.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts import names
from contracts.log_fields import trace_id_in
from contracts.messages import StatusEvent
from contracts.statuses import Status as TaskStatus
from infra.observability.middleware import Attempt, Middleware, Outcome, ProjectedEvent

log = logging.getLogger(__name__)

TRACEPARENT = names.HEADER_TRACEPARENT
_INSTRUMENTATION = "taskproc"
_W3C = TraceContextTextMapPropagator()
# version-trace id-parent id-flags, lower-case hex only (W3C trace context, level 1).
_TRACEPARENT_FORM = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_FAILED = frozenset({TaskStatus.FAILED, TaskStatus.DEAD, TaskStatus.REJECTED})


class TracingConfigError(Exception):
    """The OTEL_* variables ask for an exporter this installation cannot make."""


def configure_tracing(service_name: str) -> TracerProvider | None:
    """The process's tracer provider: the one already installed, or one made from `OTEL_*`.

    Returns None (tracing off) unless a provider is installed or `OTEL_TRACES_EXPORTER` names
    `otlp` or `console`; `OTEL_SDK_DISABLED=true` turns it off whatever else is set.
    `OTEL_SERVICE_NAME` overrides `service_name`.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    installed = trace.get_tracer_provider()
    if isinstance(installed, TracerProvider):
        return installed
    exporters = _exporters_from_environment()
    if not exporters:
        return None
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: exporting spans of %s with %s",
             provider.resource.attributes.get(SERVICE_NAME, service_name),
             ", ".join(type(exporter).__name__ for exporter in exporters))
    return provider


def _exporters_from_environment() -> list[SpanExporter]:
    names_ = [name.strip().lower()
              for name in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    exporters: list[SpanExporter] = []
    for name in names_:
        if name in ("", "none"):
            continue
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            exporters.append(_otlp_exporter())
        else:
            raise TracingConfigError(f"OTEL_TRACES_EXPORTER={name!r}: use otlp, console or none")
    return exporters


def _otlp_exporter() -> SpanExporter:
    """OTLP over HTTP/protobuf, from the `otlp` extra (default port 4318)."""
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
    if protocol != "http/protobuf":
        raise TracingConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: only "
                                 "http/protobuf is supported (a collector's port 4318)")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as error:
        raise TracingConfigError(
            "OTEL_TRACES_EXPORTER=otlp needs the otlp extra: pip install 'taskproc[otlp]'"
        ) from error
    # It reads OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT and their _TRACES_ forms itself.
    return OTLPSpanExporter()


def valid_traceparent(value: str | None) -> str | None:
    """`value` if it has the W3C `traceparent` form, else None: it is copied into log lines and
    onto events, so a line break or anything but hex in it could forge a line."""
    return value if value is not None and _TRACEPARENT_FORM.fullmatch(value) else None


def traceparent_of(headers: Mapping[str, Any]) -> str | None:
    """The `traceparent` header's value if it is a valid one (AMQP headers may hold anything,
    and W3C trace context says to ignore a malformed one)."""
    value = headers.get(TRACEPARENT)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return valid_traceparent(value) if isinstance(value, str) else None


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), or None."""
    valid = valid_traceparent(traceparent)
    return trace_id_in(valid) if valid is not None else None


def current_traceparent() -> str | None:
    """The current span's context as a `traceparent`, or None outside a recording span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get(TRACEPARENT)


def parent_context(traceparent: str | None) -> otel_context.Context:
    """A context whose parent span is the one `traceparent` names (empty if None/invalid)."""
    if traceparent is None:
        return otel_context.Context()
    return _W3C.extract({TRACEPARENT: traceparent})


# An attempt's span (None with tracing off), and the tokens that undo what it set.
_OpenAttempt = tuple[Span | None, Token[str | None], Token[otel_context.Context] | None]

# The `traceparent` to put on status events published during the current attempt.
_event_traceparent: ContextVar[str | None] = ContextVar("taskproc_event_traceparent",
                                                        default=None)


class TracingMiddleware(Middleware):
    """A consumer span per attempt and per projected event, parented on the message's context.

    With `provider` None (tracing off) it only carries the task's incoming `traceparent` on to
    its status events, so a trace started upstream stays whole for whoever records it.
    """

    def __init__(self, provider: TracerProvider | None) -> None:
        self._tracer: Tracer | None = (provider.get_tracer(_INSTRUMENTATION)
                                       if provider is not None else None)
        self._attempts: dict[int, _OpenAttempt] = {}
        self._writes: dict[int, list[Span]] = {}

    @property
    def recording(self) -> bool:
        return self._tracer is not None

    def before_attempt(self, attempt: Attempt) -> None:
        incoming = traceparent_of(attempt.headers)
        if self._tracer is None:
            self._attempts[id(attempt)] = (None, _event_traceparent.set(incoming), None)
            return
        span = self._tracer.start_span(
            f"process {names.task_queue(attempt.task_type)}",
            context=parent_context(incoming), kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.destination.name": names.task_queue(attempt.task_type),
                "messaging.message.id": attempt.task_id,
                "taskproc.task_id": attempt.task_id,
                "taskproc.task_type": attempt.task_type,
                "taskproc.attempt": attempt.attempt,
                "taskproc.run": attempt.run,
            },
        )
        attached = otel_context.attach(trace.set_span_in_context(span))
        token = _event_traceparent.set(current_traceparent())
        self._attempts[id(attempt)] = (span, token, attached)

    def after_attempt(self, attempt: Attempt, outcome: Outcome) -> None:
        opened = self._attempts.pop(id(attempt), None)
        if opened is None:
            return
        span, token, attached = opened
        _event_traceparent.reset(token)
        if span is None or attached is None:
            return
        status = outcome.status.value if outcome.status is not None else "interrupted"
        span.set_attribute("taskproc.status", status)
        if outcome.error is not None:
            span.set_attribute("error.type", outcome.error.type)
        if outcome.status is None or outcome.status in _FAILED:
            message = outcome.error.message if outcome.error else "ended without an outcome"
            span.set_status(Status(StatusCode.ERROR, message))
        span.end()
        otel_context.detach(attached)

    def event_headers(self, event: StatusEvent) -> dict[str, Any]:
        traceparent = _event_traceparent.get()
        return {TRACEPARENT: traceparent} if traceparent is not None else {}

    def before_write(self, events: Sequence[ProjectedEvent]) -> None:
        if self._tracer is None:
            return
        self._writes[id(events)] = [
            self._tracer.start_span(
                f"project {projected.event.task_type}.{projected.event.status.value}",
                context=parent_context(traceparent_of(projected.headers)),
                kind=SpanKind.CONSUMER,
                attributes={
                    "taskproc.task_id": projected.event.task_id,
                    "taskproc.task_type": projected.event.task_type,
                    "taskproc.status": projected.event.status.value,
                    "taskproc.attempt": projected.event.attempt,
                    "taskproc.batch_events": len(events),
                },
            )
            for projected in events
        ]

    def after_write(self, events: Sequence[ProjectedEvent], error: BaseException | None) -> None:
        for span in self._writes.pop(id(events), ()):
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, f"not written: {error}"))
            span.end()
