"""The security suite runs the HTTP rules on the fast tier's in-process gateway (its fixtures
are brought in here) and the store, CLI and round trip on the real services."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from infra.runtime.settings.system import SystemSettings
from tests.fast.conftest import client_for, fakes, gateway, http, issue

__all__ = ["client_for", "fakes", "gateway", "http", "issue"]


@pytest.fixture
async def amqp_channel(settings: SystemSettings) -> AsyncIterator[AbstractChannel]:
    """A plain confirming channel on the session's vhost, as an outside publisher opens one."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        yield await connection.channel(publisher_confirms=True)
