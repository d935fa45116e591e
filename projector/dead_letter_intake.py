"""Reading `projector.dead`: every dead letter is archived, so a replay finds it by id, and a
message RabbitMQ dead-lettered itself (its delivery limit) also makes its task `dead`.

The letter is archived before it is acked, and before `dead` is published, so a task seen `dead`
has its letter archived. Messages a consumer dead-lettered on purpose carry a reason header; that
consumer has already reported `failed`. The `dead` event goes to `task-events` like any other, so
services listening for outcomes hear of it, and reaches the read model through
`projector.events`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage

from contracts import names
from contracts.messages import ErrorInfo, StatusEvent
from contracts.statuses import Status
from infra.observability.middleware import Middleware
from infra.rabbitmq.amqp_codec import (
    TenantRules,
    control_int,
    from_service,
    header_str,
    owner_or_nobody,
    task_id_of,
)
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.dead_letter_queue import describe
from infra.rabbitmq.publishing import publish_event
from infra.runtime.retrying import Stopped
from projector.store_retry import until_stored
from service.dead_letters import DeadLetter, DeadLetterArchive
from service.errors import StoreUnavailable


class DeadLetterIntake:
    """Archives the dead letters of one projector run; `stop` ends its wait through an outage."""

    def __init__(
        self, broker: Broker, archive: DeadLetterArchive, *, stop: asyncio.Event,
        process_name: str, middleware: Middleware, tenants: TenantRules,
    ) -> None:
        self._broker = broker
        self._archive = archive
        self._stop = stop
        self._worker_name = process_name
        self._middleware = middleware
        self._tenants = tenants

    async def read(self, message: AbstractIncomingMessage) -> None:
        """Archive the letter and publish `dead` if RabbitMQ dead-lettered it; nothing goes to
        the batch (`dead` comes back through the events queue). Raises StoreUnavailable if
        stopped before the letter was archived: the message goes back to its queue."""
        # By the exchange's name, as for submissions: a type this projector does not know yet.
        task_type = names.task_type_of_exchange(message.exchange, suffix=".dead")
        if task_type is None:
            return
        await self._keep(describe(message, task_type, dead_at=datetime.now(UTC),
                                  tenants=self._tenants))
        if from_service(message, self._tenants) and header_str(
                message, names.HEADER_DEAD_REASON) is not None:
            return
        self._middleware.on_dead_letter(task_type, "delivery_limit")
        event = self._dead_event(message, task_type)
        await publish_event(self._broker, event, headers=self._middleware.event_headers(event))

    def _dead_event(self, message: AbstractIncomingMessage, task_type: str) -> StatusEvent:
        return StatusEvent(
            task_id=task_id_of(message), task_type=task_type, status=Status.DEAD,
            attempt=control_int(message, names.HEADER_ATTEMPT, self._tenants),
            run=control_int(message, names.HEADER_RUN, self._tenants), worker=self._worker_name,
            tenant=owner_or_nobody(message, self._tenants),
            error=ErrorInfo(type="DeliveryLimitExceeded",
                            message="the message was delivered too often without an outcome "
                                    "(its consumer crashed or was stopped each time)"),
        )

    async def _keep(self, letter: DeadLetter) -> None:
        """Archive the letter, retrying through a MongoDB outage until stored or stopping."""
        try:
            await until_stored(self._stop, lambda: self._archive.keep(letter),
                               holding=f"the dead letter of {letter.letter_id}")
        except Stopped:
            raise StoreUnavailable("stopped while MongoDB was unavailable") from None
