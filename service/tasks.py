"""Reading a task's state."""

from __future__ import annotations

from contracts.projection import TaskState
from service.dependencies import Dependencies
from service.errors import TaskNotFound


async def get_task(deps: Dependencies, task_id: str) -> TaskState:
    """The task's current state; TaskNotFound if the system never heard of it.

    A task queued while the store was away is found too (read your writes).
    """
    state = await deps.read_model.get(task_id) or deps.unrecorded.get(task_id)
    if state is None:
        raise TaskNotFound(task_id)
    return state
