"""The projector: folds status events, submissions and broker dead letters into MongoDB.

Events are taken in batches: a batch closes at `batch_size` events or a few milliseconds after
its first, is folded per task with the pure `apply`, and goes to MongoDB as one guarded bulk
write. Its messages are acked only once MongoDB has taken it. While MongoDB is away the
projector holds the batch (prefetch bounds what it holds) and retries, so an outage delays the
read model but loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError
from tenacity import RetryCallState, wait_exponential

from contracts import names
from contracts.messages import ErrorInfo, ProgressEvent, StatusEvent
from contracts.registry import task_type_names
from contracts.statuses import Status
from infra.mongodb.task_store import TaskStore
from infra.observability.middleware import Middleware, ProjectedEvent
from infra.rabbitmq.acks import Acks
from infra.rabbitmq.amqp_codec import (
    DEVELOPMENT_TENANTS,
    TenantRules,
    control_int,
    from_service,
    header_str,
    labels_of,
    owner_or_nobody,
    source_of,
    task_id_of,
)
from infra.rabbitmq.broker import Broker, PublishError, stop_consuming
from infra.rabbitmq.dead_letter_queue import describe
from infra.rabbitmq.publishing import publish_event, quarantine
from infra.rabbitmq.submission_time import submitted_at_of
from infra.runtime.batching import Batcher
from infra.runtime.retrying import Stopped, failed_try, until_stopped
from service.dead_letters import DeadLetter, DeadLetterArchive
from service.errors import StoreUnavailable
from service.follow_up_rules import ParentUnknown, follow_up_problem

log = logging.getLogger(__name__)

# Through a MongoDB outage: 0.2 s, 0.4 s, ... up to 5 s between tries.
_BACKOFF = wait_exponential(multiplier=0.2, min=0.2, max=5.0)
SWEEP_EVERY_S = 60.0

Event = StatusEvent | ProgressEvent
EventReader = Callable[[AbstractIncomingMessage], Awaitable[Event | None]]
Received = tuple[AbstractIncomingMessage, Event]


class Expiring(Protocol):
    async def sweep_expired(self, now: datetime) -> int: ...


class Projector:
    def __init__(
        self, broker: Broker, store: TaskStore, *, dead_letters: DeadLetterArchive,
        worker_name: str, batch_size: int, batch_window_s: float,
        expiring: Sequence[Expiring] = (), middleware: Middleware | None = None,
        tenants: TenantRules = DEVELOPMENT_TENANTS,
    ) -> None:
        self._tenants = tenants
        self._broker = broker
        self._store = store
        self._dead_letters = dead_letters
        self._worker_name = worker_name
        self._expiring = expiring
        self._middleware = middleware or Middleware()
        self._batch_size = batch_size
        self._batches: Batcher[Received] = Batcher(self._store_batch, max_size=batch_size,
                                                   window_s=batch_window_s)
        self._in_flight: set[asyncio.Task[Any]] = set()
        # A batch's messages are acked together once it is stored; the few settled on their own
        # (dead letters) wait a moment for company.
        self._acks = Acks(window_s=batch_window_s, flush_at=batch_size)
        self._stopping = asyncio.Event()
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        readers: dict[str, EventReader] = {
            names.PROJECTOR_EVENTS_QUEUE: self._status_event,
            names.PROJECTOR_SUBMISSIONS_QUEUE: self._submission,
            names.PROJECTOR_DEAD_QUEUE: self._dead_letter,
        }
        writer = asyncio.create_task(self._batches.run(self._stopping))
        sweeper = asyncio.create_task(self._sweep_periodically())
        consumers = []
        try:
            for queue_name, reader in readers.items():
                queue = await self._broker.queue(queue_name)
                tag = await queue.consume(self._dispatcher(reader))
                consumers.append((queue, tag))
            log.info("projecting %s (batches of up to %d events)", ", ".join(readers),
                     self._batch_size)
            await stop.wait()
        finally:
            # Together: with the broker away each cancel waits out its own timeout.
            await asyncio.gather(*(stop_consuming(queue, tag) for queue, tag in consumers))
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            # Stopping ends the writer once it has flushed what it holds (or, while MongoDB is
            # away, given it back to RabbitMQ).
            self._stopping.set()
            sweeper.cancel()
            await asyncio.gather(writer, sweeper, return_exceptions=True)
            await self._acks.flush()

    def _dispatcher(
        self, reader: EventReader
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            # aio-pika runs each delivery on a task of its own already: read on that one, and
            # keep it to wait for at shutdown.
            self._acks.track(message)  # first, before anything awaits: deliveries stay in order
            current = asyncio.current_task()
            assert current is not None
            self._in_flight.add(current)
            try:
                await self._read(message, reader)
            finally:
                self._in_flight.discard(current)

        return on_message

    async def _read(self, message: AbstractIncomingMessage, reader: EventReader) -> None:
        """Turn a message into an event for the next batch; settle at once what has none."""
        try:
            event = await reader(message)
            if event is None:
                self._acks.ack(message)
            else:
                self._batches.add((message, event))
        except PublishError as error:
            log.error("message %s: %s; it will be redelivered", message.message_id, error)
            await self._acks.requeue(message)
        except StoreUnavailable as error:
            log.warning("message %s: %s; it will be redelivered", message.message_id, error)
            await self._acks.requeue(message)
        except (AMQPError, ChannelInvalidStateError) as error:
            log.error("could not settle message %s (%r); it will be redelivered",
                      message.message_id, error)
        except Exception:
            log.exception("message %s: unexpected error; requeueing it", message.message_id)
            await self._acks.requeue(message)

    async def _store_batch(self, batch: list[Received]) -> None:
        """One bulk write for the batch, then its acks; requeued if stopping during an outage."""
        # Middleware sees status changes; progress reports are folded in but not traced.
        projected = [ProjectedEvent(event=event, headers=message.headers or {})
                     for message, event in batch if isinstance(event, StatusEvent)]
        self._middleware.before_write(projected)
        failure: BaseException | None = None
        try:
            stored = await self._apply_until_stored([event for _, event in batch])
        except Exception as error:
            log.exception("a batch of %d event(s) failed; requeueing it", len(batch))
            stored, failure = False, error
        if not stored and failure is None:
            failure = StoreUnavailable("stopped while MongoDB was unavailable")
        self._middleware.after_write(projected, failure)
        if not stored:
            for message, _ in batch:
                await self._acks.requeue(message)
            return
        for message, _ in batch:
            self._acks.ack(message)
        await self._acks.flush()  # mostly one multiple ack for the whole batch

    async def _apply_until_stored(self, events: list[Event]) -> bool:
        """Retry through a MongoDB outage; False if the projector is stopping meanwhile."""

        def holding(state: RetryCallState) -> None:
            log.warning("MongoDB unavailable, holding events (%d in this batch): %s",
                        len(events), failed_try(state))

        try:
            async for attempt in until_stopped(self._stopping, retry_on=StoreUnavailable,
                                               wait=_BACKOFF, before_sleep=holding):
                with attempt:
                    await self._store.apply_many(events)
        except (StoreUnavailable, Stopped):
            return False
        return True

    async def _sweep_periodically(self) -> None:
        """Expire old documents where the server has no TTL index (nx-27017)."""
        while True:
            for expiring in self._expiring:
                with contextlib.suppress(StoreUnavailable):
                    removed = await expiring.sweep_expired(datetime.now(UTC))
                    if removed:
                        log.info("expired %d document(s) past their retention", removed)
            await asyncio.sleep(SWEEP_EVERY_S)

    async def _status_event(self, message: AbstractIncomingMessage) -> Event | None:
        """A status event, or a progress report (AMQP `type` `progress_event`)."""
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

    async def _submission(self, message: AbstractIncomingMessage) -> StatusEvent | None:
        """A task seen on its exchange is `queued` at once, however it was published; a
        follow-up only if its parent is its tenant's task of the publishing worker's type."""
        if message.exchange == names.FOLLOW_UPS_EXCHANGE:
            task_type = await self._follow_up_type(message)
        else:
            task_type = _task_type_of(message.exchange, suffix="")
        if task_type is None:
            return None  # not published to a task exchange: nothing to record
        return StatusEvent(
            task_id=task_id_of(message), task_type=task_type, status=Status.QUEUED,
            attempt=0, run=control_int(message, names.HEADER_RUN, self._tenants),
            worker=self._worker_name, source=source_of(message, self._tenants),
            tenant=owner_or_nobody(message, self._tenants), labels=labels_of(message),
            at=submitted_at_of(message, datetime.now(UTC)),
        )

    async def _follow_up_type(self, message: AbstractIncomingMessage) -> str | None:
        """The type of a follow-up whose parent checks out (service.follow_up_rules); None for
        one the read model must not record (its worker refuses it too)."""
        parent_type, _, task_type = (message.routing_key or "").partition(".")
        if task_type not in task_type_names():
            return None
        try:
            problem = await follow_up_problem(
                self._store, parent_id=header_str(message, names.HEADER_PARENT),
                parent_type=parent_type, tenant=owner_or_nobody(message, self._tenants) or "",
                default_tenant=self._tenants.default_tenant)
        except ParentUnknown:
            return None  # its worker records it, if the parent turns up
        return task_type if problem is None else None

    async def _dead_letter(self, message: AbstractIncomingMessage) -> StatusEvent | None:
        """Archive every dead letter, so a replay finds it by id; a message RabbitMQ
        dead-lettered itself (delivery limit) also makes the task `dead`.

        The letter is archived before it is acked (and before `dead` is published, so a task
        seen `dead` has its letter archived). Messages a consumer dead-lettered on purpose carry
        a reason header; that consumer has already reported `failed`. The `dead` event is
        published to `task-events` like any other, so services listening for outcomes hear of
        it, and reaches the read model through the events queue.
        """
        task_type = _task_type_of(message.exchange, suffix=".dead")
        if task_type is None:
            return None
        await self._archive(describe(message, task_type, dead_at=datetime.now(UTC),
                                     tenants=self._tenants))
        if from_service(message, self._tenants) and header_str(
                message, names.HEADER_DEAD_REASON) is not None:
            return None
        self._middleware.on_dead_letter(task_type, "delivery_limit")
        event = StatusEvent(
            task_id=task_id_of(message), task_type=task_type, status=Status.DEAD,
            attempt=control_int(message, names.HEADER_ATTEMPT, self._tenants),
            run=control_int(message, names.HEADER_RUN, self._tenants), worker=self._worker_name,
            tenant=owner_or_nobody(message, self._tenants),
            error=ErrorInfo(type="DeliveryLimitExceeded",
                            message="the message was delivered too often without an outcome "
                                    "(its consumer crashed or was stopped each time)"),
        )
        await publish_event(self._broker, event, headers=self._middleware.event_headers(event))
        return None

    async def _archive(self, letter: DeadLetter) -> None:
        """Keep the letter, retrying through a MongoDB outage until stored or stopping (then
        StoreUnavailable: the message goes back to the queue)."""

        def holding(state: RetryCallState) -> None:
            log.warning("MongoDB unavailable, holding the dead letter of %s: %s",
                        letter.letter_id, failed_try(state))

        try:
            async for attempt in until_stopped(self._stop, retry_on=StoreUnavailable,
                                               wait=_BACKOFF, before_sleep=holding):
                with attempt:
                    await self._dead_letters.keep(letter)
        except Stopped:
            raise StoreUnavailable("stopped while MongoDB was unavailable") from None


def _task_type_of(exchange: str | None, *, suffix: str) -> str | None:
    for name in task_type_names():
        if exchange == names.task_exchange(name) + suffix:
            return name
    return None
