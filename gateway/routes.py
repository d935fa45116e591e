"""HTTP routes: submit a task, read its status (each needs an API key with a scope), health,
readiness and the AsyncAPI document (open)."""

from __future__ import annotations

import dataclasses
from importlib.metadata import version
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Request, Response, status
from fastapi.responses import JSONResponse

from contracts.asyncapi import asyncapi_document
from gateway.auth import KeyFirstRoute, Reader, Replayer, Submitter, api_key
from gateway.batch_routes import batches
from gateway.deps import ServicesDep, services_of
from gateway.follow_ups import checked_follow_ups
from gateway.http_models import (
    CancelAccepted,
    Health,
    Readiness,
    TaskAccepted,
    TaskRequest,
    TaskView,
    request_examples,
)
from gateway.listing_routes import listing
from gateway.middleware.submitted_type import note_submitted_task_type
from gateway.request_limits import check_limits, limits_of
from gateway.schedule_routes import schedules
from gateway.workflow_routes import workflows
from infra.observability.tracing import valid_traceparent
from service.cancel import cancel_task as cancel_task_use_case
from service.replay import replay_task
from service.submit import submit
from service.tasks import get_task as get_task_state

# Every route on `tasks` needs a valid key (the router's dependency, checked before the body is
# read), whatever scope it names.
tasks = APIRouter(
    dependencies=[Depends(api_key)],
    route_class=KeyFirstRoute,
    responses={401: {"description": "No API key, or an unknown or revoked one "
                                    "(with `WWW-Authenticate: Bearer`)"},
               403: {"description": "The API key lacks the scope this endpoint needs"},
               413: {"description": "Request body over MAX_REQUEST_BYTES"},
               429: {"description": "The API key is over its rate limit (with `Retry-After`)"},
               503: {"description": "The gateway is at its concurrency limit "
                                    "(with `Retry-After`)"}},
)
open_routes = APIRouter()


@tasks.post(
    "/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses={400: {"description": "A body that cannot be read as text (not UTF-8)"},
               409: {"description": "A request with this Idempotency-Key is still in progress"},
               422: {"description": "Invalid JSON, unknown task_type, invalid payload, an "
                                    "option above its task type's cap, or an "
                                    "Idempotency-Key reused with a different request"},
               503: {"description": "RabbitMQ did not confirm in time, the task queue is "
                                    "full, or the gateway is at its concurrency limit; "
                                    "nothing was queued"}},
)
async def submit_task(
    request: Annotated[TaskRequest, Body(openapi_examples=request_examples())],
    http: Request,
    principal: Submitter,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    traceparent: Annotated[str | None, Header()] = None,
) -> TaskAccepted:
    """Queue a task (scope `tasks:submit`). Answers 202 only once RabbitMQ has confirmed the
    message. The task belongs to the key's tenant.

    With an `Idempotency-Key` header, repeating the same request returns the same task id and
    the task runs once. Keys are per tenant.
    """
    # The busiest route takes the app's services and limits from its state itself: each
    # `Depends` costs FastAPI a dependency solve on every request.
    services, limits = services_of(http), limits_of(http)
    note_submitted_task_type(http, request.task_type)
    check_limits(limits, request.task_type, timeout_s=request.timeout_s,
                 max_attempts=request.max_attempts, not_before=request.not_before)
    # W3C trace context says to ignore a malformed traceparent, not to refuse the request.
    valid_trace = valid_traceparent(traceparent)
    command = request.command(idempotency_key, tenant=principal.tenant)
    if request.then:
        command = dataclasses.replace(command, then=checked_follow_ups(
            request.then, limits, ("body",), request.labels))
    task_id = await submit(services.deps, command, source="http", traceparent=valid_trace)
    return TaskAccepted(task_id=task_id)


@tasks.get("/tasks/{task_id}", response_model=TaskView,
           responses={404: {"description": "No such task (or another tenant's)"},
                      503: {"description": "MongoDB unavailable, or the gateway is at its "
                                           "concurrency limit"}})
async def get_task(task_id: str, services: ServicesDep, principal: Reader) -> TaskView:
    """A task's current status, attempt, timestamps, result or error, and its history (scope
    `tasks:read`). Another tenant's task answers 404, as a missing one does."""
    return TaskView.of(await get_task_state(services.deps, task_id, principal.tenant))


@tasks.post("/tasks/{task_id}/retry", status_code=status.HTTP_202_ACCEPTED,
            response_model=TaskAccepted,
            responses={404: {"description": "No such task (or another tenant's)"},
                       409: {"description": "The task is not failed or dead, its dead letter "
                                            "is not kept, or another replay of it is under way"},
                       503: {"description": "RabbitMQ or MongoDB unavailable, or the gateway "
                                            "is at its concurrency limit"}})
async def retry_task(task_id: str, services: ServicesDep, principal: Replayer) -> TaskAccepted:
    """Run a failed or dead task again from its dead letter: same id, attempts start at 1
    (scope `tasks:replay`)."""
    await replay_task(services.replay, task_id, principal.tenant)
    return TaskAccepted(task_id=task_id)


@tasks.post("/tasks/{task_id}/cancel", status_code=status.HTTP_202_ACCEPTED,
            response_model=CancelAccepted,
            responses={404: {"description": "No such task (or another tenant's)"},
                       409: {"description": "The task has a terminal status already"},
                       503: {"description": "MongoDB unavailable: nothing was cancelled"}})
async def cancel_task(
    task_id: str, services: ServicesDep, principal: Submitter
) -> CancelAccepted:
    """Cancel a task (scope `tasks:submit`): one not started never starts, a running one has
    its handler cancelled. Its status becomes `cancelled` at once; see docs/operations.md,
    Reliability, for a cancel that meets a task finishing."""
    after = await cancel_task_use_case(services.deps, services.cancel, task_id,
                                       principal.tenant)
    return CancelAccepted(task_id=task_id, status=after.status)


@open_routes.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the gateway process answers."""
    return Health()


@open_routes.get("/health/ready", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "A dependency is unreachable"}})
async def ready(services: ServicesDep, response: Response) -> Readiness:
    """Readiness: RabbitMQ and MongoDB both answer (checked at most once a second)."""
    found = await services.readiness.check()
    if not found.is_ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ready" if found.is_ready else "unavailable",
                     rabbitmq=found.broker, mongodb=found.store)


@open_routes.get("/asyncapi.json", include_in_schema=False)
async def asyncapi() -> JSONResponse:
    """The AsyncAPI 3.0 document of the RabbitMQ messages; open, as `/openapi.json` is."""
    return JSONResponse(asyncapi_document(version("taskproc")))


# Included into the app one by one, in the order they are matched (`listing` before `tasks`:
# its `/tasks/{task_id}` would take `/tasks/stats` for a task's id). Not under one router of
# their own: FastAPI walks every level of nested routers on each request.
ROUTERS = (listing, batches, workflows, tasks, schedules, open_routes)
