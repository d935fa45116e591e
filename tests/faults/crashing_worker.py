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
from typing import Any

from consumers.bootstrap import run_worker
from consumers.context import TaskContext
from consumers.handlers_registry import resolve_all
from consumers.worker import Handler
from contracts.payloads import WebhookPayload
from infra.logging import configure_logging
from infra.settings import Settings

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


def main() -> int:
    settings = Settings()
    configure_logging(settings, f"{TASK_TYPE}-crashing")
    handler = crashing(resolve_all()[TASK_TYPE])
    asyncio.run(run_worker(settings, TASK_TYPE, handler=handler, role="-crashing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
