"""HTTP routes: submit a task, read its status, health and readiness."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Header, Response, status

from gateway.deps import ServicesDep
from gateway.http_models import Health, Readiness, TaskAccepted, TaskRequest, TaskView
from gateway.limits import LimitsDep, check_limits
from service.health import readiness
from service.replay import replay_task
from service.submit import submit
from service.tasks import get_task as get_task_state

# W3C trace context: version-traceid-parentid-flags.
TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")

router = APIRouter()


@router.post(
    "/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses={409: {"description": "A request with this Idempotency-Key is still in progress"},
               413: {"description": "Request body over MAX_REQUEST_BYTES"},
               422: {"description": "Invalid JSON, unknown task_type, invalid payload, an "
                                    "option above its task type's cap, or an "
                                    "Idempotency-Key reused with a different request"},
               503: {"description": "RabbitMQ did not confirm in time or the task queue is "
                                    "full; nothing was queued"}},
)
async def submit_task(
    request: Annotated[TaskRequest, Body()],
    services: ServicesDep,
    limits: LimitsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    traceparent: Annotated[str | None, Header()] = None,
) -> TaskAccepted:
    """Queue a task. Answers 202 only once RabbitMQ has confirmed the message.

    With an `Idempotency-Key` header, repeating the same request returns the same task id and
    the task runs once.
    """
    check_limits(limits, request.task_type, timeout_s=request.timeout_s,
                 max_attempts=request.max_attempts, not_before=request.not_before)
    # W3C trace context says to ignore a malformed traceparent, not to refuse the request.
    valid_trace = traceparent if traceparent and TRACEPARENT.fullmatch(traceparent) else None
    task_id = await submit(services.tasks, request.command(idempotency_key), source="http",
                           traceparent=valid_trace)
    return TaskAccepted(task_id=task_id)


@router.get("/tasks/{task_id}", response_model=TaskView,
            responses={404: {"description": "No such task"},
                       503: {"description": "MongoDB unavailable"}})
async def get_task(task_id: str, services: ServicesDep) -> TaskView:
    """A task's current status, attempt, timestamps, result or error, and its history."""
    return TaskView.of(await get_task_state(services.tasks, task_id))


@router.post("/tasks/{task_id}/retry", status_code=status.HTTP_202_ACCEPTED,
             response_model=TaskAccepted,
             responses={404: {"description": "No such task"},
                        409: {"description": "The task is not failed or dead, its dead letter "
                                             "is not kept, or another replay of it is under way"},
                        503: {"description": "RabbitMQ or MongoDB unavailable"}})
async def retry_task(task_id: str, services: ServicesDep) -> TaskAccepted:
    """Run a failed or dead task again from its dead letter: same id, attempts start at 1."""
    await replay_task(services.replay, task_id)
    return TaskAccepted(task_id=task_id)


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the gateway process answers."""
    return Health()


@router.get("/health/ready", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "A dependency is unreachable"}})
async def ready(services: ServicesDep, response: Response) -> Readiness:
    """Readiness: RabbitMQ and MongoDB both answer."""
    found = await readiness(services.tasks)
    if not found.is_ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ready" if found.is_ready else "unavailable",
                     rabbitmq=found.broker, mongodb=found.store)
