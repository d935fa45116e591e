"""The composition root of the consumer processes: settings in, running worker or projector.

Tests hand `run_worker` a different `TaskHandler` to run the real runtime around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from consumers.handlers import HANDLERS
from consumers.projector import SWEEP_EVERY_S, Projector
from consumers.task_handler import HandlerError, TaskHandler, check_handlers
from consumers.worker import Worker
from contracts.registry import TASK_TYPES, get_spec
from infra.broker import Broker, BrokerUnavailable
from infra.composition import mongo_adapters
from infra.idempotency import MongoIdempotencyKeys
from infra.metrics import metrics_server
from infra.observability import PROJECTOR, metrics_port, task_middleware
from infra.process import stop_on_signals
from infra.settings import Settings
from infra.store import TaskStore
from infra.topology import build_topology
from service.errors import StoreUnavailable

log = logging.getLogger("consumers")

_CONNECT_RETRY_S = 2.0


async def run_worker(
    settings: Settings, task_type: str, *, handler: TaskHandler[Any, Any] | None = None,
    role: str = "", stop: asyncio.Event | None = None,
) -> None:
    """Run the tasks of `task_type` until SIGTERM (or `stop`, when given); `handler` replaces
    the registered one."""
    spec = get_spec(task_type)
    # Every type is checked, not only this one: a wrong registry stops every worker at once.
    registered = check_handlers(TASK_TYPES, HANDLERS)[task_type]
    handler = handler or registered
    if handler.spec != spec:
        raise HandlerError(f"{task_type}: given {handler!r}, bound to {handler.spec.name!r}")
    stop = stop or stop_on_signals()
    name = f"{settings.worker_name}/{task_type}{role}"
    broker = Broker(settings.rabbitmq_url, build_topology(TASK_TYPES),
                    timeout_s=settings.publish_timeout_s, name=f"consumer {name}",
                    prefetch=spec.prefetch)
    # Only this type's clients are opened: the webhook worker's HTTP pool, say, and no other.
    async with handler.started(settings) as run_task:
        worker = Worker(spec, run_task, broker, worker_name=name,
                        shutdown_grace_s=settings.shutdown_grace_s,
                        middleware=task_middleware(task_type),
                        default_tenant=settings.default_tenant)
        port = metrics_port(settings, task_type)
        try:
            with metrics_server(settings.metrics_host, port, process=f"{task_type}-worker"):
                if await _connect(broker, stop):
                    await worker.run(stop)
        finally:
            await broker.close()


async def run_projector(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Project status events into MongoDB until SIGTERM (or `stop`, when given)."""
    stop = stop or stop_on_signals()
    name = f"{settings.worker_name}/projector"
    # Twice a batch per queue: one batch is written while the next fills.
    broker = Broker(settings.rabbitmq_url, build_topology(TASK_TYPES),
                    timeout_s=settings.publish_timeout_s, name=f"projector {name}",
                    prefetch=2 * settings.projector_batch_size)
    # A task's later events mostly arrive within a few batches of its first: remembering the
    # states of the last few batches' tasks spares most reads (about 5 KiB each).
    mongo = mongo_adapters(settings, remember=4 * settings.projector_batch_size)
    store, keys = mongo.tasks, mongo.keys
    port = metrics_port(settings, PROJECTOR)
    try:
        with metrics_server(settings.metrics_host, port, process=PROJECTOR):
            await _ensure_indexes(store, keys, settings, stop)
            if await _connect(broker, stop):
                projector = Projector(broker, store, worker_name=name, expiring=(store, keys),
                                      dead_letters=mongo.dead_letters,
                                      batch_size=settings.projector_batch_size,
                                      batch_window_s=settings.projector_batch_window_s,
                                      middleware=task_middleware(PROJECTOR),
                                      default_tenant=settings.default_tenant)
                await projector.run(stop)
    finally:
        await broker.close()
        await mongo.close()


async def _connect(broker: Broker, stop: asyncio.Event) -> bool:
    """Wait for RabbitMQ at start-up; False if asked to stop first."""
    while not stop.is_set():
        try:
            await broker.channel()
            return True
        except BrokerUnavailable as error:
            log.warning("%s; retrying in %.0fs", error, _CONNECT_RETRY_S)
            await _pause(stop, _CONNECT_RETRY_S)
    return False


async def _ensure_indexes(
    store: TaskStore, keys: MongoIdempotencyKeys, settings: Settings, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            kind = await store.ensure_indexes(settings.retention)
            await keys.ensure_indexes(settings.idempotency_ttl)
            expiry = ("TTL indexes" if kind == "mongod"
                      else f"a sweep every {SWEEP_EVERY_S:.0f}s (no TTL index)")
            log.info("MongoDB server is %s: finished tasks expire by %s", kind, expiry)
            return
        except StoreUnavailable as error:
            log.warning("%s; retrying in %.0fs", error, _CONNECT_RETRY_S)
            await _pause(stop, _CONNECT_RETRY_S)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
