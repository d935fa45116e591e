"""The composition root of the projector process: settings in, running projector."""

from __future__ import annotations

import asyncio
import logging

from tenacity import wait_fixed

from contracts.registry import task_types
from infra.composition import mongo_adapters
from infra.mongodb.idempotency_keys import MongoIdempotencyKeys
from infra.mongodb.task_store import TaskStore
from infra.observability.metrics import metrics_server
from infra.observability.task_middleware import PROJECTOR, task_middleware
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from infra.runtime.process import stop_on_signals
from infra.runtime.retrying import CONNECT_RETRY_S, Stopped, connect, log_retry, until_stopped
from infra.runtime.settings.projector import ProjectorSettings
from projector.expiry_sweep import SWEEP_EVERY_S
from projector.runtime import Projector
from service.errors import StoreUnavailable

log = logging.getLogger("projector")


async def run_projector(settings: ProjectorSettings, *, stop: asyncio.Event | None = None) -> None:
    """Project status events into MongoDB until SIGTERM (or `stop`, when given)."""
    stop = stop or stop_on_signals()
    name = f"{settings.process_name}/projector"
    # Twice a batch per queue: one batch is written while the next fills.
    broker = Broker(settings.rabbitmq_url, build_topology(task_types()),
                    timeout_s=settings.publish_timeout_s, name=f"projector {name}",
                    prefetch=2 * settings.projector_batch_size,
                    passive=not settings.rabbitmq_declare_topology)
    # A task's later events mostly arrive within a few batches of its first: remembering the
    # states of the last few batches' tasks spares most reads (about 5 KiB each).
    mongo = mongo_adapters(settings, remember=4 * settings.projector_batch_size)
    store, keys = mongo.tasks, mongo.keys
    try:
        with metrics_server(settings.metrics_host, settings.metrics_port, process=PROJECTOR):
            await _ensure_indexes(store, keys, settings, stop)
            if await connect(broker, stop, logger=log):
                projector = Projector(broker, store, process_name=name, expiring=(store, keys),
                                      dead_letters=mongo.dead_letters,
                                      batch_size=settings.projector_batch_size,
                                      batch_window_s=settings.projector_batch_window_s,
                                      middleware=task_middleware(PROJECTOR),
                                      tenants=settings.tenant_rules)
                await projector.run(stop)
    finally:
        await broker.close()
        await mongo.close()


async def _ensure_indexes(
    store: TaskStore, keys: MongoIdempotencyKeys, settings: ProjectorSettings, stop: asyncio.Event
) -> None:
    """Create the read model's indexes, waiting for MongoDB; return early if asked to stop."""
    if stop.is_set():
        return
    try:
        async for attempt in until_stopped(stop, retry_on=StoreUnavailable,
                                           wait=wait_fixed(CONNECT_RETRY_S),
                                           before_sleep=log_retry(log)):
            with attempt:
                kind = await store.ensure_indexes(settings.retention)
                await keys.ensure_indexes(settings.idempotency_ttl)
    except (StoreUnavailable, Stopped):
        return
    expiry = ("TTL indexes" if kind == "mongod"
              else f"a sweep every {SWEEP_EVERY_S:.0f}s (no TTL index)")
    log.info("MongoDB server is %s: finished tasks expire by %s", kind, expiry)
