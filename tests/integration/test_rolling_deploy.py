"""A rolling deploy that adds a task type loses nothing, whichever process learns it first.
Each test has a vhost of its own, so a queue's depth is this test's alone.

- The gateway knows the type before any worker runs it: the task waits in `tasks.<type>`, and
  runs when a worker starts.
- The projector does not know a type that newer processes declared: it still records that
  type's submissions, follow-ups, status events and dead letters (it reads the type from the
  exchange's name or the routing key, not from its own registry)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import httpx
import pytest

from consumers.bootstrap import run_worker
from contracts import names
from contracts.messages import StatusEvent, utcnow
from contracts.projection import TaskState
from contracts.registry import get_spec, task_types
from contracts.statuses import Status
from gateway.app import create_app
from infra.composition import mongo_adapters
from infra.rabbitmq.topology import build_topology, declare_on
from infra.runtime.settings.system import SystemSettings
from projector.bootstrap import run_projector
from service.dead_letters import letter_id
from tests.support.keys import bearer
from tests.support.services import Backends, local_vhost
from tests.support.waiting import eventually

NEW_TYPE = "thumbnail"  # a type this process (and so its projector) has not registered


@pytest.fixture
def own_settings(services: Backends, settings: SystemSettings) -> Iterator[SystemSettings]:
    """The session's settings on a vhost of the test's own (the session's MongoDB database)."""
    if not services.local_broker:
        pytest.skip("needs rabbitmqctl on the local broker for a vhost of the test's own")
    with local_vhost() as (url, _):
        yield settings.model_copy(update={"rabbitmq_url": url, "metrics_port": 0,
                                          "process_name": f"rolling-{uuid.uuid4().hex[:6]}"})


@pytest.fixture
async def projector(own_settings: SystemSettings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    running = asyncio.create_task(run_projector(own_settings, stop=stop))
    yield
    stop.set()
    await running


async def depth(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def test_a_task_the_gateway_accepts_before_any_worker_runs_its_type_waits_and_runs(
    own_settings: SystemSettings, projector: None, api_key: str,
) -> None:
    app = create_app(own_settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=10,
            headers=bearer(api_key)) as http:
        answer = await http.post("/tasks", json={"task_type": "sleep",
                                                 "payload": {"seconds": 0}})
        assert answer.status_code == 202, answer.text
        task_id = answer.json()["task_id"]

        # No worker of the type: the task waits in its queue, `queued`.
        assert await depth(own_settings.rabbitmq_url, names.task_queue("sleep")) == 1
        assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "queued"

        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(own_settings, "sleep", stop=stop))
        try:
            async def succeeded() -> dict[str, Any] | None:
                found: dict[str, Any] = (await http.get(f"/tasks/{task_id}")).json()
                return found if found["status"] == "succeeded" else None

            await eventually(succeeded, timeout_s=30, what=f"{task_id} succeeded")
        finally:
            stop.set()
            await worker
    assert await depth(own_settings.rabbitmq_url, names.task_queue("sleep")) == 0


@pytest.fixture
async def newer_topology(own_settings: SystemSettings) -> None:
    """What a newer version's processes declare: the topology with a type this one lacks."""
    newer = dataclasses.replace(get_spec("sleep"), name=NEW_TYPE)
    await declare_on(own_settings.rabbitmq_url, build_topology((*task_types(), newer)))


async def read_model_state(settings: SystemSettings, task_id: str, status: Status
                           ) -> TaskState:
    mongo = mongo_adapters(settings)
    try:
        async def reached() -> TaskState | None:
            state = await mongo.tasks.get(task_id)
            return state if state is not None and state.status is status else None

        return await eventually(reached, timeout_s=30, what=f"{task_id} {status}")
    finally:
        await mongo.close()


async def publish(url: str, exchange: str, body: dict[str, Any], *, routing_key: str = "",
                  message_id: str, message_type: str | None = None,
                  headers: dict[str, Any] | None = None) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(json.dumps(body).encode(), message_id=message_id,
                                              type=message_type, headers=headers,
                                              content_type="application/json"),
                             routing_key=routing_key, mandatory=True)


async def test_the_projector_records_a_type_it_does_not_know(
    own_settings: SystemSettings, newer_topology: None, projector: None,
) -> None:
    task_id = f"rolling-{uuid.uuid4()}"
    url = own_settings.rabbitmq_url

    await publish(url, names.task_exchange(NEW_TYPE), {"payload": {"seconds": 0}},
                  routing_key=NEW_TYPE, message_id=task_id)
    queued = await read_model_state(own_settings, task_id, Status.QUEUED)
    event = StatusEvent(task_id=task_id, task_type=NEW_TYPE, status=Status.SUCCEEDED,
                        attempt=1, worker=f"newer/{NEW_TYPE}", at=utcnow(), result={"ok": 1},
                        tenant=queued.tenant)
    await publish(url, names.EVENTS_EXCHANGE, event.model_dump(mode="json", exclude_none=True),
                  routing_key=names.event_routing_key(NEW_TYPE, "succeeded"),
                  message_id=task_id + "/succeeded", message_type="status_event")
    succeeded = await read_model_state(own_settings, task_id, Status.SUCCEEDED)

    assert queued.task_type == succeeded.task_type == NEW_TYPE
    assert [entry.status for entry in succeeded.history] == [Status.QUEUED, Status.SUCCEEDED]
    # The task also waits in its queue for a worker of the type.
    assert await depth(url, names.task_queue(NEW_TYPE)) == 1


async def test_the_projector_keeps_a_dead_letter_of_a_type_it_does_not_know(
    own_settings: SystemSettings, newer_topology: None, projector: None,
) -> None:
    task_id = f"rolling-dead-{uuid.uuid4()}"

    # As RabbitMQ dead-letters a message that reached its delivery limit.
    await publish(own_settings.rabbitmq_url, names.dead_exchange(NEW_TYPE),
                  {"payload": {"seconds": 0}}, message_id=task_id)

    dead = await read_model_state(own_settings, task_id, Status.DEAD)
    assert dead.task_type == NEW_TYPE
    mongo = mongo_adapters(own_settings)
    try:
        archived = await mongo.dead_letters.find_many([letter_id(dead.tenant or "", task_id, 1)])
    finally:
        await mongo.close()
    assert [letter.task_type for letter in archived.values()] == [NEW_TYPE]


async def test_the_projector_records_a_follow_up_of_a_type_it_does_not_know(
    own_settings: SystemSettings, newer_topology: None, projector: None,
) -> None:
    # A newer `sleep` worker hands a step's follow-up of the new type on: the projector reads
    # the type from the routing key (`<parent type>.<its type>`), not from its registry.
    url = own_settings.rabbitmq_url
    parent_id, follow_up_id = f"rolling-parent-{uuid.uuid4()}", f"rolling-next-{uuid.uuid4()}"
    await publish(url, names.task_exchange("sleep"), {"payload": {"seconds": 0}},
                  message_id=parent_id)
    parent = await read_model_state(own_settings, parent_id, Status.QUEUED)

    await publish(url, names.FOLLOW_UPS_EXCHANGE, {"payload": {"seconds": 0}},
                  routing_key=names.follow_up_routing_key("sleep", NEW_TYPE),
                  message_id=follow_up_id, headers={names.HEADER_PARENT: parent_id})

    queued = await read_model_state(own_settings, follow_up_id, Status.QUEUED)
    assert queued.task_type == NEW_TYPE
    assert queued.tenant == parent.tenant
