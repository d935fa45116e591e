"""What a worker process knows of cancellations: the recent cancellations of its type, in
memory, so checking a task before it runs costs no round trip.

A cancellation names a tenant and a task id: a task id is one tenant's, so another tenant's
message under the same id is not stopped by it. The worker holds at most `held` of them (the
newest; CANCELLATIONS_HELD): a cancellation matters only until its task's message comes by,
and one older than the newest `held` of its type is rarely still waiting.

At start-up it binds its own queue to `task-control` first and loads the stored cancellations
second: a cancel made in between arrives on the queue, so none falls in the gap. After that the
control messages keep it current, and a reload every `refresh_s` catches any the broker lost
(a reconnect, a control publish that was never confirmed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime, timedelta

from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError

from contracts import names
from contracts.control import CancelRequest
from contracts.log_fields import task_fields
from contracts.messages import utcnow
from infra.rabbitmq.broker import Broker, stop_consuming
from service.errors import StoreUnavailable
from service.ports import Cancellations

log = logging.getLogger(__name__)

# A reload asks for cancellations a little older than the newest one known: clocks of several
# gateways disagree a little, and a store write may land after a later one.
_CLOCK_SLACK = timedelta(seconds=30)
_RETRY_LOAD_S = 1.0


# A cancelled task: its tenant (None for a request made before tenants were recorded) and id.
Cancelled = tuple[str | None, str]
DEFAULT_HELD = 100_000


class CancelWatch:
    """The cancelled tasks of one type; `on_cancel` is told of each one newly learnt."""

    def __init__(
        self, task_type: str, store: Cancellations, *, lookback: timedelta,
        refresh_s: float = 30.0, held: int = DEFAULT_HELD,
    ) -> None:
        self._task_type = task_type
        self._store = store
        # As long as a task may wait in a queue (the tasks' retention): older ones are dropped.
        self._lookback = lookback
        self._refresh_s = refresh_s
        self._held = held
        # In the order learnt, which is by time but for the few a reload brings late.
        self._cancelled: dict[Cancelled, datetime] = {}
        self._loaded_up_to: datetime | None = None
        self.on_cancel: Callable[[CancelRequest], None] = lambda request: None

    def __len__(self) -> int:
        return len(self._cancelled)

    def is_cancelled(self, tenant: str, task_id: str) -> bool:
        """Whether `tenant`'s task `task_id` is cancelled."""
        return (tenant, task_id) in self._cancelled or (None, task_id) in self._cancelled

    def learn(self, request: CancelRequest) -> None:
        """Remember `request`; tell `on_cancel` if it is new."""
        key = (request.tenant, request.task_id)
        if request.task_type != self._task_type or key in self._cancelled:
            return
        self._cancelled[key] = request.at
        while len(self._cancelled) > self._held:
            # The oldest learnt goes first: bounded memory whatever the cancel rate.
            del self._cancelled[next(iter(self._cancelled))]
        log.info("task %s is cancelled", request.task_id, extra=task_fields(request.task_id))
        self.on_cancel(request)

    @asynccontextmanager
    async def watching(
        self, broker: Broker, process: str, stop: asyncio.Event
    ) -> AsyncIterator[bool]:
        """Listen on the control exchange, then load the stored cancellations (retrying while
        the store is away); yields False if `stop` came first. Refreshes in the background."""
        channel = await broker.channel()
        queue = await channel.declare_queue(
            names.control_queue(self._task_type, process), durable=False, exclusive=True,
            auto_delete=True)
        await queue.bind(names.CONTROL_EXCHANGE, names.control_routing_key(self._task_type))
        tag = await queue.consume(self._on_message, no_ack=True)
        refresher: asyncio.Task[None] | None = None
        try:
            loaded = await self._first_load(stop)
            if loaded:
                refresher = asyncio.create_task(self._refresh_periodically())
            yield loaded
        finally:
            if refresher is not None:
                refresher.cancel()
                await asyncio.gather(refresher, return_exceptions=True)
            await stop_consuming(queue, tag)

    async def _first_load(self, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            try:
                await self.reload()
            except StoreUnavailable as error:
                log.warning("cannot load cancellations yet (%s); no task starts until then",
                            error)
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _RETRY_LOAD_S)
            else:
                return True
        return False

    async def reload(self) -> None:
        """Learn the stored cancellations made since the last load (all recent ones at first)."""
        now = utcnow()
        oldest = now - self._lookback
        after = oldest if self._loaded_up_to is None else max(
            oldest, self._loaded_up_to - _CLOCK_SLACK)
        found = await self._store.since(self._task_type, after, limit=self._held)
        for request in found:
            self.learn(request)
        self._loaded_up_to = max([now, *(request.at for request in found)])
        self._forget_before(oldest)

    def _forget_before(self, oldest: datetime) -> None:
        for key in [key for key, at in self._cancelled.items() if at < oldest]:
            del self._cancelled[key]

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.reload()
            except StoreUnavailable as error:
                log.warning("cannot refresh cancellations (%s); trying again in %.0fs",
                            error, self._refresh_s)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            request = CancelRequest.model_validate_json(message.body)
        except ValidationError as error:
            log.warning("ignored an invalid control message (id %s): %s",
                        message.message_id, error.errors()[:1])
            return
        self.learn(request)
