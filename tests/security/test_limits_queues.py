"""Queue length limits on real RabbitMQ, in a vhost of this module's own with small limits set
as policies: a full task queue answers 503 with Retry-After and loses nothing accepted, an
outside publisher gets a nack, and a full dead-letter queue is an ERROR in the logs while the
task message goes back to its queue."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import DeliveryError
from pamqp.commands import Basic

from consumers.worker import Worker
from contracts import names
from contracts.registry import task_types
from contracts.statuses import Status
from gateway.app import create_app
from gateway.deps import connected_services
from infra.composition import connected_task_service
from infra.mongodb.task_store import TaskStore
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.nodes import vhost_of
from infra.rabbitmq.queue_limits import (
    DEAD_QUEUES_POLICY,
    TASK_QUEUES_POLICY,
    apply_policies,
    queue_policies,
)
from infra.rabbitmq.topology import build_topology, declare_on
from infra.runtime.settings.system import SystemSettings
from taskproc.context import JSON, TaskContext
from taskproc.failures import PermanentFailure
from taskproc.handler import TaskHandler
from taskproc.tasks.sleep import SLEEP, SleepPayload
from tests.support.amqp import Queues
from tests.support.keys import bearer, issue_key
from tests.support.services import local_vhost
from tests.support.waiting import eventually

TASK_QUEUE_LIMIT = 3
DEAD_QUEUE_LIMIT = 1
# A quorum queue refuses once it is over its limit, so it may hold one message more.
MOST_A_QUEUE_TAKES = 10


@pytest.fixture(scope="module")
def limited_vhost() -> Iterator[str]:
    with local_vhost() as (url, _):
        yield url


@pytest.fixture(scope="module")
async def limited(settings: SystemSettings, limited_vhost: str) -> SystemSettings:
    """SystemSettings on this module's vhost, its topology declared and small limits set."""
    small = settings.model_copy(update={
        "rabbitmq_url": limited_vhost, "queue_max_messages": TASK_QUEUE_LIMIT,
        "dead_queue_max_messages": DEAD_QUEUE_LIMIT,
    })
    await declare_on(small.rabbitmq_url, build_topology(task_types()))
    await apply_policies(small, queue_policies(task_types(), small))
    return small


@pytest.fixture
async def channel(limited: SystemSettings) -> AsyncIterator[AbstractChannel]:
    """A confirming channel on the limited vhost, as an outside publisher opens one."""
    connection = await aio_pika.connect(limited.rabbitmq_url)
    async with connection:
        yield await connection.channel(publisher_confirms=True)


@pytest.fixture
async def queues(channel: AbstractChannel) -> Queues:
    found = Queues(channel)
    for queue in (names.task_queue("sleep"), names.dead_queue("sleep"), names.QUARANTINE_QUEUE,
                  names.PROJECTOR_SUBMISSIONS_QUEUE, names.PROJECTOR_DEAD_QUEUE):
        await found.purge(queue)
    return found


async def drain(channel: AbstractChannel, queue_name: str) -> list[str]:
    """Take every message of the queue; their message ids."""
    queue = await channel.get_queue(queue_name, ensure=False)
    taken = []
    while (message := await queue.get(fail=False, timeout=10)) is not None:
        await message.ack()
        taken.append(message.message_id or "")
    return taken


async def test_a_full_task_queue_answers_503_and_loses_nothing_accepted(
    limited: SystemSettings, channel: AbstractChannel, queues: Queues, store: TaskStore,
) -> None:
    # No sleep worker runs on this vhost: what is accepted stays in tasks.sleep.
    accepted: list[str] = []
    refused: httpx.Response | None = None
    async with connected_task_service(limited) as connected:
        app = create_app(limited, services=connected_services(connected))
        key = await issue_key(limited.mongodb_url, limited.mongodb_database)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gateway", headers=bearer(key)) as http:
            # Fill: submit until the queue refuses.
            for _ in range(MOST_A_QUEUE_TAKES):
                response = await http.post("/tasks", json={"task_type": "sleep",
                                                            "payload": {"seconds": 0}})
                if response.status_code != 202:
                    refused = response
                    break
                accepted.append(response.json()["task_id"])

            # The gateway recorded what it queued: the projector was sent no copy.
            submitted = await drain(channel, names.PROJECTOR_SUBMISSIONS_QUEUE)
            # Drain, then submit again: there is room once more.
            taken = await drain(channel, names.task_queue("sleep"))
            again = await http.post("/tasks", json={"task_type": "sleep",
                                                    "payload": {"seconds": 0}})

    assert refused is not None, f"{len(accepted)} tasks accepted, none refused"
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"]
    assert refused.json()["detail"] == "the task queue is full; nothing was queued"
    assert TASK_QUEUE_LIMIT <= len(accepted) <= TASK_QUEUE_LIMIT + 1
    assert sorted(taken) == sorted(accepted)
    assert again.status_code == 202, again.text
    assert submitted == []
    # What was accepted is recorded `queued`; nothing was recorded of the refused task, of
    # which no copy went anywhere.
    states = [await store.get(task_id) for task_id in accepted]
    assert [state.status if state else None for state in states] == [Status.QUEUED] * len(
        accepted)


async def test_an_outside_publisher_gets_a_nack_from_a_full_task_queue(
    channel: AbstractChannel, queues: Queues,
) -> None:
    exchange = await channel.get_exchange(names.task_exchange("sleep"), ensure=False)
    confirmed: list[str] = []
    nacked: DeliveryError | None = None
    for n in range(MOST_A_QUEUE_TAKES):
        message = aio_pika.Message(b'{"payload": {"seconds": 0}}', message_id=f"outside-{n}",
                                   delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            await exchange.publish(message, routing_key="sleep")
        except DeliveryError as error:
            nacked = error
            break
        confirmed.append(message.message_id or "")

    taken = await drain(channel, names.task_queue("sleep"))

    assert nacked is not None, f"{len(confirmed)} messages confirmed, none refused"
    assert isinstance(nacked.frame, Basic.Nack)
    assert sorted(taken) == sorted(confirmed)


async def fill_dead_letter_queue(channel: AbstractChannel) -> int:
    """Publish to exchange tasks.sleep.dead until tasks.sleep.dead refuses; how many it took."""
    exchange = await channel.get_exchange(names.dead_exchange("sleep"), ensure=False)
    for n in range(MOST_A_QUEUE_TAKES):
        try:
            await exchange.publish(aio_pika.Message(b"{}", message_id=f"filler-{n}",
                                                    delivery_mode=2), routing_key="")
        except DeliveryError:
            return n
    raise AssertionError("tasks.sleep.dead never refused a message")


async def test_a_full_dead_letter_queue_is_an_error_log_and_the_task_is_requeued(
    limited: SystemSettings, channel: AbstractChannel, queues: Queues,
    caplog: pytest.LogCaptureFixture,
) -> None:
    held = await fill_dead_letter_queue(channel)
    task_id = f"doomed-{uuid.uuid4()}"
    stop = asyncio.Event()

    async def fail_for_good(payload: SleepPayload, context: TaskContext[None]) -> JSON:
        stop.set()  # one attempt is enough: stop consuming while it is carried out
        raise PermanentFailure("this task can never succeed")

    handler = TaskHandler(SLEEP, fail_for_good)
    broker = Broker(limited.rabbitmq_url, build_topology(task_types()),
                    timeout_s=limited.publish_timeout_s, name="limits worker")
    exchange = await channel.get_exchange(names.task_exchange("sleep"), ensure=False)
    await exchange.publish(aio_pika.Message(b'{"payload": {"seconds": 0}}', message_id=task_id,
                                            delivery_mode=2), routing_key="sleep")
    try:
        with caplog.at_level(logging.ERROR, logger="consumers.worker"):
            async with handler.started(limited) as run_task:
                worker = Worker(SLEEP, run_task, broker, process_name="limits/sleep",
                                shutdown_grace_s=10)
                await asyncio.wait_for(worker.run(stop), timeout=60)
    finally:
        await broker.close()

    alerts = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR and "tasks.sleep.dead is full" in r.getMessage()]
    assert alerts, [r.getMessage() for r in caplog.records]
    assert task_id in alerts[0]
    back = await eventually(lambda: queues.take(names.task_queue("sleep"), task_id),
                            timeout_s=20, what=f"{task_id} back in tasks.sleep")
    assert back.body == b'{"payload": {"seconds": 0}}'
    assert sorted(await drain(channel, names.dead_queue("sleep"))) == [
        f"filler-{n}" for n in range(held)]


class StopOnAlert(logging.Handler):
    """Sets `stop` at the first ERROR that names `queue_name`, and keeps what it saw."""

    def __init__(self, stop: asyncio.Event, queue_name: str) -> None:
        super().__init__(logging.ERROR)
        self.stop, self.queue_name = stop, queue_name
        self.alerts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if f"{self.queue_name} is full" in record.getMessage():
            self.alerts.append(record.getMessage())
            self.stop.set()


async def test_a_full_quarantine_queue_is_an_error_log_and_the_message_is_requeued(
    limited: SystemSettings, channel: AbstractChannel, queues: Queues,
) -> None:
    for n in range(MOST_A_QUEUE_TAKES):
        try:
            await channel.default_exchange.publish(aio_pika.Message(
                b"{}", message_id=f"filler-{n}", delivery_mode=2), names.QUARANTINE_QUEUE)
        except DeliveryError:
            break
    else:
        raise AssertionError("tasks.quarantine never refused a message")
    invalid_id = f"invalid-{uuid.uuid4()}"
    exchange = await channel.get_exchange(names.task_exchange("sleep"), ensure=False)
    await exchange.publish(aio_pika.Message(b"not json", message_id=invalid_id, delivery_mode=2),
                           routing_key="sleep")
    stop = asyncio.Event()
    alert = StopOnAlert(stop, names.QUARANTINE_QUEUE)
    logging.getLogger("infra.rabbitmq.publishing").addHandler(alert)
    broker = Broker(limited.rabbitmq_url, build_topology(task_types()),
                    timeout_s=limited.publish_timeout_s, name="limits worker")
    try:
        async with TaskHandler(SLEEP, never_called).started(limited) as run_task:
            worker = Worker(SLEEP, run_task, broker, process_name="limits/sleep",
                            shutdown_grace_s=10)
            await asyncio.wait_for(worker.run(stop), timeout=60)
    finally:
        logging.getLogger("infra.rabbitmq.publishing").removeHandler(alert)
        await broker.close()

    assert alert.alerts
    assert invalid_id in alert.alerts[0]
    back = await eventually(lambda: queues.take(names.task_queue("sleep"), invalid_id),
                            timeout_s=20, what=f"{invalid_id} back in tasks.sleep")
    assert back.body == b"not json"


async def never_called(payload: SleepPayload, context: TaskContext[None]) -> JSON:
    raise AssertionError("an invalid message reached the handler")


async def policies_on(settings: SystemSettings) -> dict[str, dict[str, Any]]:
    """The policies of the settings' vhost, by name, as the management API lists them."""
    vhost = quote(vhost_of(settings.rabbitmq_url), safe="")
    async with httpx.AsyncClient(base_url=settings.rabbitmq_management_url,
                                 auth=("guest", "guest")) as api:
        listed = (await api.get(f"/api/policies/{vhost}")).json()
        return {policy["name"]: policy for policy in listed}


async def delete_policies(settings: SystemSettings) -> None:
    vhost = quote(vhost_of(settings.rabbitmq_url), safe="")
    async with httpx.AsyncClient(base_url=settings.rabbitmq_management_url,
                                 auth=("guest", "guest")) as api:
        for name in (TASK_QUEUES_POLICY, DEAD_QUEUES_POLICY):
            await api.delete(f"/api/policies/{vhost}/{name}")


async def test_the_gateway_sets_the_limits_when_it_starts(limited: SystemSettings) -> None:
    await delete_policies(limited)
    try:
        async with connected_task_service(limited):
            found = await policies_on(limited)
    finally:
        await apply_policies(limited, queue_policies(task_types(), limited))

    assert found[TASK_QUEUES_POLICY]["definition"] == {
        "max-length": TASK_QUEUE_LIMIT, "max-length-bytes": limited.queue_max_bytes,
        "overflow": "reject-publish"}
    assert found[DEAD_QUEUES_POLICY]["definition"]["max-length"] == DEAD_QUEUE_LIMIT


async def test_without_the_management_api_the_gateway_warns_and_serves(
    limited: SystemSettings, channel: AbstractChannel, queues: Queues,
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = limited.model_copy(update={"rabbitmq_management_url": "http://127.0.0.1:1"})
    with caplog.at_level(logging.WARNING, logger="infra.rabbitmq.queue_limits"):
        async with connected_task_service(unreachable) as connected:
            app = create_app(unreachable, services=connected_services(connected))
            key = await issue_key(unreachable.mongodb_url, unreachable.mongodb_database)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://gateway", headers=bearer(key)) as http:
                response = await http.post("/tasks", json={"task_type": "sleep",
                                                           "payload": {"seconds": 0}})

    assert response.status_code == 202, response.text
    assert any("queue length limits not applied" in r.getMessage() for r in caplog.records)
    assert await drain(channel, names.task_queue("sleep")) == [response.json()["task_id"]]
