"""The FastAPI application: routes, error mapping, and the lifespan that builds its services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware

from contracts.registry import task_type_names
from gateway.deps import Services, connected_services
from gateway.error_responses import install_error_handlers
from gateway.metrics_route import metrics
from gateway.middleware.metrics import RequestMetrics
from gateway.middleware.submitted_type import SubmittedTaskType
from gateway.middleware.tracing import RequestTracing
from gateway.request_limits import BodySizeLimit, ConcurrencyLimit, limit_table
from gateway.routes import ROUTERS
from gateway.ui import ui
from infra.composition import connected_task_service
from infra.observability.logging import configure_logging
from infra.observability.task_middleware import service_name
from infra.observability.tracing import configure_tracing
from infra.runtime.process_settings import process_settings
from infra.runtime.settings.gateway import GatewaySettings


def create_app(settings: GatewaySettings, *, services: Services | None = None) -> FastAPI:
    """The gateway. Without `services`, its lifespan connects to RabbitMQ and MongoDB (never at
    import); with them (a test's in-memory ones), it uses those as they are and the caller
    opens and closes them."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            yield
            return
        async with connected_task_service(settings, max_examined=settings.listing_max_examined,
                                          key_cache_s=settings.api_key_cache_s) as connected:
            app.state.services = connected_services(connected)
            yield

    app = FastAPI(
        title="Task processor",
        summary="Queue background tasks over RabbitMQ and follow their status.",
        version="0.1.0",
        lifespan=lifespan,
        middleware=request_middleware(settings),
    )
    if services is not None:
        app.state.services = services
    app.state.task_limits = limit_table(settings)
    app.state.schedule_bounds = settings.schedule_bounds
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(ui)
    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    install_error_handlers(app)
    return app


def request_middleware(settings: GatewaySettings) -> list[Middleware]:
    """Every request passes these, outermost first, each one plain ASGI of one concern.

    Metrics are outermost, so they time the whole answer and count every refusal below them;
    the span (only with tracing on) comes next, so it covers refusals too; the submitted task
    type is kept before a limit can refuse the request; the limits refuse before any parsing.
    """
    tracing = configure_tracing(service_name("gateway"))
    return [
        Middleware(RequestMetrics),
        *([Middleware(RequestTracing, tracer=tracing.get_tracer("taskproc.gateway"))]
          if tracing is not None else []),
        Middleware(SubmittedTaskType, task_types=frozenset(task_type_names())),
        Middleware(ConcurrencyLimit, max_requests=settings.gateway_max_concurrency),
        Middleware(BodySizeLimit, max_bytes=settings.max_request_bytes),
    ]


def create_app_from_environment() -> FastAPI:
    """The factory each of several uvicorn worker processes calls: logging, settings, app."""
    settings = process_settings(GatewaySettings)
    configure_logging(settings, "gateway")
    return create_app(settings)
