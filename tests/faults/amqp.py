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


async def queue_depth(vhost: str, queue_name: str) -> int:
    """Messages in `queue_name`, ready and unacknowledged together."""
    table = await ctl("list_queues", "-p", vhost, "name", "messages")
    for line in table.splitlines():
        name, _, count = line.partition("\t")
        if name == queue_name and count.strip().isdigit():
            return int(count)
    raise LookupError(f"no queue {queue_name!r} in vhost {vhost!r}")
