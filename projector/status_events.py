"""Reading `projector.events`: each message is a status event or a progress report, and one that
is neither is quarantined rather than requeued (it would fail the same way forever)."""

from __future__ import annotations

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from contracts import names
from contracts.messages import ProgressEvent, StatusEvent
from infra.observability.middleware import Middleware
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.publishing import quarantine
from projector.batch_writer import Event


class StatusEventReader:
    def __init__(self, broker: Broker, middleware: Middleware) -> None:
        self._broker = broker
        self._middleware = middleware

    async def read(self, message: AbstractIncomingMessage) -> Event | None:
        """A status event, or a progress report (AMQP `type` `progress_event`); None for a
        message that is neither, once it is quarantined."""
        progress = message.type == names.PROGRESS_EVENT_TYPE
        try:
            if progress:
                return ProgressEvent.model_validate_json(message.body)
            return StatusEvent.model_validate_json(message.body)
        except ValidationError as error:
            what = "progress" if progress else "status"
            reason = f"not a {what} event: {error.error_count()} error(s)"
            await quarantine(self._broker, message, reason, names.PROJECTOR_EVENTS_QUEUE)
            self._middleware.on_quarantine(names.PROJECTOR_EVENTS_QUEUE, reason)
            return None
