"""Integration-tier fixtures: an ops-eye view of the session's vhost over a plain AMQP channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from tests.support.services import Backends


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
    """Reads queues the way ops do: depth, and one message looked up by its id."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel

    async def take(self, queue_name: str, message_id: str) -> SeenMessage | None:
        """Remove and return the message with this id; every other message is put back."""
        queue = await self._channel.get_queue(queue_name, ensure=False)
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
        queue = await self._channel.get_queue(queue_name, ensure=False)
        await queue.purge()


@pytest.fixture
async def amqp_channel(services: Backends) -> AsyncIterator[AbstractChannel]:
    """A plain aio-pika channel (not the project's Broker) on the session's vhost."""
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        yield await connection.channel()


@pytest.fixture
def queues(amqp_channel: AbstractChannel) -> Queues:
    return Queues(amqp_channel)
