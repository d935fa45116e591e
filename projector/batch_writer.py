"""Writing the read model in batches: events in, one guarded bulk write per batch, acks out.

A batch closes at `max_size` events or a few milliseconds after its first, is folded per task
with the pure `contracts.projection.apply`, and goes to MongoDB as one guarded bulk write
(`apply_many`). Its messages are acked only once MongoDB has taken it. While MongoDB is away the
writer holds the batch and retries (projector/store_retry.py), so an outage delays the read
model but loses nothing; stopped meanwhile, it gives the batch back to RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractIncomingMessage

from contracts.messages import ProgressEvent, StatusEvent
from infra.observability.middleware import Middleware, ProjectedEvent
from infra.rabbitmq.acks import Acks
from infra.runtime.batching import Batcher
from infra.runtime.retrying import Stopped
from projector.store_retry import until_stored
from service.errors import StoreUnavailable
from service.ports import ProjectorReadModel

log = logging.getLogger(__name__)

Event = StatusEvent | ProgressEvent
Received = tuple[AbstractIncomingMessage, Event]


class BatchWriter:
    """Collects (message, event) pairs with `add`; `run` writes them batch by batch until `stop`."""

    def __init__(
        self, tasks: ProjectorReadModel, acks: Acks, *, middleware: Middleware, max_size: int,
        window_s: float,
    ) -> None:
        self._tasks = tasks
        self._acks = acks
        self._middleware = middleware
        self._batches: Batcher[Received] = Batcher(self._store_batch, max_size=max_size,
                                                   window_s=window_s)
        self._stopping = asyncio.Event()

    def add(self, message: AbstractIncomingMessage, event: Event) -> None:
        self._batches.add((message, event))

    async def run(self) -> None:
        """Write batches until `stop`; then flush what is held and return."""
        await self._batches.run(self._stopping)

    def stop(self) -> None:
        """End `run` once it has flushed what it holds (or, while MongoDB is away, given it back
        to RabbitMQ)."""
        self._stopping.set()

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
        await self._settle(batch, stored=stored)

    async def _settle(self, batch: list[Received], *, stored: bool) -> None:
        if not stored:
            for message, _ in batch:
                await self._acks.requeue(message)
            return
        for message, _ in batch:
            self._acks.ack(message)
        await self._acks.flush()  # mostly one multiple ack for the whole batch

    async def _apply_until_stored(self, events: list[Event]) -> bool:
        """Retry through a MongoDB outage; False if the writer is stopping meanwhile."""
        try:
            await until_stored(self._stopping, lambda: self._tasks.apply_many(events),
                               holding=f"events ({len(events)} in this batch)")
        except (StoreUnavailable, Stopped):
            return False
        return True
