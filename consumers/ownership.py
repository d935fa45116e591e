"""Whose task an id is: a task published from outside under an id another tenant owns is refused.

Outside publishers choose their task ids, so one tenant can name an id that another's task
already has. The projection already keeps such a message's events off the owner's task
(contracts.projection); this check quarantines the message as `rejected` before it runs, so it
is not run unseen under an id whose record its publisher cannot read.

Only messages from outside publishers are checked: one of this service's users (the gateway,
a worker's retry copy or follow-up, a replay) publishes ids it made or checked, so the common
path costs no read. The check fails open: while the store is away the message runs, and the
projection still keeps its events off another tenant's task.
"""

from __future__ import annotations

import logging
from typing import Protocol

from contracts.projection import TaskState
from service.errors import StoreUnavailable

log = logging.getLogger(__name__)


class TaskLookup(Protocol):
    async def get(self, task_id: str) -> TaskState | None: ...


def foreign_id_reason(task_id: str) -> str:
    """What the quarantine header and the `rejected` event say; never who the owner is."""
    return (f"task id {task_id!r} belongs to another tenant's task; a task id is its first "
            "tenant's for the task's whole life: publish under another id")


async def owned_by_another(
    lookup: TaskLookup, task_id: str, tenant: str, *, default_tenant: str
) -> bool:
    """True if the read model holds `task_id` as a task of a tenant other than `tenant`."""
    try:
        state = await lookup.get(task_id)
    except StoreUnavailable as error:
        log.warning("task %s: cannot check who owns its id (%s); running it", task_id, error)
        return False
    return state is not None and (state.tenant or default_tenant) != tenant
