"""The projector's assembly: which queue feeds which room, and starting and stopping them.

- `projector.events` → projector/status_events.py: status events and progress reports;
- `projector.submissions` → projector/submissions.py: a published task's copy becomes `queued`;
- `projector.dead` → projector/dead_letter_intake.py: dead letters archived, `dead` published;
- what the rooms read goes to projector/batch_writer.py, one bulk write per batch;
- projector/expiry_sweep.py runs beside them.

A room turns a message into an event for the next batch, or into nothing. This module settles
the message where no batch will: acked when there is nothing to write, requeued on an error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from contracts import names
from contracts.log_fields import task_fields
from infra.observability.middleware import Middleware
from infra.rabbitmq.acks import Acks
from infra.rabbitmq.amqp_codec import DEVELOPMENT_TENANTS, TenantRules
from infra.rabbitmq.broker import Broker, PublishError, stop_consuming
from projector.batch_writer import BatchWriter, Event
from projector.dead_letter_intake import DeadLetterIntake
from projector.expiry_sweep import Expiring, sweep_periodically
from projector.status_events import StatusEventReader
from projector.submissions import SubmissionReader
from service.dead_letters import DeadLetterArchive
from service.errors import StoreUnavailable
from service.ports import ProjectorReadModel

log = logging.getLogger(__name__)

EventReader = Callable[[AbstractIncomingMessage], Awaitable[Event | None]]


class Projector:
    """The projector's queues, rooms and batch writer, wired; `run` until stopped."""

    def __init__(
        self, broker: Broker, store: ProjectorReadModel, *, dead_letters: DeadLetterArchive,
        process_name: str, batch_size: int, batch_window_s: float,
        expiring: Sequence[Expiring] = (), middleware: Middleware | None = None,
        tenants: TenantRules = DEVELOPMENT_TENANTS,
    ) -> None:
        self._tenants = tenants
        self._broker = broker
        self._store = store
        self._dead_letters = dead_letters
        self._worker_name = process_name
        self._expiring = expiring
        self._middleware = middleware or Middleware()
        self._batch_size = batch_size
        # A batch's messages are acked together once it is stored; the few settled on their own
        # (dead letters) wait a moment for company.
        self._acks = Acks(window_s=batch_window_s, flush_at=batch_size)
        self._writer = BatchWriter(store, self._acks, middleware=self._middleware,
                                   max_size=batch_size, window_s=batch_window_s)
        self._in_flight: set[asyncio.Task[Any]] = set()

    def _readers(self, stop: asyncio.Event) -> dict[str, EventReader]:
        """Each queue's room. The dead-letter intake gives up waiting for MongoDB on `stop`, so
        that its messages go back to RabbitMQ before the consumers are cancelled."""
        dead_letters = DeadLetterIntake(self._broker, self._dead_letters, stop=stop,
                                        process_name=self._worker_name,
                                        middleware=self._middleware, tenants=self._tenants)
        submissions = SubmissionReader(self._store, process_name=self._worker_name,
                                       tenants=self._tenants)
        return {
            names.PROJECTOR_EVENTS_QUEUE: StatusEventReader(self._broker, self._middleware).read,
            names.PROJECTOR_SUBMISSIONS_QUEUE: submissions.read,
            names.PROJECTOR_DEAD_QUEUE: dead_letters.read,
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Consume the three queues until `stop`; then finish what was taken and return."""
        readers = self._readers(stop)
        writer = asyncio.create_task(self._writer.run())
        sweeper = asyncio.create_task(sweep_periodically(self._expiring))
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
            self._writer.stop()
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
                self._writer.add(message, event)
        except PublishError as error:
            log.error("message %s: %s; it will be redelivered", message.message_id, error,
                      extra=_fields(message))
            await self._acks.requeue(message)
        except StoreUnavailable as error:
            log.warning("message %s: %s; it will be redelivered", message.message_id, error,
                        extra=_fields(message))
            await self._acks.requeue(message)
        except (AMQPError, ChannelInvalidStateError) as error:
            log.error("could not settle message %s (%r); it will be redelivered",
                      message.message_id, error, extra=_fields(message))
        except Exception:
            log.exception("message %s: unexpected error; requeueing it", message.message_id,
                          extra=_fields(message))
            await self._acks.requeue(message)


def _fields(message: AbstractIncomingMessage) -> dict[str, str]:
    """The task a projector message is about, for its log lines: the service's own messages
    (events, submissions, dead letters) name it in `correlation_id`; a straight publisher's
    copy may not, and then the line has no field but the message id in its text."""
    return task_fields(message.correlation_id)
