"""The readiness probes the process starters use: a queue is ready only with the consumers asked
for, as RabbitMQ counts them; a missing queue has none; a process that exits fails the wait at
once, with its log."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from tests.support.readiness import NotReady, wait_for_consumers, wait_for_consumers_gone
from tests.support.services import Backends

SHORT_S = 1.0


@dataclass
class Stub:
    """Stands in for a started process: alive or not, with a log."""

    alive: bool = True
    name: str = "stub-worker"

    def running(self) -> bool:
        return self.alive

    def log(self) -> str:
        return "the stub's last words"


@pytest.fixture
async def queue(amqp_channel: AbstractChannel) -> AsyncIterator[AbstractQueue]:
    declared = await amqp_channel.declare_queue(f"readiness-{uuid.uuid4().hex[:8]}")
    yield declared
    await declared.delete(if_unused=False, if_empty=False)


async def ignore(message: AbstractIncomingMessage) -> None:
    raise AssertionError("no message is published in these tests")


async def test_a_queue_without_its_consumer_is_not_ready_and_the_failure_shows_the_log(
    services: Backends, queue: AbstractQueue,
) -> None:
    with pytest.raises(NotReady, match=r"(?s)stub-worker.*the stub's last words"):
        await asyncio.to_thread(wait_for_consumers, Stub(), services.rabbitmq_url,
                                {queue.name: 1}, SHORT_S)


async def test_a_queue_is_ready_once_it_has_as_many_consumers_as_asked(
    services: Backends, queue: AbstractQueue,
) -> None:
    await queue.consume(ignore)

    await asyncio.to_thread(wait_for_consumers, Stub(), services.rabbitmq_url, {queue.name: 1})
    with pytest.raises(NotReady):
        await asyncio.to_thread(wait_for_consumers, Stub(), services.rabbitmq_url,
                                {queue.name: 2}, SHORT_S)


async def test_a_consumer_still_there_holds_up_the_next_start_until_it_is_gone(
    services: Backends, queue: AbstractQueue,
) -> None:
    tag = await queue.consume(ignore)
    with pytest.raises(NotReady):
        await asyncio.to_thread(wait_for_consumers_gone, services.rabbitmq_url, {queue.name: 0},
                                SHORT_S)

    await queue.cancel(tag)

    await asyncio.to_thread(wait_for_consumers_gone, services.rabbitmq_url, {queue.name: 0})


async def test_a_missing_queue_has_no_consumers(services: Backends) -> None:
    missing = f"readiness-missing-{uuid.uuid4().hex[:8]}"

    await asyncio.to_thread(wait_for_consumers_gone, services.rabbitmq_url, {missing: 0})
    with pytest.raises(NotReady, match=r"'readiness-missing-[0-9a-f]+': 0"):
        await asyncio.to_thread(wait_for_consumers, Stub(), services.rabbitmq_url,
                                {missing: 1}, SHORT_S)


async def test_a_process_that_exits_fails_the_wait_at_once(services: Backends) -> None:
    with pytest.raises(NotReady, match="exited"):
        await asyncio.to_thread(wait_for_consumers, Stub(alive=False), services.rabbitmq_url,
                                {"tasks.sleep": 1}, 30.0)
