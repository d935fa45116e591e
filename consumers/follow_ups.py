"""Submitting a succeeded step's follow-ups (README, Workflows).

The worker calls this before it publishes `succeeded` and acks: the follow-ups are confirmed
first, so a crash in between redelivers the parent, which publishes them again under the same
ids (contracts.workflows.follow_up_id, derived with the workflow's secret key). At-least-once:
a follow-up may be published twice with one id; the read model keeps one record of it, and its
handler may run twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

from consumers.decode import ReceivedTask
from contracts.messages import FollowUp, TaskEnvelope, utcnow
from contracts.workflows import follow_up_id, follow_up_key, workflow_label
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.publishing import publish_follow_up


def follow_ups(task: ReceivedTask, result: Any) -> list[TaskEnvelope]:
    """The envelopes of `task`'s follow-ups, each given `result` as its previous result."""
    workflow_id = task.workflow_id or task.task_id
    return [_envelope(step, task, index, workflow_id, result)
            for index, step in enumerate(task.then)]


def _envelope(
    step: FollowUp, parent: ReceivedTask, index: int, workflow_id: str, result: Any
) -> TaskEnvelope:
    labels = tuple(dict.fromkeys((*(step.labels or ()), workflow_label(workflow_id))))
    key = parent.follow_up_key
    return TaskEnvelope(task_id=follow_up_id(parent.task_id, index, key),
                        task_type=step.task_type, payload=step.payload,
                        submitted_at=utcnow(), max_attempts=step.max_attempts,
                        timeout_s=step.timeout_s, retry_base_s=step.retry_base_s,
                        labels=labels, then=step.then, workflow_id=workflow_id,
                        previous_result=result,
                        follow_up_key=follow_up_key(key, parent.task_id, index)
                        if step.then else None)


async def submit_follow_ups(
    broker: Broker, task: ReceivedTask, result: Any, *, app_id: str,
) -> None:
    """Publish `task`'s follow-ups, confirmed, all in flight at once."""
    await asyncio.gather(*(
        publish_follow_up(broker, envelope, parent_id=task.task_id, parent_type=task.spec.name,
                          app_id=app_id, source=task.source, tenant=task.tenant)
        for envelope in follow_ups(task, result)))
