"""Whether a follow-up may run: its parent must be a task of the publishing worker's type that
the follow-up's tenant owns.

A worker publishes a workflow step's follow-ups as `<its type>.<follow-up type>` on
`task-follow-ups`, and RabbitMQ lets it write only routing keys of its own type (a topic
permission). So a worker cannot make another type's task for a tenant out of nothing: a
follow-up names a parent, and that parent must be a task of the publishing worker's type,
owned by the tenant the follow-up names. What a compromised worker can still do is act for the
tenants whose tasks of its own type it has seen (docs/security.md).
"""

from __future__ import annotations

from typing import Protocol

from contracts.projection import TaskState
from service.tasks import owner_of


class TaskLookup(Protocol):
    async def get(self, task_id: str) -> TaskState | None: ...


class ParentUnknown(Exception):
    """The parent is not in the read model (yet: its `queued` may still be on its way)."""


async def follow_up_problem(
    tasks: TaskLookup, *, parent_id: str | None, parent_type: str, tenant: str,
    default_tenant: str,
) -> str | None:
    """Why a follow-up of `parent_id` (published by a worker of `parent_type`, for `tenant`)
    may not run; None if it may. Raises ParentUnknown when the read model has no such task, and
    StoreUnavailable when it cannot tell."""
    if not parent_id:
        return "a follow-up must name its parent task (header x-parent)"
    parent = await tasks.get(parent_id)
    if parent is None:
        raise ParentUnknown(parent_id)
    if owner_of(parent, default_tenant) != tenant:
        return f"its parent task {parent_id!r} is another tenant's"
    if parent.task_type != parent_type:
        return (f"its parent task {parent_id!r} is not a {parent_type} task, the type of the "
                "worker that published it")
    return None
