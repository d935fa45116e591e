"""Cancellations on RabbitMQ (exchange `task-control`): the adapter behind
service.ports.ControlPublisher; infra.mongodb.cancellations keeps them."""

from __future__ import annotations

import logging

from contracts import names
from contracts.control import CancelRequest
from contracts.log_fields import task_fields
from infra.rabbitmq.broker import Broker, PublishError, Unroutable, persistent_message
from service.errors import PublishFailed

log = logging.getLogger(__name__)


class RabbitControlPublisher:
    """Publishes cancellations to `task-control` as `<type>.cancel`, confirmed."""

    def __init__(self, broker: Broker, *, app_id: str) -> None:
        self._broker = broker
        self._app_id = app_id

    async def publish_cancel(self, request: CancelRequest) -> None:
        message = persistent_message(
            request.model_dump_json().encode(), message_id=f"{request.task_id}/cancel",
            type="cancel_request", timestamp=request.at, app_id=self._app_id,
            correlation_id=request.task_id)
        try:
            await self._broker.publish(names.CONTROL_EXCHANGE,
                                       names.control_routing_key(request.task_type), message)
        except Unroutable:
            # No worker of the type is running: each one loads the cancellation at start-up.
            log.info("task %s cancelled while no %s worker listens", request.task_id,
                     request.task_type, extra=task_fields(request.task_id))
        except PublishError as error:
            raise PublishFailed(str(error)) from error
