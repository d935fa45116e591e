"""A workflow's steps as the read model knows them, and where it stopped (README, Workflows)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.projection import TaskState
from contracts.statuses import Status
from contracts.workflows import workflow_label
from service.dependencies import Dependencies
from service.errors import TaskNotFound
from service.listing import owners_of
from service.queries import TaskQuery

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
        queues: for a moment a step's follow-ups may not be known yet (README, Workflows)."""
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
