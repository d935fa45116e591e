"""Reading `projector.submissions`: every task published straight to a task exchange `tasks.<type>`
is recorded `queued` at once, so it is in the read model before a worker reaches it. (The
service's own submissions go through `tasks.<type>.recorded`, which this queue is not bound to:
their submitter records them.) A follow-up is recorded only if its parent checks out
(service/follow_up_rules.py); its worker refuses any other, so the read model must not show it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage

from contracts import names
from contracts.messages import StatusEvent
from contracts.statuses import Status
from infra.rabbitmq.amqp_codec import (
    TenantRules,
    control_int,
    header_str,
    labels_of,
    owner_or_nobody,
    source_of,
    task_id_of,
)
from infra.rabbitmq.submission_time import submitted_at_of
from service.follow_up_rules import ParentUnknown, TaskLookup, follow_up_problem


class SubmissionReader:
    def __init__(self, tasks: TaskLookup, *, process_name: str, tenants: TenantRules) -> None:
        self._tasks = tasks
        self._worker_name = process_name
        self._tenants = tenants

    async def read(self, message: AbstractIncomingMessage) -> StatusEvent | None:
        """The copy's `queued` event; None for a message of no task exchange and for a
        follow-up whose parent does not check out."""
        if message.exchange == names.FOLLOW_UPS_EXCHANGE:
            task_type = await self._follow_up_type(message)
        else:
            # By the exchange's name, not this process's registry: in a rolling deploy, newer
            # processes may bind the exchange of a type this projector does not know yet.
            task_type = names.task_type_of_exchange(message.exchange)
        if task_type is None:
            return None
        return StatusEvent(
            task_id=task_id_of(message), task_type=task_type, status=Status.QUEUED,
            attempt=0, run=control_int(message, names.HEADER_RUN, self._tenants),
            worker=self._worker_name, source=source_of(message, self._tenants),
            tenant=owner_or_nobody(message, self._tenants), labels=labels_of(message),
            at=submitted_at_of(message, datetime.now(UTC)),
        )

    async def _follow_up_type(self, message: AbstractIncomingMessage) -> str | None:
        """The type of a follow-up whose parent is its tenant's task of the publishing worker's
        type; None otherwise."""
        parent_type, _, task_type = (message.routing_key or "").partition(".")
        # Any type's name, registered here or not, as for a straight submission above.
        if not task_type.isidentifier():
            return None
        try:
            problem = await follow_up_problem(
                self._tasks, parent_id=header_str(message, names.HEADER_PARENT),
                parent_type=parent_type, tenant=owner_or_nobody(message, self._tenants) or "",
                default_tenant=self._tenants.default_tenant)
        except ParentUnknown:
            return None  # its worker records it, if the parent turns up
        return task_type if problem is None else None
