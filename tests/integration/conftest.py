"""Integration-tier fixtures: an ops-eye view of the session's vhost over a plain AMQP channel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from tests.support.amqp import Queues
from tests.support.services import Backends


@pytest.fixture
async def amqp_channel(services: Backends) -> AsyncIterator[AbstractChannel]:
    """A plain aio-pika channel (not the project's Broker) on the session's vhost."""
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        yield await connection.channel()


@pytest.fixture
def queues(amqp_channel: AbstractChannel) -> Queues:
    return Queues(amqp_channel)
