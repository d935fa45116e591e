"""The FastAPI application and its composition root."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from contracts.registry import TASK_TYPES
from gateway.deps import Services
from gateway.errors import install_error_handlers
from gateway.recording import QueuedRecorder
from gateway.routes import router
from infra.broker import Broker, BrokerUnavailable
from infra.dead_letters import MongoDeadLetterArchive
from infra.idempotency import IdempotencyKeys
from infra.logging import configure_logging
from infra.settings import Settings
from infra.store import StoreUnavailable, TaskStore, mongo_client
from infra.topology import build_topology

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The gateway. Clients are opened in the lifespan, never at import."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broker = Broker(settings.rabbitmq_url, build_topology(TASK_TYPES),
                        timeout_s=settings.publish_timeout_s, name="gateway")
        client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
        store = TaskStore(client, settings.mongodb_database)
        keys = IdempotencyKeys(client, settings.mongodb_database)
        recorder = QueuedRecorder(store)
        app.state.services = Services(
            settings=settings, broker=broker, store=store, keys=keys, recorder=recorder,
            dead_letters=MongoDeadLetterArchive(client, settings.mongodb_database))
        await _warm_up(app.state.services)
        recorder.start()
        try:
            yield
        finally:
            await recorder.close()
            await app.state.services.background.cancel_all()
            await broker.close()
            await client.close()

    app = FastAPI(
        title="Task processor",
        summary="Queue background tasks over RabbitMQ and follow their status.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(router)
    install_error_handlers(app)
    return app


def create_app_from_environment() -> FastAPI:
    """The factory each of several uvicorn worker processes calls: logging, settings, app."""
    settings = Settings()
    configure_logging(settings, "gateway")
    return create_app(settings)


async def _warm_up(services: Services) -> None:
    """Connect early so the first request is fast; a dependency that is down is not fatal."""
    try:
        await services.broker.channel()
    except BrokerUnavailable as error:
        log.warning("starting without RabbitMQ (requests answer 503 until it is back): %s", error)
    try:
        await services.store.ensure_indexes(services.settings.retention)
        await services.keys.ensure_indexes(services.settings.idempotency_ttl)
    except StoreUnavailable as error:
        log.warning("starting without MongoDB (status reads answer 503): %s", error)
