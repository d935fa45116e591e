"""The projector archives dead letters through a MongoDB outage: it holds the letter while
MongoDB is away, gives it back to RabbitMQ if stopped meanwhile (without hanging), and archives
it once MongoDB is back. Nothing is lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest

from contracts import names
from contracts.registry import task_types
from infra.mongodb.client import mongo_client
from infra.mongodb.dead_letter_archive import MongoDeadLetterArchive
from infra.mongodb.task_store import TaskStore
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.system import SystemSettings
from projector.runtime import Projector
from tests.support.amqp import Queues
from tests.support.services import MongoServer
from tests.support.waiting import eventually


@pytest.fixture
def mongo() -> Iterator[MongoServer]:
    server = MongoServer()  # not started: MongoDB is away
    yield server
    server.close()


class RunningProjector:
    """A projector on the test's loop, against the private MongoDB."""

    def __init__(self, settings: SystemSettings, mongo: MongoServer) -> None:
        self.client = mongo_client(mongo.url, timeout_s=0.5)
        self.archive = MongoDeadLetterArchive(self.client, "outage")
        self._broker = Broker(settings.rabbitmq_url, build_topology(task_types()),
                              timeout_s=settings.publish_timeout_s,
                              name="integration projector (outage)", prefetch=16)
        self._projector = Projector(self._broker, TaskStore(self.client, "outage"),
                                    dead_letters=self.archive, process_name="outage/projector",
                                    batch_size=16, batch_window_s=0.002)
        self._stop = asyncio.Event()
        self._running: asyncio.Task[None] | None = None
        self.stopped = False

    async def start(self) -> None:
        await self._broker.channel()
        self._running = asyncio.create_task(self._projector.run(self._stop))

    async def stop(self) -> None:
        """Stop it as SIGTERM would; fails if it does not stop within 15 s."""
        assert self._running is not None
        self.stopped = True
        self._stop.set()
        try:
            await asyncio.wait_for(self._running, 15)
        finally:
            await self._broker.close()
            await self.client.close()


@pytest.fixture
async def projectors() -> AsyncIterator[list[RunningProjector]]:
    """Projectors to stop after the test, if the test did not."""
    started: list[RunningProjector] = []
    yield started
    for projector in started:
        if not projector.stopped:
            await projector.stop()


async def test_a_dead_letter_waits_out_a_mongodb_outage_and_is_archived_after_it(
    settings: SystemSettings, mongo: MongoServer, queues: Queues,
    projectors: list[RunningProjector], broker: Broker,
) -> None:
    # `broker` has declared the topology: the letter can be published before a projector runs.
    task_id = f"outage-{uuid.uuid4().hex}"
    # In this order: the letter is in projector.dead, then a projector starts and takes it.
    exchange = await queues.channel.get_exchange(names.dead_exchange("sleep"), ensure=False)
    await exchange.publish(aio_pika.Message(
        b'{"payload": {"seconds": 0}}', message_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={names.HEADER_DEAD_REASON: "permanent_failure"}), routing_key="")
    await eventually(lambda: _depth_is(queues, 1), what="the dead letter in projector.dead")
    await queues.purge(names.dead_queue("sleep"))  # the archive is what this test watches
    first = RunningProjector(settings, mongo)
    projectors.append(first)
    await first.start()
    await eventually(lambda: _depth_is(queues, 0), what="the projector to hold the dead letter")

    await first.stop()  # while MongoDB is away: the letter goes back to its queue

    await eventually(lambda: _depth_is(queues, 1), what="the letter back in projector.dead")
    mongo.start()
    second = RunningProjector(settings, mongo)
    projectors.append(second)
    await second.start()
    await eventually(lambda: second.archive.find(settings.default_tenant, task_id, 1), timeout_s=30,
                     what="the dead letter archived once MongoDB is back")
    assert await queues.depth(names.PROJECTOR_DEAD_QUEUE) == 0


async def _depth_is(queues: Queues, ready: int) -> bool:
    return await queues.depth(names.PROJECTOR_DEAD_QUEUE) == ready
