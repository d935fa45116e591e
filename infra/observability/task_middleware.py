"""Metrics, traces and task-scoped logs as one task middleware for the workers and the projector.

Where a process serves its metrics is its own METRICS_PORT, nothing derived: `taskproc run`
hands each of its processes a port of its own, a container network gives every replica the
same one, and Prometheus finds them by name."""

from __future__ import annotations

from infra.observability.logging import TaskLogContext
from infra.observability.metrics import MetricsMiddleware
from infra.observability.middleware import Middleware, Middlewares
from infra.observability.tracing import TracingMiddleware, configure_tracing

PROJECTOR = "projector"


def service_name(process: str) -> str:
    """The OpenTelemetry service name of a process (OTEL_SERVICE_NAME overrides it)."""
    if process in ("gateway", PROJECTOR):
        return f"taskproc-{process}"
    return f"taskproc-worker-{process}"


def task_middleware(process: str) -> Middleware:
    """Tracing first (its span is current for the others), then log fields, then metrics."""
    return Middlewares([
        TracingMiddleware(configure_tracing(service_name(process))),
        TaskLogContext(),
        MetricsMiddleware(),
    ])
