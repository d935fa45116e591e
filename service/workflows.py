"""Workflows: submitting a succeeded step's follow-ups, and a workflow's steps as the read
model knows them, and where it stopped (docs/http-api.md, Workflows).

A worker submits a step's follow-ups before it publishes `succeeded` and acks: they are
confirmed first, so a crash in between redelivers the parent, which submits them again under
the same ids (contracts.workflows.follow_up_id, derived with the workflow's secret key).
At-least-once: a follow-up may be published twice with one id; the read model keeps one record
of it, and its handler may run twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from contracts.messages import FollowUp, TaskEnvelope
from contracts.projection import TaskState
from contracts.statuses import Status
from contracts.workflows import follow_up_id, follow_up_key, workflow_label
from service.commands import SubmitTask
from service.dependencies import Dependencies
from service.errors import TaskNotFound
from service.listing import owners_of
from service.ports import FollowUpPublisher
from service.queries import TaskQuery
from service.submit import WorkflowPlace, envelope_for

# A workflow has at most 1 + MAX_WORKFLOW_TASKS tasks.
_MAX_STEPS = 101
_STOPPING = frozenset({Status.FAILED, Status.DEAD, Status.CANCELLED, Status.REJECTED})


@dataclass(frozen=True)
class WorkflowSteps:
    workflow_id: str
    steps: list[TaskState]  # in the order they were submitted

    @property
    def stopped_at(self) -> list[TaskState]:
        """The steps that ended without succeeding: their follow-ups never run."""
        return [step for step in self.steps if step.status in _STOPPING]

    @property
    def status(self) -> str:
        """`stopped` once a step ended without succeeding; else `running` while a step known
        has not ended, and `succeeded` when every step known has. The follow-ups are confirmed
        before their parent's `succeeded`, but the projector records the two from different
        queues: for a moment a step's follow-ups may not be known yet (docs/http-api.md,
        Workflows)."""
        if self.stopped_at:
            return "stopped"
        if all(step.status is Status.SUCCEEDED for step in self.steps):
            return "succeeded"
        return "running"


async def workflow_steps(deps: Dependencies, workflow_id: str, tenant: str) -> WorkflowSteps:
    """The tenant's tasks of the workflow, oldest first; TaskNotFound if it has none."""
    query = TaskQuery(owners=owners_of(deps, tenant), labels=(workflow_label(workflow_id),),
                      limit=_MAX_STEPS, ascending=True)
    page = await deps.read_model.find(query)
    if not page.items:
        raise TaskNotFound(workflow_id)
    return WorkflowSteps(workflow_id, page.items)


@dataclass(frozen=True)
class SucceededStep:
    """A workflow step that has just succeeded, as its worker knows it."""

    task_id: str
    task_type: str
    tenant: str
    source: str
    then: tuple[FollowUp, ...]
    # None for a workflow's first task: the workflow is named after it.
    workflow_id: str | None
    # What the follow-ups' ids derive from: the message's `follow_up_key`, else a digest of it.
    follow_up_key: str


def follow_ups(step: SucceededStep, result: Any) -> list[TaskEnvelope]:
    """The messages of `step`'s follow-ups, each handed `result` as its previous result."""
    workflow_id = step.workflow_id or step.task_id
    return [envelope_for(_command(follow_up, step.tenant),
                         follow_up_id(step.task_id, index, step.follow_up_key),
                         place=WorkflowPlace(workflow_id, result,
                                             follow_up_key(step.follow_up_key, step.task_id,
                                                           index)))
            for index, follow_up in enumerate(step.then)]


async def submit_follow_ups(
    publisher: FollowUpPublisher, step: SucceededStep, result: Any,
) -> None:
    """Publish `step`'s follow-ups, confirmed, all in flight at once. The projector records
    them from their own messages."""
    await asyncio.gather(*(
        publisher.publish_follow_up(envelope, parent_id=step.task_id,
                                    parent_type=step.task_type, source=step.source,
                                    tenant=step.tenant)
        for envelope in follow_ups(step, result)))


def _command(follow_up: FollowUp, tenant: str) -> SubmitTask:
    return SubmitTask(task_type=follow_up.task_type, payload=follow_up.payload,
                      max_attempts=follow_up.max_attempts, timeout_s=follow_up.timeout_s,
                      retry_base_s=follow_up.retry_base_s, tenant=tenant,
                      labels=tuple(follow_up.labels or ()),
                      then=tuple(step.model_dump(exclude_none=True)
                                 for step in follow_up.then or ()))
