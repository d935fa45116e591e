"""Direct RabbitMQ access for fault tests: raw publishes, reading kept messages, rabbitmqctl."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from tests.support.services import rabbitmqctl

_MAX_DRAINED = 100_000


@dataclass(frozen=True)
class Kept:
    """A message read out of a queue: what ops would see in the console."""

    message_id: str | None
    body: bytes
    headers: dict[str, Any]
    exchange: str | None


@asynccontextmanager
async def raw_channel(url: str) -> AsyncIterator[AbstractChannel]:
    """A plain (not robust) confirming channel, as another service would open one."""
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel(publisher_confirms=True, on_return_raises=True)
    finally:
        await connection.close()


async def drain(url: str, queue_name: str) -> list[Kept]:
    """Take every message out of `queue_name` (acked: read-and-remove) and return them."""
    kept: list[Kept] = []
    async with raw_channel(url) as channel:
        queue = await channel.get_queue(queue_name)
        for _ in range(_MAX_DRAINED):
            message = await queue.get(fail=False, timeout=10)
            if message is None:
                break
            kept.append(Kept(message.message_id, message.body, dict(message.headers or {}),
                             message.exchange))
            await message.ack()
    return kept


async def ctl(*args: str) -> str:
    """`rabbitmqctl -q ARGS` off the event loop (it blocks for seconds)."""
    return await asyncio.to_thread(rabbitmqctl, *args)


async def queue_state(url: str, queue_name: str) -> tuple[int, int]:
    """(messages ready, consumers) of `queue_name` as they are now: a passive declare, which
    RabbitMQ answers from the queue itself. `rabbitmqctl list_queues` reports a quorum queue's
    counts as of its last stats tick, seconds old: a queue just filled can still read 0."""
    async with raw_channel(url) as channel:
        declared = await channel.declare_queue(queue_name, passive=True)
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0
