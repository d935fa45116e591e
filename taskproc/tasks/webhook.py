"""`webhook`: one HTTP request; 2xx succeeds, 5xx / 429 / timeouts retry, other 4xx fail.

The request goes only to a public address, or one the operator allowed (`egress`), and the
answer is read under one deadline and a byte cap (`webhook_call`). Messages name the URL by its
origin and a tag of its path (webhook_payload.redacted_url: a path, query or userinfo may hold a
secret), and never the payload's header values: they reach logs, events and the API.

Every process imports this module for the payload model; the HTTP client and what uses it are
imported inside the hook and the handler, so only the webhook worker loads them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from infra.runtime.settings.worker import WorkerSettings
from taskproc.context import TaskContext
from taskproc.registration import task_type
from taskproc.tasks.webhook_payload import WebhookPayload

if TYPE_CHECKING:
    import httpx


@asynccontextmanager
async def http_client(settings: WorkerSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The start-up hook: one connection pool to checked addresses for the process's calls."""
    from taskproc.tasks.webhook_call import egress_http_client

    async with egress_http_client(settings) as client:
        yield client


@task_type("webhook", timeout_s=15.0, clients=http_client)
async def call_webhook(
    payload: WebhookPayload, ctx: TaskContext[httpx.AsyncClient]
) -> dict[str, Any]:
    from taskproc.tasks.webhook_call import call

    return await call(payload, ctx)


WEBHOOK = call_webhook.spec
