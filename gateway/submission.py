"""Retrying a failed or dead task from its dead letter.

Submitting moved to the service layer (service/submit.py); replay follows it there next.
"""

from __future__ import annotations

import logging

from contracts.messages import StatusEvent
from contracts.statuses import Status
from contracts.topology import dead_queue
from gateway.deps import Services
from infra.composition import GATEWAY_APP_ID
from infra.replay import replay
from service.errors import NotRetryable, TaskNotFound

log = logging.getLogger(__name__)


async def retry(services: Services, task_id: str) -> None:
    """Replay a failed or dead task's dead letter and record it `queued` in its new run."""
    state = await services.store.get(task_id)
    if state is None:
        raise TaskNotFound(task_id)
    if state.status not in (Status.FAILED, Status.DEAD):
        raise NotRetryable(f"task {task_id} is {state.status}; only failed or dead tasks retry")
    sent = await replay(services.broker, state.task_type, {task_id})
    if not sent:
        raise NotRetryable(f"task {task_id} has no message in {dead_queue(state.task_type)}")
    await services.store.apply(StatusEvent(
        task_id=task_id, task_type=state.task_type, status=Status.QUEUED, attempt=0,
        run=sent[0].run + 1, worker=GATEWAY_APP_ID,
    ))
    log.info("replayed %s task %s from its dead letter", state.task_type, task_id)
