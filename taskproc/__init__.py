"""What a task module needs to declare task types of its own.

    from pydantic import BaseModel
    from taskproc import TaskContext, task_type

    class Thumbnail(BaseModel):
        image_url: str

    @task_type("thumbnail", timeout_s=60)
    async def thumbnail(payload: Thumbnail, ctx: TaskContext) -> dict[str, str]:
        ...

A module is registered by an entry point in the group `taskproc.task_types`, or by its name in
TASK_MODULES (docs/task-types.md).
"""

from contracts.payloads import Payload
from taskproc.context import JSON, TaskContext
from taskproc.failures import PermanentFailure, Retry, TaskFailure
from taskproc.registration import TaskTypeOptions, task_type

__all__ = ["JSON", "Payload", "PermanentFailure", "Retry", "TaskContext", "TaskFailure",
           "TaskTypeOptions", "task_type"]
