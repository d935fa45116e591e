"""Replay by id finds the task's own dead letter without holding `tasks.<type>.dead`: concurrent
replays of different tasks all succeed, one of two replays of the same task wins, the cost does
not grow with the queue's depth, and a later CLI replay does not run the task a second time."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from pymongo import AsyncMongoClient

from contracts import names
from service.auth import DEFAULT_TENANT
from tests.e2e.conftest import Api
from tests.e2e.test_replay import failed_task, taskproc
from tests.support.amqp import Queues
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends
from tests.support.waiting import eventually

DEAD_QUEUE = names.dead_queue("webhook")


@pytest.fixture
async def archive(services: Backends) -> AsyncIterator[ArchiveView]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        services.mongodb_url, serverSelectionTimeoutMS=5000)
    yield ArchiveView(client, services.mongodb_database)
    await client.close()


class ArchiveView:
    """The `dead_letters` collection as ops would query it."""

    def __init__(self, client: AsyncMongoClient[dict[str, object]], database: str) -> None:
        self._letters = client[database]["dead_letters"]

    async def holds(self, *letter_ids: str) -> bool:
        found = await self._letters.count_documents({"_id": {"$in": list(letter_ids)}})
        return found == len(letter_ids)


def letter_ids(task_ids: list[str]) -> list[str]:
    """The archive's keys of the first run's letters of the default tenant's tasks."""
    return [f"{DEFAULT_TENANT}/{task_id}/1" for task_id in task_ids]


async def settle(api: Api, receiver: WebhookReceiver) -> None:
    """Run one more webhook task to its end: whatever was queued before it has been taken."""
    path = f"/replay/sentinel/{uuid.uuid4().hex}"
    receiver.answers[path] = [200]
    await api.wait_for(await api.submit("webhook", {"url": receiver.url(path)}), "succeeded")


async def archived_failures(api: Api, receiver: WebhookReceiver, archive: ArchiveView,
                            count: int) -> list[str]:
    """`count` failed webhook tasks whose dead letters the projector has archived."""
    task_ids = [task_id for task_id, _ in
                await asyncio.gather(*(failed_task(api, receiver) for _ in range(count)))]
    await eventually(lambda: archive.holds(*letter_ids(task_ids)),
                     what="the projector to archive the dead letters")
    return task_ids


async def bury(queues: Queues, count: int) -> list[str]:
    """`count` dead letters of other tasks in `tasks.webhook.dead`, as a worker leaves them."""
    exchange = await queues.channel.get_exchange(names.dead_exchange("webhook"), ensure=False)
    task_ids = [f"buried-{uuid.uuid4().hex}" for _ in range(count)]
    for task_id in task_ids:
        await exchange.publish(aio_pika.Message(
            b'{"payload": {"url": "http://127.0.0.1:9/never"}}', message_id=task_id,
            content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={names.HEADER_DEAD_REASON: "permanent_failure", names.HEADER_RUN: 1,
                     names.HEADER_LAST_ERROR: "HTTPStatus: answered 410"}), routing_key="")
    return task_ids


async def test_concurrent_replays_of_different_tasks_all_run_again(
    api: Api, webhook_receiver: WebhookReceiver, archive: ArchiveView
) -> None:
    task_ids = await archived_failures(api, webhook_receiver, archive, 4)

    answers = await asyncio.gather(*(api.client.post(f"/tasks/{task_id}/retry")
                                     for task_id in task_ids))

    assert [answer.status_code for answer in answers] == [202] * 4, [a.text for a in answers]
    for task_id in task_ids:
        done = await api.wait_for(task_id, "succeeded")
        assert (done["run"], done["attempt"]) == (2, 1)
        assert webhook_receiver.by_task[task_id] == 2


async def test_of_two_concurrent_replays_of_one_task_exactly_one_runs_it(
    api: Api, webhook_receiver: WebhookReceiver, archive: ArchiveView
) -> None:
    [task_id] = await archived_failures(api, webhook_receiver, archive, 1)

    answers = await asyncio.gather(*(api.client.post(f"/tasks/{task_id}/retry")
                                     for _ in range(2)))

    assert sorted(answer.status_code for answer in answers) == [202, 409]
    await api.wait_for(task_id, "succeeded")
    await settle(api, webhook_receiver)
    done = await api.wait_for(task_id, "succeeded")
    assert webhook_receiver.by_task[task_id] == 2  # the failed run and one replay, not two
    assert [(h["run"], h["status"]) for h in done["history"]].count((2, "running")) == 1


async def test_replay_by_id_does_not_need_the_dead_letter_queue(
    api: Api, webhook_receiver: WebhookReceiver, archive: ArchiveView, queues: Queues,
    services: Backends,
) -> None:
    [task_id] = await archived_failures(api, webhook_receiver, archive, 1)
    # Another consumer (ops browsing the queue) holds every message of the dead-letter queue:
    # a replay that scanned the queue would find nothing.
    held: list[AbstractIncomingMessage] = []
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(DEAD_QUEUE, ensure=False)
        async def hold(message: AbstractIncomingMessage) -> None:
            held.append(message)

        await queue.consume(hold)
        await eventually(lambda: _all_held(queues, held), what="every dead letter held")

        retried = await api.client.post(f"/tasks/{task_id}/retry")

        assert retried.status_code == 202, retried.text
        done = await api.wait_for(task_id, "succeeded")
        assert done["run"] == 2
        assert await queues.depth(DEAD_QUEUE) == 0  # still all held: nothing was taken


async def _all_held(queues: Queues, held: list[AbstractIncomingMessage]) -> bool:
    return bool(held) and await queues.depth(DEAD_QUEUE) == 0


async def test_the_time_of_a_replay_does_not_grow_with_the_queue_depth(
    api: Api, webhook_receiver: WebhookReceiver, archive: ArchiveView, queues: Queues
) -> None:
    await queues.purge(DEAD_QUEUE)
    shallow_ids = await archived_failures(api, webhook_receiver, archive, 3)
    await bury(queues, 5)
    shallow = await _replay_times(api, shallow_ids)
    deep_ids = await archived_failures(api, webhook_receiver, archive, 3)
    buried = await bury(queues, 500)
    await eventually(lambda: archive.holds(*letter_ids(buried)),
                     timeout_s=60, what="the projector to archive the buried letters")
    assert await queues.depth(DEAD_QUEUE) >= 500
    deep = await _replay_times(api, deep_ids)

    # Scanning 500 messages costs several times a replay's own work; a generous bound.
    assert statistics.median(deep) < 3 * statistics.median(shallow) + 0.05, (deep, shallow)
    for task_id in [*deep_ids, *shallow_ids]:
        assert (await api.wait_for(task_id, "succeeded"))["run"] == 2


async def _replay_times(api: Api, task_ids: list[str]) -> list[float]:
    times = []
    for task_id in task_ids:
        started = time.perf_counter()
        answer = await api.client.post(f"/tasks/{task_id}/retry")
        times.append(time.perf_counter() - started)
        assert answer.status_code == 202, answer.text
    return times


async def test_a_cli_replay_after_an_http_replay_drops_the_stale_copy(
    api: Api, webhook_receiver: WebhookReceiver, archive: ArchiveView, queues: Queues,
    services: Backends,
) -> None:
    [task_id] = await archived_failures(api, webhook_receiver, archive, 1)
    assert (await api.client.post(f"/tasks/{task_id}/retry")).status_code == 202
    await api.wait_for(task_id, "succeeded")

    listed = await asyncio.to_thread(taskproc, services, "dead-letters", "list", "webhook")
    replayed = await asyncio.to_thread(
        taskproc, services, "dead-letters", "replay", "webhook", task_id)

    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(task_id)]
    assert "replayed" in line
    assert replayed.returncode == 0, replayed.stderr
    assert "0 replayed from tasks.webhook.dead" in replayed.stderr
    assert f"dropped stale copy: {task_id}" in replayed.stderr
    assert await queues.take(DEAD_QUEUE, task_id) is None  # the stale copy is gone
    await settle(api, webhook_receiver)
    done = await api.wait_for(task_id, "succeeded")
    assert done["run"] == 2
    assert webhook_receiver.by_task[task_id] == 2


async def test_a_task_dead_at_its_delivery_limit_is_archived_and_replays_by_id(
    api: Api, webhook_receiver: WebhookReceiver, queues: Queues
) -> None:
    # As RabbitMQ leaves a message that crashed its consumer too often: no reason header of
    # ours, its own `x-death`.
    task_id = f"poison-{uuid.uuid4().hex}"
    path = f"/replay/{task_id}"
    webhook_receiver.answers[path] = [200]
    exchange = await queues.channel.get_exchange(names.dead_exchange("webhook"), ensure=False)
    await exchange.publish(aio_pika.Message(
        f'{{"payload": {{"url": "{webhook_receiver.url(path)}"}}}}'.encode(),
        message_id=task_id, content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        headers={names.HEADER_ATTEMPT: 1, names.HEADER_RUN: 1,
                 "x-death": [{"reason": "delivery_limit", "queue": "tasks.webhook",
                              "count": 1}]}), routing_key="")
    await api.wait_for(task_id, "dead")
    await queues.purge(DEAD_QUEUE)  # only the archive has the letter now

    retried = await api.client.post(f"/tasks/{task_id}/retry")

    assert retried.status_code == 202, retried.text
    done = await api.wait_for(task_id, "succeeded")
    assert (done["run"], done["attempt"]) == (2, 1)
    assert webhook_receiver.by_task[task_id] == 1
