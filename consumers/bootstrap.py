"""The composition root of the consumer processes: settings in, running worker or projector.

Tests hand `run_worker` a different handler to run the real runtime around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx

from consumers.context import TaskContext
from consumers.decode import ReceivedTask
from consumers.handlers_registry import resolve_all
from consumers.projector import SWEEP_EVERY_S, Projector
from consumers.worker import Handler, Worker
from contracts.registry import TASK_TYPES, get_spec
from infra.broker import Broker, BrokerUnavailable
from infra.dead_letters import MongoDeadLetterArchive
from infra.idempotency import IdempotencyKeys
from infra.process import stop_on_signals
from infra.settings import Settings
from infra.store import StoreUnavailable, TaskStore, mongo_client
from infra.topology import build_topology

log = logging.getLogger("consumers")

_CONNECT_RETRY_S = 2.0


async def run_worker(
    settings: Settings, task_type: str, *, handler: Handler | None = None, role: str = ""
) -> None:
    """Run the tasks of `task_type` until SIGTERM; `handler` replaces the registered one."""
    spec = get_spec(task_type)
    handler = handler or resolve_all()[task_type]
    stop = stop_on_signals()
    name = f"{settings.worker_name}/{task_type}{role}"
    broker = Broker(settings.rabbitmq_url, build_topology(TASK_TYPES),
                    timeout_s=settings.publish_timeout_s, name=f"consumer {name}",
                    prefetch=spec.prefetch)
    async with httpx.AsyncClient(follow_redirects=False) as http:

        def make_context(task: ReceivedTask) -> TaskContext:
            return TaskContext(task_id=task.task_id, task_type=task_type, attempt=task.attempt,
                               run=task.run, settings=settings, http=http)

        worker = Worker(spec, handler, broker, worker_name=name, make_context=make_context,
                        shutdown_grace_s=settings.shutdown_grace_s)
        try:
            if await _connect(broker, stop):
                await worker.run(stop)
        finally:
            await broker.close()


async def run_projector(settings: Settings) -> None:
    stop = stop_on_signals()
    name = f"{settings.worker_name}/projector"
    # Twice a batch per queue: one batch is written while the next fills.
    broker = Broker(settings.rabbitmq_url, build_topology(TASK_TYPES),
                    timeout_s=settings.publish_timeout_s, name=f"projector {name}",
                    prefetch=2 * settings.projector_batch_size)
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    # A task's later events mostly arrive within a few batches of its first: remembering the
    # states of the last few batches' tasks spares most reads (about 5 KiB each).
    store = TaskStore(client, settings.mongodb_database,
                      remember=4 * settings.projector_batch_size)
    keys = IdempotencyKeys(client, settings.mongodb_database)
    try:
        await _ensure_indexes(store, keys, settings, stop)
        if await _connect(broker, stop):
            projector = Projector(broker, store, worker_name=name, expiring=(store, keys),
                                  dead_letters=MongoDeadLetterArchive(
                                      client, settings.mongodb_database),
                                  batch_size=settings.projector_batch_size,
                                  batch_window_s=settings.projector_batch_window_s)
            await projector.run(stop)
    finally:
        await broker.close()
        await client.close()


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
    store: TaskStore, keys: IdempotencyKeys, settings: Settings, stop: asyncio.Event
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
