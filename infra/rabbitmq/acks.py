"""Acks that settle many deliveries at once: one `basic.ack(multiple=True)` for each run of
consecutive finished deliveries on a channel, instead of one ack each.

Why: on a quorum queue every ack is a command RabbitMQ appends to the queue's log. Consuming
6,000 messages on this machine cost RabbitMQ 0.074 ms of CPU per message with an ack each and
0.013 ms with one multiple ack per 100.

The rule that keeps it safe: a multiple ack settles every unsettled delivery on its channel up to
its tag, so it is sent only for a prefix of deliveries that are all finished. Deliveries are
tracked in the order they arrive (aio-pika hands them over in delivery-tag order), and a
finished delivery behind an unfinished one is acked on its own at the next flush but one, so a
long task never holds the prefetch window of the short ones behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

log = logging.getLogger(__name__)


@dataclass
class _Delivery:
    message: AbstractIncomingMessage
    finished: bool = False
    # Flushes this delivery has waited behind an unfinished one.
    waited: int = 0


@dataclass
class _Channel:
    # By delivery tag, in the order the deliveries arrived.
    deliveries: OrderedDict[int, _Delivery] = field(default_factory=OrderedDict)
    last_tag: int = 0
    in_order: bool = True


class Acks:
    """Collects the acks of the deliveries of one consumer process and sends them in runs.

    `track` each delivery as it arrives, before anything can await; then settle it exactly once,
    with `ack` (sent by a later flush) or `requeue` (sent now). A flush is due `window_s`
    after the first unsent ack, or at once when `flush_at` acks are waiting; `flush` sends
    them now (a process must call it before closing its connection).
    """

    def __init__(self, *, window_s: float, flush_at: int) -> None:
        self.window_s = window_s
        self.flush_at = flush_at
        self._channels: dict[object, _Channel] = {}
        self._waiting = 0  # acks not sent yet
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self._scheduled = False  # a flush task is on its way
        self._lock = asyncio.Lock()  # acks reach the socket in the order flushes take them

    def track(self, message: AbstractIncomingMessage) -> None:
        tag = message.delivery_tag
        if tag is None:
            return
        try:
            key = message.channel
        except ChannelInvalidStateError:
            return  # closed already: RabbitMQ redelivers it, whatever is done with it here
        channel = self._channels.setdefault(key, _Channel())
        if tag <= channel.last_tag and channel.in_order:
            # Out of delivery order after all: a multiple ack could settle an unfinished one.
            # Never seen; kept as a guard. This channel's acks go one by one from here on.
            log.warning("delivery %d arrived after %d; acking one by one", tag, channel.last_tag)
            channel.in_order = False
        channel.last_tag = max(tag, channel.last_tag)
        channel.deliveries[tag] = _Delivery(message)

    def ack(self, message: AbstractIncomingMessage) -> None:
        """Finished: the next flush acks it."""
        found = self._find(message)
        if found is None:
            # Not tracked (its channel's runs were given up after a failed ack): on its own.
            self._start(self._ack_alone(message))
            return
        delivery = found[1]
        delivery.finished = True
        self._waiting += 1
        if self._scheduled:
            return
        if self._waiting >= self.flush_at:
            if self._timer is not None:
                self._timer.cancel()
            self._flush_soon()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._flush_soon)

    async def requeue(self, message: AbstractIncomingMessage) -> None:
        """Give it back to its queue now (counts toward a quorum queue's delivery limit)."""
        found = self._find(message)
        if found is not None:
            channel, delivery = found
            del channel.deliveries[message.delivery_tag or 0]
            if delivery.finished:
                self._waiting -= 1
        try:
            await message.nack(requeue=True)
        except (AMQPError, ChannelInvalidStateError) as error:
            log.debug("nack failed (%r); RabbitMQ requeues unacked messages on close", error)

    async def flush(self) -> None:
        """Send every waiting ack now: runs as multiple acks, the rest one by one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        async with self._lock:
            for key, channel in list(self._channels.items()):
                await self._flush_channel(key, channel, final=True)

    def _flush_soon(self) -> None:
        self._timer = None
        self._scheduled = True
        self._start(self._flush_due())

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _ack_alone(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except (AMQPError, ChannelInvalidStateError, RuntimeError) as error:
            log.warning("could not ack a message (%r); RabbitMQ will redeliver it", error)

    async def _flush_due(self) -> None:
        async with self._lock:
            self._scheduled = False
            for key, channel in list(self._channels.items()):
                await self._flush_channel(key, channel, final=False)
        if self._waiting and self._timer is None and not self._scheduled:
            # Some wait behind an unfinished delivery: the next flush sends them on their own.
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._flush_soon)

    async def _flush_channel(self, key: object, channel: _Channel, *, final: bool) -> None:
        run: list[_Delivery] = []
        deliveries = channel.deliveries
        while deliveries:
            first = next(iter(deliveries.values()))
            if not first.finished:
                break
            run.append(deliveries.pop(first.message.delivery_tag or 0))
        # Finished ones behind an unfinished delivery: one flush's patience, then on their own.
        alone = [d for d in deliveries.values() if d.finished and (final or d.waited >= 1)]
        for delivery in deliveries.values():
            if delivery.finished:
                delivery.waited += 1
        for delivery in alone:
            del deliveries[delivery.message.delivery_tag or 0]
        self._waiting -= len(run) + len(alone)
        if not channel.in_order:
            run, alone = [], run + alone
        try:
            if run:
                await run[-1].message.ack(multiple=len(run) > 1)
            for delivery in alone:
                await delivery.message.ack()
        except (AMQPError, ChannelInvalidStateError, RuntimeError) as error:
            # The channel is gone: RabbitMQ redelivers what it held, and these with it.
            log.warning("could not ack %d message(s) (%r); RabbitMQ will redeliver them",
                        len(run) + len(alone), error)
            self._waiting -= sum(d.finished for d in deliveries.values())
            del self._channels[key]

    def _find(self, message: AbstractIncomingMessage) -> tuple[_Channel, _Delivery] | None:
        """The tracked delivery of `message`, and its channel's state."""
        for channel in self._channels.values():
            delivery = channel.deliveries.get(message.delivery_tag or 0)
            if delivery is not None and delivery.message is message:
                return channel, delivery
        return None
