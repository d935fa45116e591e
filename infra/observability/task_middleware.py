"""Metrics, traces and task-scoped logs as one task middleware, and where each process serves
its metrics. The consumers' composition root and the local supervisor both use it, so the port
a process serves on and the port `taskproc run` prints are the same by construction."""

from __future__ import annotations

from contracts.registry import task_type_names
from infra.observability.logging import TaskLogContext
from infra.observability.metrics import MetricsMiddleware
from infra.observability.middleware import Middleware, Middlewares
from infra.observability.tracing import TracingMiddleware, configure_tracing
from infra.runtime.settings.common import MetricsSettings

PROJECTOR = "projector"


def metrics_port(settings: MetricsSettings, process: str) -> int:
    """The metrics port of `process` ("projector" or a task type's name); 0 when off."""
    if settings.metrics_port == 0:
        return 0
    if process == PROJECTOR:
        return settings.metrics_port
    return settings.metrics_port + 1 + task_type_names().index(process)


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
