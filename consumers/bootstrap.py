"""The composition root of a worker process: settings in, running worker.

A process runs the tasks of one type, or of several (`taskproc worker --types a,b`): one queue
consumer per type, each on a RabbitMQ connection of its own (the broker's prefetch and its
publishing channel are one per connection), with its own prefetch, handler clients and
cancellations. The process has one metrics port and one MongoDB client.

Tests hand `run_worker` a different `TaskHandler` to run the real runtime around it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from consumers.cancels import CancelWatch
from consumers.worker import Worker
from contracts.registry import get_spec, task_types
from infra.composition import MongoAdapters, mongo_adapters
from infra.observability.metrics import metrics_server
from infra.observability.task_middleware import task_middleware
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.queue_limits import ensure_queue_limits
from infra.rabbitmq.topology import build_topology
from infra.runtime.process import stop_on_signals
from infra.runtime.retrying import connect
from infra.runtime.settings.worker import WorkerSettings
from taskproc.handler import HandlerError, TaskHandler
from taskproc.registration import handler_for

log = logging.getLogger("consumers")

AnyHandler = TaskHandler[Any, Any, Any]


def worker_process(types: Sequence[str]) -> str:
    """The name a worker process logs and serves metrics under: `sleep-worker`,
    `send_email,sleep-worker`."""
    return f"{','.join(types)}-worker"


async def run_worker(
    settings: WorkerSettings, task_type: str | Sequence[str], *,
    handler: AnyHandler | None = None, role: str = "", stop: asyncio.Event | None = None,
) -> None:
    """Run the tasks of `task_type` (one name, or several) until SIGTERM (or `stop`, when
    given); `handler` replaces the registered one of its own type."""
    types = (task_type,) if isinstance(task_type, str) else tuple(task_type)
    handlers = _handlers(types, handler)
    stop = stop or stop_on_signals()
    # The worker reads MongoDB (cancellations, which the gateway writes; who owns the id of a
    # task an outside publisher sent, consumers.ownership) and writes one thing: the end of a
    # workflow step, settled in the read model before its follow-ups go (consumers.settling).
    mongo = mongo_adapters(settings)
    try:
        async with AsyncExitStack() as stack:
            # Only these types' clients are opened: the webhook worker's HTTP pool, say, and no
            # other; each is closed when the process stops.
            runs = [await stack.enter_async_context(
                        _consumer(settings, handlers[name], mongo, role, stop))
                    for name in types]
            with metrics_server(settings.metrics_host, settings.metrics_port,
                                process=worker_process(types)):
                await _all_until_one_fails(runs, stop)
    finally:
        await mongo.close()


def _handlers(types: Sequence[str], given: AnyHandler | None) -> dict[str, AnyHandler]:
    if not types or len(set(types)) != len(types):
        raise HandlerError(f"task types {', '.join(types) or '(none)'}: name each once")
    handlers = {name: handler_for(name) for name in types}
    if given is not None:
        if given.spec.name not in handlers or given.spec != get_spec(given.spec.name):
            raise HandlerError(f"{', '.join(types)}: given {given!r}, bound to "
                               f"{given.spec.name!r}")
        handlers[given.spec.name] = given
    return handlers


@asynccontextmanager
async def _consumer(
    settings: WorkerSettings, handler: AnyHandler, mongo: MongoAdapters, role: str,
    stop: asyncio.Event,
) -> AsyncIterator[Callable[[], Coroutine[Any, Any, None]]]:
    """One type's consumer, with its handler's clients open: yields its run."""
    spec = handler.spec
    name = f"{settings.process_name}/{spec.name}{role}"
    broker = Broker(settings.rabbitmq_url, build_topology(task_types()),
                    timeout_s=settings.publish_timeout_s, name=f"consumer {name}",
                    prefetch=spec.prefetch,
                    passive=not settings.rabbitmq_declare_topology)
    cancels = CancelWatch(spec.name, mongo.cancellations, lookback=settings.retention,
                          refresh_s=settings.cancel_refresh_s,
                          held=settings.cancellations_held)
    async with handler.started(settings) as run_task:
        worker = Worker(spec, run_task, broker, process_name=name,
                        shutdown_grace_s=settings.shutdown_grace_s,
                        middleware=task_middleware(spec.name),
                        limits=settings.limits_for(spec),
                        tenants=settings.tenant_rules, cancels=cancels,
                        owners=mongo.tasks, outcomes=mongo.tasks,
                        running_event_after_ms=settings.running_event_after_ms)

        async def run() -> None:
            try:
                if await connect(broker, stop, logger=log):
                    await ensure_queue_limits(settings, task_types())
                    # Every cancellation known before the first task is taken.
                    async with cancels.watching(broker, _process_id(name), stop) as ready:
                        if ready:
                            await worker.run(stop)
            finally:
                await broker.close()

        yield run


async def _all_until_one_fails(
    runs: Sequence[Callable[[], Coroutine[Any, Any, None]]], stop: asyncio.Event
) -> None:
    """Run every consumer until `stop`. If one fails, the others are stopped (they drain, as on
    SIGTERM) and its error is raised: the process exits, and its supervisor restarts it."""
    tasks = [asyncio.create_task(run()) for run in runs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        # On a failure, or a cancellation of this process: the others drain too.
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if (error := task.exception()) is not None:
            raise error


def _process_id(process_name: str) -> str:
    """This process in its control queue's name: readable in the console, unique per process."""
    return f"{process_name.replace('/', '.')}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
