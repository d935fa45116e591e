"""The projector: folds status events, submissions and broker dead letters into MongoDB.

It acks an event only once MongoDB has taken it. While MongoDB is away it holds the events it
has (prefetch bounds them) and retries, so an outage delays the read model but loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError

from consumers.decode import header_int, header_str, submission_task_id
from contracts import topology as names
from contracts.messages import ErrorInfo, StatusEvent
from contracts.registry import task_type_names
from contracts.statuses import Status
from infra.broker import Broker, PublishError, requeue, stop_consuming
from infra.publishing import publish_event, quarantine
from infra.store import StoreUnavailable, TaskStore

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.2
_RETRY_MAX_S = 5.0

EventReader = Callable[[AbstractIncomingMessage], Awaitable[StatusEvent | None]]


class Projector:
    def __init__(self, broker: Broker, store: TaskStore, *, worker_name: str) -> None:
        self._broker = broker
        self._store = store
        self._worker_name = worker_name
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        readers: dict[str, EventReader] = {
            names.PROJECTOR_EVENTS_QUEUE: self._status_event,
            names.PROJECTOR_SUBMISSIONS_QUEUE: self._submission,
            names.PROJECTOR_DEAD_QUEUE: self._dead_letter,
        }
        consumers = []
        for queue_name, reader in readers.items():
            queue = await self._broker.queue(queue_name)
            tag = await queue.consume(self._dispatcher(reader))
            consumers.append((queue, tag))
        log.info("projecting %s", ", ".join(readers))
        await stop.wait()
        self._stopping.set()
        for queue, tag in consumers:
            await stop_consuming(queue, tag)
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _dispatcher(
        self, reader: EventReader
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.create_task(self._project(message, reader))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

        return on_message

    async def _project(self, message: AbstractIncomingMessage, reader: EventReader) -> None:
        try:
            event = await reader(message)
            if event is not None and not await self._apply_until_stored(event):
                await message.nack(requeue=True)  # stopping during an outage: keep it queued
                return
            await message.ack()
        except PublishError as error:
            log.error("message %s: %s; it will be redelivered", message.message_id, error)
            await requeue(message)
        except (AMQPError, ChannelInvalidStateError) as error:
            log.error("could not settle message %s (%r); it will be redelivered",
                      message.message_id, error)
        except Exception:
            log.exception("message %s: unexpected error; requeueing it", message.message_id)
            await requeue(message)

    async def _apply_until_stored(self, event: StatusEvent) -> bool:
        """Retry through a MongoDB outage; False if the projector is stopping meanwhile."""
        pause = _RETRY_MIN_S
        while True:
            try:
                await self._store.apply(event)
                return True
            except StoreUnavailable as error:
                log.warning("MongoDB unavailable, holding event for %s: %s", event.task_id, error)
            try:
                await asyncio.wait_for(self._stopping.wait(), pause)
                return False
            except TimeoutError:
                pause = min(pause * 2, _RETRY_MAX_S)

    async def _status_event(self, message: AbstractIncomingMessage) -> StatusEvent | None:
        try:
            return StatusEvent.model_validate_json(message.body)
        except ValidationError as error:
            reason = f"not a status event: {error.error_count()} error(s)"
            await quarantine(self._broker, message, reason, names.PROJECTOR_EVENTS_QUEUE)
            return None

    async def _submission(self, message: AbstractIncomingMessage) -> StatusEvent | None:
        """A task seen on its exchange is `queued` at once, however it was published."""
        task_type = _task_type_of(message.exchange, suffix="")
        if task_type is None:
            return None  # not published to a task exchange: nothing to record
        return StatusEvent(
            task_id=submission_task_id(message), task_type=task_type, status=Status.QUEUED,
            attempt=0, run=header_int(message, names.HEADER_RUN), worker=self._worker_name,
            source="http" if header_str(message, names.HEADER_SOURCE) == "http" else "amqp",
        )

    async def _dead_letter(self, message: AbstractIncomingMessage) -> StatusEvent | None:
        """A message RabbitMQ dead-lettered itself (delivery limit): the task is `dead`.

        Messages a consumer dead-lettered on purpose carry a reason header; that consumer has
        already reported `failed`, so they are skipped here. The `dead` event is published to
        `task-events` like any other, so services listening for outcomes hear of it, and
        reaches the read model through the events queue.
        """
        if header_str(message, names.HEADER_DEAD_REASON) is not None:
            return None
        task_type = _task_type_of(message.exchange, suffix=".dead")
        if task_type is None:
            return None
        await publish_event(self._broker, StatusEvent(
            task_id=submission_task_id(message), task_type=task_type, status=Status.DEAD,
            attempt=header_int(message, names.HEADER_ATTEMPT),
            run=header_int(message, names.HEADER_RUN), worker=self._worker_name,
            error=ErrorInfo(type="DeliveryLimitExceeded",
                            message="the message was delivered too often without an outcome "
                                    "(its consumer crashed or was stopped each time)"),
        ))
        return None


def _task_type_of(exchange: str | None, *, suffix: str) -> str | None:
    for name in task_type_names():
        if exchange == names.task_exchange(name) + suffix:
            return name
    return None
