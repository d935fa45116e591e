"""The composition root of a worker process: settings in, running worker.

Tests hand `run_worker` a different `TaskHandler` to run the real runtime around it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from typing import Any

from consumers.cancels import CancelWatch
from consumers.worker import Worker
from contracts.registry import get_spec, task_types
from infra.composition import mongo_adapters
from infra.observability.metrics import metrics_server
from infra.observability.task_middleware import metrics_port, task_middleware
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.queue_limits import ensure_queue_limits
from infra.rabbitmq.topology import build_topology
from infra.runtime.process import stop_on_signals
from infra.runtime.retrying import connect
from infra.runtime.settings.worker import WorkerSettings
from taskproc.handler import HandlerError, TaskHandler
from taskproc.registration import handler_for

log = logging.getLogger("consumers")


async def run_worker(
    settings: WorkerSettings, task_type: str, *, handler: TaskHandler[Any, Any, Any] | None = None,
    role: str = "", stop: asyncio.Event | None = None,
) -> None:
    """Run the tasks of `task_type` until SIGTERM (or `stop`, when given); `handler` replaces
    the registered one."""
    spec = get_spec(task_type)
    handler = handler or handler_for(task_type)
    if handler.spec != spec:
        raise HandlerError(f"{task_type}: given {handler!r}, bound to {handler.spec.name!r}")
    stop = stop or stop_on_signals()
    name = f"{settings.process_name}/{task_type}{role}"
    broker = Broker(settings.rabbitmq_url, build_topology(task_types()),
                    timeout_s=settings.publish_timeout_s, name=f"consumer {name}",
                    prefetch=spec.prefetch,
                    passive=not settings.rabbitmq_declare_topology)
    # The worker reads MongoDB (cancellations, which the gateway writes; who owns the id of a
    # task an outside publisher sent, consumers.ownership) and writes one thing: the end of a
    # workflow step, settled in the read model before its follow-ups go (consumers.settling).
    mongo = mongo_adapters(settings)
    cancels = CancelWatch(task_type, mongo.cancellations, lookback=settings.retention,
                          refresh_s=settings.cancel_refresh_s,
                          held=settings.cancellations_held)
    # Only this type's clients are opened: the webhook worker's HTTP pool, say, and no other.
    async with handler.started(settings) as run_task:
        worker = Worker(spec, run_task, broker, worker_name=name,
                        shutdown_grace_s=settings.shutdown_grace_s,
                        middleware=task_middleware(task_type),
                        limits=settings.limits_for(spec),
                        tenants=settings.tenant_rules, cancels=cancels,
                        owners=mongo.tasks, outcomes=mongo.tasks)
        port = metrics_port(settings, task_type)
        try:
            with metrics_server(settings.metrics_host, port, process=f"{task_type}-worker"):
                if await connect(broker, stop, logger=log):
                    await ensure_queue_limits(settings, task_types())
                    # Every cancellation known before the first task is taken.
                    async with cancels.watching(broker, _process_id(name), stop) as ready:
                        if ready:
                            await worker.run(stop)
        finally:
            await broker.close()
            await mongo.close()


def _process_id(worker_name: str) -> str:
    """This process in its control queue's name: readable in the console, unique per process."""
    return f"{worker_name.replace('/', '.')}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
