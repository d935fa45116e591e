"""HTTP routes: submit a task, read its status, health and readiness."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Response, status

from contracts.messages import StatusEvent, TaskEnvelope, utcnow
from contracts.statuses import Status
from gateway.deps import ServicesDep
from gateway.errors import TaskNotFound
from gateway.schemas import Health, Readiness, TaskAccepted, TaskRequest, TaskView
from infra.broker import BrokerUnavailable
from infra.publishing import publish_task
from infra.store import StoreUnavailable

log = logging.getLogger(__name__)

GATEWAY_APP_ID = "taskproc-gateway"

router = APIRouter()


@router.post(
    "/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses={422: {"description": "Invalid JSON, unknown task_type or invalid payload"},
               503: {"description": "RabbitMQ did not confirm in time; nothing was queued"}},
)
async def submit_task(
    request: Annotated[TaskRequest, Body()], services: ServicesDep
) -> TaskAccepted:
    """Queue a task. Answers 202 only once RabbitMQ has confirmed the message."""
    envelope = TaskEnvelope(
        task_id=str(uuid.uuid4()),
        task_type=request.task_type,
        payload=request.payload.model_dump(mode="json", by_alias=True, exclude_unset=True),
        submitted_at=utcnow(),
        max_attempts=request.max_attempts,
        timeout_s=request.timeout_s,
        not_before=request.not_before,
    )
    await publish_task(services.broker, envelope, app_id=GATEWAY_APP_ID, source="http")
    await _record_queued(services, envelope)
    log.info("accepted %s task %s", envelope.task_type, envelope.task_id)
    return TaskAccepted(task_id=envelope.task_id)


async def _record_queued(services: ServicesDep, envelope: TaskEnvelope) -> None:
    """Read your writes: the read model knows the task before the 202 goes out."""
    event = StatusEvent(task_id=envelope.task_id, task_type=envelope.task_type,
                        status=Status.QUEUED, attempt=0, worker=GATEWAY_APP_ID, source="http",
                        at=envelope.submitted_at)
    try:
        await services.store.apply(event)
    except StoreUnavailable as error:
        # The task is queued for real; the projector records it from its submission queue.
        log.warning("task %s queued but not yet in the read model: %s", envelope.task_id, error)


@router.get("/tasks/{task_id}", response_model=TaskView,
            responses={404: {"description": "No such task"},
                       503: {"description": "MongoDB unavailable"}})
async def get_task(task_id: str, services: ServicesDep) -> TaskView:
    """A task's current status, attempt, timestamps, result or error, and its history."""
    state = await services.store.get(task_id)
    if state is None:
        raise TaskNotFound(task_id)
    return TaskView.of(state)


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the gateway process answers."""
    return Health()


@router.get("/health/ready", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "A dependency is unreachable"}})
async def ready(services: ServicesDep, response: Response) -> Readiness:
    """Readiness: RabbitMQ and MongoDB both answer."""
    rabbitmq = mongodb = "ok"
    try:
        await services.broker.channel()
        if not services.broker.is_connected:
            rabbitmq = "reconnecting"
    except BrokerUnavailable as error:
        rabbitmq = str(error)
    try:
        await services.store.ping()
    except StoreUnavailable as error:
        mongodb = str(error)
    is_ready = rabbitmq == mongodb == "ok"
    if not is_ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(status="ready" if is_ready else "unavailable", rabbitmq=rabbitmq,
                     mongodb=mongodb)
