"""HTTP routes that list and count the caller's tasks (scope `tasks:read`).

A router of its own, included before the task router: `/tasks/stats` must be matched before
`/tasks/{task_id}` would take "stats" for a task id. It needs a key as the task router does.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from contracts.messages import Labels
from contracts.statuses import Status
from gateway.auth import Reader, api_key
from gateway.deps import ServicesDep
from gateway.http_models import QueueView, StatsView, TaskCountView, TaskPageView, TaskView
from service.auth import REPLAY
from service.errors import PublishFailed
from service.listing import STATS_CAP, list_tasks, task_stats
from service.queries import TaskQuery

log = logging.getLogger(__name__)

MAX_LIMIT = 200

listing = APIRouter(
    dependencies=[Depends(api_key)],
    responses={401: {"description": "No API key, or an unknown or revoked one "
                                    "(with `WWW-Authenticate: Bearer`)"},
               403: {"description": "The API key lacks the scope `tasks:read`"},
               429: {"description": "The API key is over its rate limit (with `Retry-After`)"},
               503: {"description": "MongoDB unavailable"}},
)

_PAGE_EXAMPLE: dict[str, Any] = {
    "items": [{"task_id": "9b2f6c1e-3d4a-4f5b-8c7d-1e2f3a4b5c6d", "task_type": "webhook",
               "status": "failed", "attempt": 1, "run": 1, "source": "http",
               "created_at": "2026-11-30T08:00:00.120000Z",
               "updated_at": "2026-11-30T08:00:00.410000Z",
               "started_at": "2026-11-30T08:00:00.130000Z",
               "finished_at": "2026-11-30T08:00:00.410000Z", "next_attempt_at": None,
               "result": None, "progress": None,
               "error": {"type": "PermanentFailure",
                         "message": "POST https://hooks.example.com (path #b3d1db31) answered 404"},
               "history": [], "labels": ["nightly", "customer=42"]}],
    "next": "MTc2NDQ4OTYwMDEyMDAwMHw5YjJmNmMxZS0zZDRhLTRmNWItOGM3ZC0xZTJmM2E0YjVjNmQ",
}
_STATS_EXAMPLE: dict[str, Any] = {
    "counts": [{"task_type": "sleep", "status": "succeeded", "count": 1250, "at_least": True},
               {"task_type": "webhook", "status": "succeeded", "count": 750, "at_least": True},
               {"task_type": "webhook", "status": "failed", "count": 3, "at_least": False}],
    "cap": 2000,
    "capped": ["succeeded"],
    "counted_since": {"succeeded": "2026-11-30T08:00:00.120000Z"},
    "queues": [{"queue": "tasks.webhook", "messages": 12, "consumers": 2},
               {"queue": "tasks.webhook.dead", "messages": 3, "consumers": 0}],
}


@listing.get(
    "/tasks", response_model=TaskPageView,
    responses={200: {"content": {"application/json": {"example": _PAGE_EXAMPLE}}},
               422: {"description": "A filter out of range, or a cursor no listing gave"}},
)
async def list_my_tasks(
    services: ServicesDep,
    principal: Reader,
    status: Annotated[list[Status] | None, Query(
        description="Repeat for several: any of them matches.",
        openapi_examples={"failed or dead": {"value": ["failed", "dead"]}})] = None,
    task_type: Annotated[str | None, Query(max_length=64,
                                           openapi_examples={"webhook": {"value": "webhook"}})
                         ] = None,
    source: Literal["http", "amqp"] | None = None,
    idempotency_key: Annotated[str | None, Query(max_length=200)] = None,
    label: Annotated[Labels | None, Query(
        description="Repeat for several: the task must carry all of them.",
        openapi_examples={"nightly": {"value": ["nightly"]},
                          "customer 42, nightly": {"value": ["customer=42", "nightly"]}})
    ] = None,
    created_after: AwareDatetime | None = None,
    created_before: AwareDatetime | None = None,
    updated_after: AwareDatetime | None = None,
    updated_before: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    order: Literal["desc", "asc"] = "desc",
    cursor: Annotated[str | None, Query(max_length=400,
                                        description="`next` of the previous page.")] = None,
) -> TaskPageView:
    """The caller's tasks, newest first (by creation), filtered (scope `tasks:read`). Every
    filter given must match; time bounds are exclusive and need a time zone.

    Pages with `cursor` (the previous answer's `next`): a page starts strictly after the last
    task of the one before, so tasks submitted meanwhile never shift it. Another tenant's
    tasks are never listed. A request reads at most LISTING_MAX_EXAMINED tasks past what its
    indexes select: a page may then be short, even empty, with a `next` to go on from.
    """
    query = TaskQuery(owners=(), statuses=tuple(dict.fromkeys(status or ())),
                      task_type=task_type, source=source, idempotency_key=idempotency_key,
                      labels=tuple(label or ()), created_after=created_after,
                      created_before=created_before, updated_after=updated_after,
                      updated_before=updated_before, limit=limit, ascending=order == "asc")
    listed = await list_tasks(services.deps, query, tenant=principal.tenant, cursor=cursor)
    return TaskPageView(items=[TaskView.of(state) for state in listed.page.items],
                        next=listed.cursor)


@listing.get("/tasks/stats", response_model=StatsView,
             responses={200: {"content": {"application/json": {"example": _STATS_EXAMPLE}}}})
async def stats(services: ServicesDep, principal: Reader) -> StatsView:
    """The caller's tasks counted per type and status (scope `tasks:read`). Each status is
    counted over at most its newest `cap` (2,000) tasks: one with more is named in `capped`, its
    counts say `at_least`, and `counted_since` says from when they are exact.

    `queues`, the depths of every task, retry and dead-letter queue, count every tenant's
    messages: only keys with `tasks:replay` (operators) see them; for others it is null.
    """
    counted = await task_stats(services.deps, tenant=principal.tenant)
    queues: list[QueueView] | None = None
    if REPLAY in principal.scopes:
        try:
            depths = await services.queues.depths()
        except PublishFailed as error:
            log.warning("GET /tasks/stats without queue depths: %s", error)
        else:
            queues = [QueueView(queue=d.queue, messages=d.messages, consumers=d.consumers)
                      for d in depths]
    return StatsView(
        counts=[TaskCountView(task_type=c.task_type, status=c.status, count=c.count,
                              at_least=c.status in counted.capped) for c in counted.counts],
        cap=STATS_CAP, capped=sorted(counted.capped),
        counted_since=dict(counted.counted_since), queues=queues)
