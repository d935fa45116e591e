"""HTTP routes for batches: submit up to 1,000 tasks at once, count a batch's tasks per status.

A router of its own, included before the task router (so `/tasks/batch` is never taken for
`POST /tasks/{task_id}/...`); it needs a key as the task router does.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from contracts.limits import MAX_LABELS, over_limits
from contracts.messages import Labels
from contracts.statuses import Status
from gateway.auth import KeyFirstRoute, Reader, Submitter, api_key
from gateway.deps import ServicesDep
from gateway.follow_ups import checked_follow_ups
from gateway.http_models import TaskRequest
from gateway.request_limits import LimitsDep
from service.batches import (
    MAX_BATCH,
    BatchPartlyQueued,
    SubmitBatch,
    batch_counts,
    submit_batch,
)
from service.errors import TaskNotFound

batches = APIRouter(
    dependencies=[Depends(api_key)],
    route_class=KeyFirstRoute,
    responses={401: {"description": "No API key, or an unknown or revoked one "
                                    "(with `WWW-Authenticate: Bearer`)"},
               403: {"description": "The API key lacks the scope this endpoint needs"},
               429: {"description": "The API key is over its rate limit (with `Retry-After`)"}},
)

_EXAMPLE_ID = "3f0c9a57-1b2e-4d6f-8a90-5c4b3e2d1f0a"


class BatchRequest(BaseModel):
    """Tasks to queue together: each is what `POST /tasks` takes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "tasks": [{"task_type": "sleep", "payload": {"seconds": 1}},
                  {"task_type": "send_email", "labels": ["customer=42"],
                   "payload": {"to": ["ann@example.com"], "subject": "Hi", "body": "Hello"}}],
        "labels": ["nightly"]}]})

    tasks: list[TaskRequest] = Field(min_length=1, max_length=MAX_BATCH)
    labels: Labels = Field(default=(), description="Added to every task of the batch, "
                                                   "besides `batch=<batch_id>`.")


class BatchAccepted(BaseModel):
    batch_id: str
    task_ids: list[str] = Field(description="In the order of the request's `tasks`")


class BatchView(BaseModel):
    """How many of the batch's tasks have each status (statuses with none are left out)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "batch_id": _EXAMPLE_ID, "total": 1000,
        "counts": {"succeeded": 990, "running": 4, "queued": 5, "failed": 1}}]})

    batch_id: str
    total: int
    counts: dict[Status, int]


@batches.post(
    "/tasks/batch", status_code=status.HTTP_202_ACCEPTED, response_model=BatchAccepted,
    responses={
        202: {"content": {"application/json": {"example": {
            "batch_id": _EXAMPLE_ID,
            "task_ids": ["5d1f3c0e-7a2b-5c4d-9e8f-0a1b2c3d4e5f",
                         "8b7a6c5d-4e3f-5a2b-9c1d-0e9f8a7b6c5d"]}}}},
        400: {"description": "A body that cannot be read as text (not UTF-8)"},
        409: {"description": "A request with this Idempotency-Key is still in progress"},
        413: {"description": "Request body over MAX_REQUEST_BYTES"},
        422: {"description": "Any task invalid (`loc` names its index in `tasks`), more than "
                             "1,000 tasks, or an Idempotency-Key reused with another body; "
                             "nothing was queued"},
        503: {"description": "RabbitMQ did not confirm every task: `queued` lists those it "
                             "did (retry with the same Idempotency-Key to queue the rest)"}},
)
async def submit_tasks(
    request: Annotated[BatchRequest, Body()],
    services: ServicesDep,
    limits: LimitsDep,
    principal: Submitter,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Queue up to 1,000 tasks at once (scope `tasks:submit`): all are validated first (one
    invalid task: 422, nothing queued), then published with many confirmations in flight.
    Each task carries the label `batch=<batch_id>` and the batch's `labels`."""
    _check(request, limits)
    commands = tuple(
        dataclasses.replace(
            task.command(None, tenant=principal.tenant),
            labels=tuple(dict.fromkeys((*task.labels, *request.labels))),
            then=checked_follow_ups(task.then, limits, ("body", "tasks", index)))
        for index, task in enumerate(request.tasks))
    batch = SubmitBatch(commands, idempotency_key=idempotency_key, tenant=principal.tenant)
    try:
        accepted = await submit_batch(services.deps, batch, source="http")
    except BatchPartlyQueued as error:
        return JSONResponse(status_code=503, headers={"Retry-After": "5"}, content={
            "detail": "message broker unavailable part way; retry with the same "
                      "Idempotency-Key to queue the rest",
            "batch_id": error.batch_id, "queued": error.queued})
    return BatchAccepted(batch_id=accepted.batch_id, task_ids=accepted.task_ids)


def _check(request: BatchRequest, limits: LimitsDep) -> None:
    """Every task's caps, and room for its labels: a 422 naming each index that fails."""
    now = datetime.now(UTC)
    errors: list[dict[str, Any]] = []
    for index, task in enumerate(request.tasks):
        found = over_limits(task.task_type, limits[task.task_type], timeout_s=task.timeout_s,
                            max_attempts=task.max_attempts, not_before=task.not_before, now=now)
        errors += [{"loc": ("body", "tasks", index, over.field), "msg": over.message,
                    "type": "over_limit"} for over in found]
        # `batch=<id>`, and `workflow=<id>` for a task with `then`.
        if len({*task.labels, *request.labels}) + 1 + bool(task.then) > MAX_LABELS:
            errors.append({"loc": ("body", "tasks", index, "labels"), "type": "too_long",
                           "msg": f"with the batch's labels and `batch=<id>`, over "
                                  f"{MAX_LABELS} labels"})
    if errors:
        raise RequestValidationError(errors)


@batches.get("/batches/{batch_id}", response_model=BatchView,
             responses={404: {"description": "No such batch (or another tenant's)"},
                        503: {"description": "MongoDB unavailable"}})
async def get_batch(
    batch_id: Annotated[str, Path(max_length=56)], services: ServicesDep, principal: Reader,
) -> BatchView:
    """A batch's tasks counted per status, and their total (scope `tasks:read`). Another
    tenant's batch answers 404, as a missing one does."""
    try:
        found = await batch_counts(services.deps, batch_id, principal.tenant)
    except TaskNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no batch {batch_id!r}") from error
    return BatchView(batch_id=found.batch_id, total=found.total, counts=found.counts)
