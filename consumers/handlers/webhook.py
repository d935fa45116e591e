"""`webhook`: one HTTP request; 2xx succeeds, 5xx / 429 / timeouts retry, other 4xx fail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from consumers.context import TaskContext
from consumers.failures import PermanentFailure, Retry
from contracts.payloads import WebhookPayload
from infra.settings import Settings


@asynccontextmanager
async def http_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The start-up hook: one connection pool for the process's calls; redirects not followed."""
    async with httpx.AsyncClient(follow_redirects=False) as client:
        yield client


async def call_webhook(
    payload: WebhookPayload, ctx: TaskContext[httpx.AsyncClient]
) -> dict[str, Any]:
    # Receivers deduplicate on the task id: a redelivered task sends the same id again.
    headers = {"X-Task-Id": ctx.task_id, "X-Task-Attempt": str(ctx.attempt), **payload.headers}
    try:
        response = await ctx.clients.request(
            payload.method,
            str(payload.url),
            headers=headers,
            json=payload.json_body,
            timeout=ctx.settings.webhook_timeout_s,
        )
    except httpx.TimeoutException as error:
        raise Retry(f"{payload.method} {payload.url} timed out") from error
    except httpx.TransportError as error:
        raise Retry(f"{payload.method} {payload.url}: {error!r}") from error
    limit = ctx.settings.webhook_response_limit
    summary = {"status_code": response.status_code, "body": response.text[:limit]}
    if response.is_success:
        return summary
    message = f"{payload.method} {payload.url} answered {response.status_code}"
    if response.status_code >= 500 or response.status_code in (408, 425, 429):
        raise Retry(message)
    raise PermanentFailure(message)
