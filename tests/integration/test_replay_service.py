"""The replay use case on the real adapters (RabbitMQ, MongoDB): replay by id reads the archive,
never the dead-letter queue; a letter that predates the archive is still found in the queue; a
claim is taken once, and a claim abandoned before its publish is taken over."""

from __future__ import annotations

import dataclasses
import decimal
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue

from contracts import names
from contracts.messages import ErrorInfo, StatusEvent, utcnow
from contracts.registry import task_types
from contracts.statuses import Status
from infra.composition import replay_ports
from infra.mongodb.client import mongo_client
from infra.mongodb.dead_letter_archive import MAX_KEPT_BODY, MongoDeadLetterArchive
from infra.mongodb.task_store import TaskStore
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.system import SystemSettings
from service.auth import DEFAULT_TENANT
from service.dead_letters import DeadLetter, LetterPublisher, ReplayClaim
from service.errors import NotRetryable
from service.replay import Outcome, ReplayPorts, replay_letter, replay_queue, replay_task
from tests.support.amqp import Queues

# Sleep tasks: no consumer of this type runs in the integration tier, so a replayed copy waits
# in `tasks.sleep` for the test to read it.
TYPE = "sleep"


class WatchedBroker(Broker):
    """The project's Broker, noting every queue it opens (reading one needs opening it)."""

    opened: list[str]

    async def queue(self, name: str) -> AbstractQueue:
        self.opened.append(name)
        return await super().queue(name)


@pytest.fixture
async def watched(settings: SystemSettings) -> AsyncIterator[WatchedBroker]:
    broker = WatchedBroker(settings.rabbitmq_url, build_topology(task_types()),
                           timeout_s=settings.publish_timeout_s, name="tests (watched)")
    broker.opened = []
    await broker.channel()
    yield broker
    await broker.close()


@pytest.fixture
async def archive(settings: SystemSettings) -> AsyncIterator[MongoDeadLetterArchive]:
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    yield MongoDeadLetterArchive(client, settings.mongodb_database)
    await client.close()


@pytest.fixture
def ports(settings: SystemSettings, watched: WatchedBroker, store: TaskStore,
          archive: MongoDeadLetterArchive) -> ReplayPorts:
    return replay_ports(settings, watched, store, archive, replayed_by="integration")


def a_letter(task_id: str, *, run: int = 1, body: bytes | None = None) -> DeadLetter:
    return DeadLetter(
        task_id=task_id, task_type=TYPE, run=run, attempt=3, reason="max_attempts_exhausted",
        last_error="TimeoutError: too slow", dead_at=utcnow(),
        body=body if body is not None else json.dumps({"payload": {"seconds": 0}}).encode(),
        properties={"message_id": task_id, "type": TYPE, "app_id": "integration",
                    "timestamp": utcnow(), "correlation_id": task_id},
        headers={names.HEADER_ATTEMPT: 3, names.HEADER_RUN: run, names.HEADER_SOURCE: "http",
                 names.HEADER_DEAD_REASON: "max_attempts_exhausted",
                 names.HEADER_LAST_ERROR: "TimeoutError: too slow",
                 "x-death": [{"reason": "rejected", "count": 1}]},
    )


async def a_failed_task(store: TaskStore, *, run: int = 1) -> str:
    """A task the read model shows `failed` in `run`, that ended a minute ago."""
    task_id = f"replay-{uuid.uuid4().hex}"
    ended = utcnow() - timedelta(minutes=1)
    for status in (Status.QUEUED, Status.RUNNING, Status.FAILED):
        await store.apply(StatusEvent(
            task_id=task_id, task_type=TYPE, status=status, attempt=0 if status is Status.QUEUED
            else 1, run=run, worker="integration", at=ended,
            error=ErrorInfo(type="X", message="y") if status is Status.FAILED else None))
    return task_id


async def test_replay_by_id_publishes_the_archived_letter_without_opening_the_dead_queue(
    ports: ReplayPorts, watched: WatchedBroker, store: TaskStore,
    archive: MongoDeadLetterArchive, queues: Queues,
) -> None:
    task_id = await a_failed_task(store)
    await archive.keep(a_letter(task_id))

    await replay_task(ports, task_id)

    assert names.dead_queue(TYPE) not in watched.opened
    copy = await queues.take(names.task_queue(TYPE), task_id)
    assert copy is not None
    assert (copy.headers[names.HEADER_ATTEMPT], copy.headers[names.HEADER_RUN]) == (1, 2)
    assert names.HEADER_DEAD_REASON not in copy.headers
    assert "x-death" not in copy.headers
    assert copy.header(names.HEADER_SOURCE) == "http"
    assert json.loads(copy.body) == {"payload": {"seconds": 0}}
    state = await store.get(task_id)
    assert state is not None
    assert (state.status, state.run) == (Status.QUEUED, 2)
    kept = await archive.find(DEFAULT_TENANT, task_id, 1)
    assert kept is not None
    assert kept.replayed


async def test_a_letter_that_predates_the_archive_is_found_in_the_queue_and_archived(
    ports: ReplayPorts, watched: WatchedBroker, store: TaskStore,
    archive: MongoDeadLetterArchive, queues: Queues,
) -> None:
    task_id = await a_failed_task(store)
    await queues.channel.default_exchange.publish(aio_pika.Message(
        b'{"payload": {"seconds": 0}}', message_id=task_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={names.HEADER_DEAD_REASON: "permanent_failure"}),
        routing_key=names.dead_queue(TYPE))

    await replay_task(ports, task_id)

    assert names.dead_queue(TYPE) in watched.opened
    assert await queues.take(names.task_queue(TYPE), task_id) is not None
    kept = await archive.find(DEFAULT_TENANT, task_id, 1)
    assert kept is not None
    assert kept.replayed
    assert kept.reason == "permanent_failure"


async def test_a_claim_abandoned_before_its_publish_is_taken_over_and_a_live_one_is_not(
    ports: ReplayPorts, store: TaskStore, archive: MongoDeadLetterArchive, queues: Queues,
) -> None:
    abandoned, live = await a_failed_task(store), await a_failed_task(store)
    for task_id, age in ((abandoned, timedelta(hours=1)), (live, timedelta(seconds=1))):
        await archive.keep(a_letter(task_id))
        letter = await archive.find(DEFAULT_TENANT, task_id, 1)
        assert letter is not None
        assert await archive.claim(letter, ReplayClaim("crashed", utcnow() - age))

    await replay_task(ports, abandoned)
    with pytest.raises(NotRetryable, match="being replayed already"):
        await replay_task(ports, live)

    assert await queues.take(names.task_queue(TYPE), abandoned) is not None
    assert await queues.take(names.task_queue(TYPE), live) is None


async def test_a_queue_copy_of_a_replayed_run_or_of_an_earlier_run_is_stale(
    ports: ReplayPorts, store: TaskStore, archive: MongoDeadLetterArchive, queues: Queues,
) -> None:
    replayed = await a_failed_task(store)
    await archive.keep(a_letter(replayed))
    await replay_task(ports, replayed)
    assert await queues.take(names.task_queue(TYPE), replayed) is not None
    moved_on = await a_failed_task(store, run=3)

    outcomes = [await replay_letter(ports, a_letter(replayed)),
                await replay_letter(ports, a_letter(moved_on, run=2))]

    assert outcomes == [Outcome.STALE, Outcome.STALE]
    assert await queues.take(names.task_queue(TYPE), replayed) is None
    assert await queues.take(names.task_queue(TYPE), moved_on) is None


async def test_the_archive_keeps_the_first_letter_of_a_run_and_any_header_value(
    archive: MongoDeadLetterArchive,
) -> None:
    task_id = f"keep-{uuid.uuid4().hex}"
    first = a_letter(task_id)
    odd = {"x-price": decimal.Decimal("1.50"), "x-bytes": b"\x00\xff", "a.b": {"c": [1, 2]},
           "x-huge": 2**70}

    await archive.keep(dataclasses.replace(first, headers={**first.headers, **odd}))
    await archive.keep(dataclasses.replace(first, attempt=9))

    kept = await archive.find(DEFAULT_TENANT, task_id, 1)
    assert kept is not None
    assert kept.attempt == 3
    assert kept.body == first.body
    assert kept.headers["x-price"] == "1.50"
    assert kept.headers["x-bytes"] == b"\x00\xff"
    assert kept.headers["a.b"] == {"c": [1, 2]}
    assert kept.headers["x-huge"] == str(2**70)
    assert kept.properties["message_id"] == task_id
    assert not kept.replayed


async def test_a_letter_too_large_to_archive_is_replayed_only_from_the_queue(
    ports: ReplayPorts, store: TaskStore, archive: MongoDeadLetterArchive,
) -> None:
    task_id = await a_failed_task(store)
    await archive.keep(a_letter(task_id, body=b" " * (MAX_KEPT_BODY + 1)))

    with pytest.raises(NotRetryable, match="taskproc dead-letters replay"):
        await replay_task(ports, task_id)


@dataclass
class FailingAtOnce:
    """The real letter publisher, then a worker whose task dies at once (up to `deaths` times):
    the copy's own dead letter lands in the dead queue, archived and `failed` in the read model,
    while the replay command is still reading that queue."""

    publisher: LetterPublisher
    store: TaskStore
    archive: MongoDeadLetterArchive
    queues: Queues
    deaths: int
    sent: list[DeadLetter] = field(default_factory=list)

    async def republish(self, letter: DeadLetter) -> None:
        await self.publisher.republish(letter)
        self.sent.append(letter)
        if len(self.sent) > self.deaths:
            return
        await self.queues.take(names.task_queue(TYPE), letter.task_id)
        died = dataclasses.replace(letter, run=letter.run + 1, attempt=1, replay=None)
        for status in (Status.RUNNING, Status.FAILED):
            await self.store.apply(StatusEvent(
                task_id=died.task_id, task_type=TYPE, status=status, attempt=1, run=died.run,
                worker="integration",
                error=ErrorInfo(type="X", message="y") if status is Status.FAILED else None))
        await self.archive.keep(died)
        await dead_letter(self.queues, died)


async def dead_letter(queues: Queues, letter: DeadLetter) -> None:
    """Put `letter` in its dead queue as the broker would have."""
    assert letter.body is not None
    await queues.channel.default_exchange.publish(aio_pika.Message(
        letter.body, message_id=letter.task_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={**{k: v for k, v in letter.headers.items() if k != "x-death"},
                 names.HEADER_RUN: letter.run, names.HEADER_ATTEMPT: letter.attempt}),
        routing_key=names.dead_queue(TYPE))


async def test_one_replay_command_replays_each_letter_once_though_the_task_dies_again_at_once(
    ports: ReplayPorts, store: TaskStore, archive: MongoDeadLetterArchive, queues: Queues,
) -> None:
    task_id = await a_failed_task(store)
    letter = a_letter(task_id)
    await archive.keep(letter)
    await dead_letter(queues, letter)
    # Letters of other tasks behind it: the scan is still reading when the copy dies again.
    for _ in range(5):
        await dead_letter(queues, a_letter(f"other-{uuid.uuid4().hex}"))
    worker = FailingAtOnce(ports.publisher, store, archive, queues, deaths=5)

    done = await replay_queue(dataclasses.replace(ports, publisher=worker), TYPE,
                              frozenset({task_id}))

    assert [(sent.task_id, sent.run) for sent in worker.sent] == [(task_id, 1)]
    assert [(replayed.task_id, replayed.run) for replayed in done.replayed] == [(task_id, 1)]
    state = await store.get(task_id)
    assert state is not None
    assert (state.status, state.run) == (Status.FAILED, 2)
    # The new run's letter stays for inspection (and for the next command).
    assert await queues.take(names.dead_queue(TYPE), task_id) is not None

