"""Integration-tier fixtures: an ops-eye view of the session's vhost over a plain AMQP channel,
and a MongoDB client of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from pymongo import AsyncMongoClient

from infra.mongodb.client import mongo_client
from infra.runtime.settings.system import SystemSettings
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


@pytest.fixture
async def client(settings: SystemSettings) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A MongoDB client as the services make theirs, closed after the test."""
    connection = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    yield connection
    await connection.close()
