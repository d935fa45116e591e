"""A worker of one task type and a projector, running on the test's event loop against the
session's RabbitMQ vhost and MongoDB database (the in-process counterpart of the e2e processes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from consumers.worker import Worker
from contracts.registry import TaskSpec, task_types
from infra.mongodb.client import mongo_client
from infra.mongodb.dead_letter_archive import MongoDeadLetterArchive
from infra.mongodb.task_store import TaskStore
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.system import SystemSettings
from projector.runtime import Projector
from taskproc.registration import handler_for


@dataclass(frozen=True)
class Runtime:
    worker: asyncio.Task[None]
    projector: asyncio.Task[None]
    store: TaskStore

    def still_running(self) -> bool:
        return not self.worker.done() and not self.projector.done()


@asynccontextmanager
async def worker_and_projector(
    settings: SystemSettings, spec: TaskSpec, *, name: str
) -> AsyncIterator[Runtime]:
    """The registered handler of `spec` in a Worker, and a Projector, both stopped on exit."""
    handler = handler_for(spec.name)
    topology = build_topology(task_types())
    worker_broker = Broker(settings.rabbitmq_url, topology, timeout_s=settings.publish_timeout_s,
                           name=f"{name} {spec.name} worker", prefetch=spec.prefetch)
    projector_broker = Broker(settings.rabbitmq_url, topology,
                              timeout_s=settings.publish_timeout_s, name=f"{name} projector",
                              prefetch=64)
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    store = TaskStore(client, settings.mongodb_database)
    stop = asyncio.Event()
    async with handler.started(settings) as run_task:
        worker = Worker(spec, run_task, worker_broker, process_name=f"{name}/{spec.name}",
                        shutdown_grace_s=5, tenants=settings.tenant_rules, owners=store,
                        outcomes=store)
        projector = Projector(projector_broker, store, process_name=f"{name}/projector",
                              tenants=settings.tenant_rules,
                              dead_letters=MongoDeadLetterArchive(
                                  client, settings.mongodb_database),
                              batch_size=settings.projector_batch_size,
                              batch_window_s=settings.projector_batch_window_s)
        await worker_broker.channel()
        await projector_broker.channel()
        running = Runtime(asyncio.create_task(worker.run(stop)),
                          asyncio.create_task(projector.run(stop)), store)
        try:
            yield running
        finally:
            stop.set()
            await asyncio.gather(running.worker, running.projector, return_exceptions=True)
            await worker_broker.close()
            await projector_broker.close()
            await client.close()
