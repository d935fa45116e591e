"""Cancelling a task: keep the cancellation, tell the workers, record `cancelled`.

The stored cancellation is the commit point: a worker checks its in-memory copy of the stored
cancellations before it runs a task, and loads them from the store when it starts and every
little while, so a lost or unpublished control message delays a running task's stop, never
lets a queued task start after the next refresh. The control message is the fast path that
stops a running attempt at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from contracts.control import CancelRequest
from contracts.log_fields import task_fields
from contracts.messages import StatusEvent
from contracts.projection import TaskState
from contracts.statuses import Status
from service.dependencies import Dependencies
from service.errors import AlreadyFinished, PublishFailed
from service.ports import Cancellations, ControlPublisher
from service.tasks import get_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CancelPorts:
    """What cancelling needs besides the task use cases' dependencies."""

    cancellations: Cancellations
    control: ControlPublisher
    # The `by` of the requests and the `worker` of the `cancelled` events this records.
    cancelled_by: str


async def cancel_task(
    deps: Dependencies, ports: CancelPorts, task_id: str, tenant: str | None = None
) -> TaskState:
    """Cancel the task and return its state after: `cancelled`, unless another terminal status
    reached the read model first (then that one stays). The read model is the arbiter: a
    workflow step's worker records `succeeded` there before it submits the follow-ups, and only
    if that is what stays (consumers.settling), so the answer and what runs agree.

    TaskNotFound if it is unknown or another tenant's, AlreadyFinished if it has a terminal
    status; StoreUnavailable if the cancellation could not be kept (then nothing changed, and
    a repeat is safe).
    """
    state = await get_task(deps, task_id, tenant)
    if state.status.is_terminal:
        raise AlreadyFinished(task_id, state.status.value)
    owner = state.tenant or deps.default_tenant
    request = CancelRequest(task_id=task_id, task_type=state.task_type, tenant=owner,
                            by=ports.cancelled_by)
    await ports.cancellations.add(request)
    try:
        await ports.control.publish_cancel(request)
    except PublishFailed as error:
        # Kept in the store: the workers pick it up at their next refresh.
        log.warning("task %s cancelled, but its control message not confirmed: %s",
                    task_id, error, extra=task_fields(task_id))
    # Recorded here, not left to a worker: a queued task shows `cancelled` at once, and the
    # projection keeps the first terminal status of a run against every later event.
    after = await deps.read_model.apply(StatusEvent(
        task_id=task_id, task_type=state.task_type, status=Status.CANCELLED,
        attempt=state.attempt, run=state.run, at=request.at, worker=ports.cancelled_by,
        source=state.source, idempotency_key=state.idempotency_key, tenant=owner,
    ))
    log.info("task %s cancelled (its status: %s)", task_id, after.status,
             extra=task_fields(task_id))
    return after
