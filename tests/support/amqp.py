"""Looking at queues the way ops and other services do: over a plain aio-pika channel, not the
project's own Broker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage


@dataclass(frozen=True)
class SeenMessage:
    """A message read back from a queue, as the RabbitMQ console would show it."""

    body: bytes
    properties: Mapping[str, object]
    headers: dict[str, Any]

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value.decode() if isinstance(value, bytes) else value


class Queues:
    """Reads and writes queues the way ops and other services do."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel

    async def depth(self, queue_name: str) -> int:
        """Messages ready in the queue."""
        queue = await self.channel.declare_queue(queue_name, passive=True)
        count = queue.declaration_result.message_count
        return count or 0

    async def take(self, queue_name: str, message_id: str) -> SeenMessage | None:
        """Remove and return the message with this id; every other message is put back."""
        queue = await self.channel.get_queue(queue_name, ensure=False)
        held = []
        try:
            while (message := await queue.get(fail=False, timeout=10)) is not None:
                if message.message_id == message_id:
                    await message.ack()
                    return SeenMessage(message.body, message.info(), dict(message.headers))
                held.append(message)
            return None
        finally:
            for message in held:
                await message.nack(requeue=True)

    async def purge(self, queue_name: str) -> None:
        queue = await self.channel.get_queue(queue_name, ensure=False)
        await queue.purge()

    async def publish(self, exchange_name: str, message: aio_pika.Message) -> None:
        """Publish as another service would: straight to an exchange, confirmed."""
        exchange = await self.channel.get_exchange(exchange_name, ensure=False)
        await exchange.publish(message, routing_key="")


async def take_matching(
    channel: AbstractChannel, queue_name: str,
    matches: Callable[[AbstractIncomingMessage], bool],
) -> list[AbstractIncomingMessage]:
    """Take every message of the queue that `matches`; put every other one back."""
    queue = await channel.get_queue(queue_name, ensure=False)
    held, found = [], []
    while (message := await queue.get(fail=False, timeout=10)) is not None:
        if matches(message):
            await message.ack()
            found.append(message)
        else:
            held.append(message)
    for message in held:
        await message.nack(requeue=True)
    return found
