"""Reading a task's state, as its tenant sees it."""

from __future__ import annotations

from contracts.projection import TaskState
from service.dependencies import Dependencies
from service.errors import TaskNotFound


def owner_of(state: TaskState, default_tenant: str) -> str:
    """The tenant a task belongs to; one that names none belongs to the default tenant."""
    return state.tenant or default_tenant


async def get_task(deps: Dependencies, task_id: str, tenant: str | None = None) -> TaskState:
    """The task's current state; TaskNotFound if the system never heard of it, or (with
    `tenant`) if it is another tenant's: a caller cannot tell the two apart.

    A task queued while the store was away is found too (read your writes).
    """
    state = await deps.read_model.get(task_id) or deps.unrecorded.get(task_id)
    if state is None or (tenant is not None and owner_of(state, deps.default_tenant) != tenant):
        raise TaskNotFound(task_id)
    return state
