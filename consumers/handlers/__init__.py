"""One module per task type, and HANDLERS: the one line per type that binds its spec to it.

A handler is `async def name(payload: ThePayload, ctx: TaskContext) -> JSON-able result`; mypy
checks that its payload type is its spec's. A type with clients of its own passes `clients=`, a
hook that opens them once per process (see `webhook.http_client`); the handler finds what it
yielded in `ctx.clients`.
"""

from __future__ import annotations

from typing import Any

from consumers.handlers.send_email import send_email
from consumers.handlers.sleep import sleep
from consumers.handlers.webhook import call_webhook, http_client
from consumers.task_handler import TaskHandler
from contracts.registry import SEND_EMAIL, SLEEP, WEBHOOK

HANDLERS: tuple[TaskHandler[Any, Any], ...] = (
    TaskHandler(SEND_EMAIL, send_email),
    TaskHandler(WEBHOOK, call_webhook, clients=http_client),
    TaskHandler(SLEEP, sleep),
)
