"""The service layer's TaskPublisher on RabbitMQ: a confirmed publish to the task's exchange."""

from __future__ import annotations

from typing import Literal

from contracts.messages import TaskEnvelope
from infra.broker import Broker, BrokerUnavailable, PublishError, Refused
from infra.publishing import publish_task
from service.errors import PublishFailed, QueueFull
from service.ports import Source


class RabbitTaskPublisher:
    def __init__(self, broker: Broker, *, app_id: str) -> None:
        self._broker = broker
        self._app_id = app_id

    async def publish(
        self, envelope: TaskEnvelope, *, source: Source, tenant: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        try:
            await publish_task(self._broker, envelope, app_id=self._app_id, source=source,
                               tenant=tenant, traceparent=traceparent)
        except Refused as error:
            raise QueueFull(str(error)) from error
        except PublishError as error:
            raise PublishFailed(str(error)) from error

    async def ping(self) -> Literal["ok", "reconnecting"]:
        try:
            await self._broker.channel()
        except BrokerUnavailable as error:
            raise PublishFailed(str(error)) from error
        return "ok" if self._broker.is_connected else "reconnecting"
