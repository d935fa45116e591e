"""What the `webhook` type does in its worker: one HTTP request through the egress-checked client,
read under one deadline and a byte cap. Only the worker imports this module (taskproc/tasks/
webhook.py imports it inside its hook and handler), so httpx and the egress transport stay out
of the gateway."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from infra.runtime.settings.worker import WorkerSettings
from taskproc.context import TaskContext
from taskproc.failures import PermanentFailure, Retry
from taskproc.tasks.egress import describe
from taskproc.tasks.egress_transport import egress_client
from taskproc.tasks.response_body import read_limited
from taskproc.tasks.webhook_payload import WebhookPayload, redacted_url
from taskproc.tasks.webhook_signature import json_bytes, signature_headers

log = logging.getLogger("webhook")


@asynccontextmanager
async def egress_http_client(settings: WorkerSettings) -> AsyncIterator[httpx.AsyncClient]:
    """One connection pool for the process's calls, to checked addresses only; redirects not
    followed."""
    policy = settings.webhook_egress
    log.info("webhook destinations allowed: %s", describe(policy))
    async with egress_client(policy) as client:
        yield client


async def call(payload: WebhookPayload, ctx: TaskContext[httpx.AsyncClient]) -> dict[str, Any]:
    target = f"{payload.method} {redacted_url(payload.url)}"
    # Receivers deduplicate on the task id: a redelivered task sends the same id again.
    headers = {"X-Task-Id": ctx.task_id, "X-Task-Attempt": str(ctx.attempt), **payload.headers}
    # Serialised once: the bytes signed are the bytes sent (webhook_signature).
    content = json_bytes(payload.json_body)
    if content is not None and not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    headers |= signature_headers(ctx, content, time.time())
    settings = ctx.settings
    try:
        # One deadline for the whole exchange, connect to last byte: a slow drip cannot stretch it.
        async with asyncio.timeout(settings.webhook_timeout_s), ctx.clients.stream(
            payload.method, str(payload.url), headers=headers, content=content,
            timeout=settings.webhook_timeout_s,
        ) as response:
            body = await read_limited(response, settings.webhook_response_limit)
    except (TimeoutError, httpx.TimeoutException) as error:
        raise Retry(f"{target} timed out after {settings.webhook_timeout_s:g}s") from error
    except httpx.LocalProtocolError as error:
        # Its text may quote a header of the payload: the type only.
        raise PermanentFailure(f"{target}: request refused ({type(error).__name__})") from None
    except httpx.RequestError as error:  # connection, protocol and decoding errors
        raise Retry(f"{target}: {type(error).__name__}: {error}") from error
    text = _text(body, response.charset_encoding)
    summary = {"status_code": response.status_code, "body": text}
    if response.is_success:
        return summary
    message = f"{target} answered {response.status_code}"
    if response.status_code >= 500 or response.status_code in (408, 425, 429):
        raise Retry(message)
    raise PermanentFailure(message)



def _text(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")

