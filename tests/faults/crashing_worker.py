"""A webhook worker whose process dies on a trigger URL: the crash-poison fault.

`python -m tests.faults.crashing_worker` runs the real `consumers.worker.Worker` runtime for task
type `webhook`, built as `consumers/__main__.py` builds it. Its handler calls `os._exit(3)` (no
exception, no cleanup, no ack: as a segfault or an OOM kill would) for a webhook whose URL path
starts with /crash/, and delegates every other task to the real handler.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx

from consumers.context import TaskContext
from consumers.decode import ReceivedTask
from consumers.handlers_registry import resolve_all
from consumers.worker import Handler, Worker
from contracts.payloads import WebhookPayload
from contracts.registry import TASK_TYPES, get_spec
from infra.broker import Broker
from infra.logging import configure_logging
from infra.process import stop_on_signals
from infra.settings import Settings
from infra.topology import build_topology

TASK_TYPE = "webhook"
CRASH_PATH = "/crash/"
CRASH_EXIT_CODE = 3


def crashing(handler: Handler) -> Handler:
    """`handler`, except that a trigger payload ends the process on the spot."""

    async def handle(payload: Any, ctx: TaskContext) -> Any:
        if isinstance(payload, WebhookPayload) and (payload.url.path or "").startswith(CRASH_PATH):
            os._exit(CRASH_EXIT_CODE)
        return await handler(payload, ctx)

    return handle


async def run(settings: Settings) -> None:
    spec = get_spec(TASK_TYPE)
    handler = crashing(resolve_all()[TASK_TYPE])
    stop = stop_on_signals()
    name = f"{settings.worker_name}/{TASK_TYPE}-crashing"
    broker = Broker(settings.rabbitmq_url, build_topology(TASK_TYPES),
                    timeout_s=settings.publish_timeout_s, name=f"consumer {name}",
                    prefetch=spec.prefetch)
    async with httpx.AsyncClient(follow_redirects=False) as http:

        def make_context(task: ReceivedTask) -> TaskContext:
            return TaskContext(task_id=task.task_id, task_type=TASK_TYPE, attempt=task.attempt,
                               run=task.run, settings=settings, http=http)

        worker = Worker(spec, handler, broker, worker_name=name, make_context=make_context,
                        shutdown_grace_s=settings.shutdown_grace_s)
        try:
            await broker.channel()
            await worker.run(stop)
        finally:
            await broker.close()


def main() -> int:
    settings = Settings()
    configure_logging(settings, f"{TASK_TYPE}-crashing")
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
