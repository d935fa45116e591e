"""A webhook worker whose process dies on a trigger URL: the crash-poison fault.

`python -m tests.faults.crashing_worker` runs the real `consumers.worker.Worker` runtime for task
type `webhook`, built by the composition root `python -m consumers worker` uses. Its handler calls
`os._exit(3)` (no exception, no cleanup, no ack: as a segfault or an OOM kill would) for a
webhook whose URL path starts with /crash/, and delegates every other task to the real handler.
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx

from consumers.bootstrap import run_worker
from infra.observability.logging import configure_logging
from infra.runtime.settings.system import SystemSettings
from taskproc.context import JSON, TaskContext
from taskproc.handler import TaskHandler
from taskproc.tasks.webhook import WEBHOOK, call_webhook, http_client
from taskproc.tasks.webhook_payload import WebhookPayload

TASK_TYPE = WEBHOOK.name
CRASH_PATH = "/crash/"
CRASH_EXIT_CODE = 3


async def crash_or_call(payload: WebhookPayload, ctx: TaskContext[httpx.AsyncClient]) -> JSON:
    """The real webhook handler, except that a trigger payload ends the process on the spot."""
    if (payload.url.path or "").startswith(CRASH_PATH):
        os._exit(CRASH_EXIT_CODE)
    return await call_webhook(payload, ctx)


def main() -> int:
    settings = SystemSettings()
    configure_logging(settings, f"{TASK_TYPE}-crashing")
    handler = TaskHandler(WEBHOOK, crash_or_call, clients=http_client)
    asyncio.run(run_worker(settings, TASK_TYPE, handler=handler, role="-crashing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
