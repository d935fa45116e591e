"""The two kinds of message this service publishes, tasks and status events, and the service
layer's TaskPublisher on them (a confirmed publish to the task's exchange)."""

from __future__ import annotations

import logging
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts import names
from contracts.messages import ProgressEvent, StatusEvent, TaskEnvelope
from infra.rabbitmq.broker import (
    Broker,
    BrokerUnavailable,
    PublishError,
    Refused,
    persistent_message,
)
from service.errors import PublishFailed, QueueFull
from service.ports import Source

log = logging.getLogger(__name__)


async def publish_task(
    broker: Broker, envelope: TaskEnvelope, *, app_id: str, source: str,
    attempt: int = 1, run: int = 1, traceparent: str | None = None, tenant: str | None = None,
) -> None:
    """Publish a task the service records itself to `tasks.<type>.recorded`, which routes it to
    its task queue only (no copy for the projector), and wait for RabbitMQ's confirmation.

    `traceparent` (W3C trace context) travels as a header of the same name, and stays on every
    retry, dead-letter and quarantine copy; so does `tenant` (header `x-tenant`).
    """
    message = _task_message(envelope, app_id=app_id, headers={
        names.HEADER_ATTEMPT: attempt, names.HEADER_RUN: run, names.HEADER_SOURCE: source,
        names.HEADER_TRACEPARENT: traceparent, names.HEADER_TENANT: tenant})
    await broker.publish(names.recorded_exchange(envelope.task_type), envelope.task_type,
                         message)


class RabbitFollowUpPublisher:
    """A worker's way to submit a workflow step's follow-ups (service.workflows)."""

    def __init__(self, broker: Broker, *, app_id: str) -> None:
        self._broker = broker
        self._app_id = app_id

    async def publish_follow_up(
        self, envelope: TaskEnvelope, *, parent_id: str, parent_type: str, source: str,
        tenant: str,
    ) -> None:
        """Publish to `task-follow-ups` as `<parent type>.<its type>`, naming its parent
        (header `x-parent`), confirmed. The broker's errors reach the worker as they are: it
        leaves the parent unacked, to be redelivered (service/follow_up_rules.py says what the
        follow-up's worker checks)."""
        message = _task_message(envelope, app_id=self._app_id, headers={
            names.HEADER_ATTEMPT: 1, names.HEADER_RUN: 1, names.HEADER_SOURCE: source,
            names.HEADER_TENANT: tenant, names.HEADER_PARENT: parent_id})
        await self._broker.publish(
            names.FOLLOW_UPS_EXCHANGE,
            names.follow_up_routing_key(parent_type, envelope.task_type), message)


def _task_message(
    envelope: TaskEnvelope, *, app_id: str, headers: dict[str, Any]
) -> aio_pika.Message:
    return persistent_message(
        envelope.model_dump_json(exclude_none=True).encode(),
        message_id=envelope.task_id,
        type=envelope.task_type,
        timestamp=envelope.submitted_at,
        app_id=app_id,
        correlation_id=envelope.task_id,
        headers={name: value for name, value in headers.items() if value is not None},
    )


async def publish_event(
    broker: Broker, event: StatusEvent, *, headers: dict[str, Any] | None = None
) -> None:
    """Publish a status event to `task-events` as `<type>.<status>`, confirmed."""
    message = persistent_message(
        event.model_dump_json(exclude_none=True).encode(),
        message_id=f"{event.task_id}/{event.run}/{event.attempt}/{event.status}",
        type="status_event",
        timestamp=event.at,
        app_id=event.worker,
        correlation_id=event.task_id,
        headers=headers or None,
    )
    routing_key = names.event_routing_key(event.task_type, event.status.value)
    await broker.publish(names.EVENTS_EXCHANGE, routing_key, message)


async def publish_progress(broker: Broker, event: ProgressEvent) -> None:
    """Publish a progress report to `task-events` as `<type>.progress`, confirmed."""
    message = persistent_message(
        event.model_dump_json(exclude_none=True).encode(),
        message_id=f"{event.task_id}/{event.run}/{event.attempt}/progress/{event.at.isoformat()}",
        type=names.PROGRESS_EVENT_TYPE,
        timestamp=event.at,
        app_id=event.worker,
        correlation_id=event.task_id,
    )
    routing_key = names.event_routing_key(event.task_type, names.PROGRESS)
    await broker.publish(names.EVENTS_EXCHANGE, routing_key, message)


# Headers RabbitMQ adds when it dead-letters or redelivers: not the publisher's to carry on.
BROKER_HEADERS = frozenset({"x-death", "x-delivery-count", "x-first-death-exchange",
                             "x-first-death-queue", "x-first-death-reason"})


def copy_of(
    message: AbstractIncomingMessage, *, headers: dict[str, Any],
    message_id: str | None = None, type: str | None = None,
) -> aio_pika.Message:
    """A persistent copy of `message` to publish elsewhere: same body and properties, the
    publisher's headers updated with `headers` (a None value removes that header)."""
    own = {k: v for k, v in (message.headers or {}).items() if k not in BROKER_HEADERS}
    return persistent_message(
        message.body,
        message_id=message_id or message.message_id,
        type=type or message.type,
        app_id=message.app_id,
        timestamp=message.timestamp,
        correlation_id=message.correlation_id or message_id,
        headers={k: v for k, v in {**own, **headers}.items() if v is not None},
    )


async def quarantine(
    broker: Broker, message: AbstractIncomingMessage, reason: str, original_queue: str
) -> None:
    """Keep an invalid message in `tasks.quarantine` with the reason in a header, confirmed."""
    copy = copy_of(message, headers={names.HEADER_QUARANTINE_REASON: reason[:1000],
                                     names.HEADER_ORIGINAL_QUEUE: original_queue})
    try:
        await broker.publish(names.QUARANTINE_EXCHANGE, "", copy)
    except Refused:
        log.error("queue %s is full: a message from %s (id %s) stays there until it has room",
                  names.QUARANTINE_QUEUE, original_queue, message.message_id or "none")
        raise
    log.warning("quarantined a message from %s (id %s): %s",
                original_queue, message.message_id or "none", reason)


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

    async def publish_queued(self, event: StatusEvent) -> None:
        try:
            await publish_event(self._broker, event)
        except PublishError as error:
            raise PublishFailed(str(error)) from error

    async def ping(self) -> Literal["ok", "reconnecting"]:
        try:
            await self._broker.channel()
        except BrokerUnavailable as error:
            raise PublishFailed(str(error)) from error
        return "ok" if self._broker.is_connected else "reconnecting"
