"""Whose task an id is: a task published from outside under an id another tenant owns is
refused, and so is a follow-up whose parent is not its tenant's task of the publishing worker's
type (service/follow_up_rules.py).

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

from aio_pika.abc import AbstractIncomingMessage

from contracts import names
from contracts.log_fields import task_fields
from contracts.projection import TaskState
from infra.rabbitmq.amqp_codec import header_str
from service.errors import StoreUnavailable
from service.follow_up_rules import ParentUnknown, follow_up_problem

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
        log.warning("task %s: cannot check who owns its id (%s); running it", task_id, error,
                    extra=task_fields(task_id))
        return False
    return state is not None and (state.tenant or default_tenant) != tenant


# A follow-up whose parent the read model does not know yet is tried again this many times
# (its parent's `queued` may still be on its way to the projector) before it is refused.
_PARENT_DELIVERIES = 3


class CheckLater(Exception):
    """The check could not be made now (the store is away, or the parent not recorded yet):
    the message goes back to its queue, after a pause."""


async def check_follow_up(
    lookup: TaskLookup, message: AbstractIncomingMessage, tenant: str, *, default_tenant: str,
) -> str | None:
    """Why a message that came through `task-follow-ups` may not run; None if it may (or if
    it did not come that way). Raises CheckLater."""
    if message.exchange != names.FOLLOW_UPS_EXCHANGE:
        return None
    parent_id = header_str(message, names.HEADER_PARENT)
    parent_type = (message.routing_key or "").partition(".")[0]
    try:
        problem = await follow_up_problem(lookup, parent_id=parent_id, parent_type=parent_type,
                                          tenant=tenant, default_tenant=default_tenant)
    except StoreUnavailable as error:
        raise CheckLater(f"cannot check its parent: {error}") from error
    except ParentUnknown:
        if _deliveries(message) < _PARENT_DELIVERIES:
            raise CheckLater(f"its parent {parent_id} is not recorded yet") from None
        problem = f"its parent task {parent_id!r} is unknown"
    return None if problem is None else f"follow-up refused: {problem}"


def _deliveries(message: AbstractIncomingMessage) -> int:
    count = (message.headers or {}).get("x-delivery-count")
    return count if isinstance(count, int) else 0
