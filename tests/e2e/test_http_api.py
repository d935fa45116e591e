"""The gateway over the wire with every process running: a submission reaches RabbitMQ as ops see
it and is readable at once, and readiness reports both dependencies.

The rest of the HTTP contract (422s that echo nothing, 404, OpenAPI, Idempotency-Key, 503s) is
checked in process on the in-memory ports, in tests/fast.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue

from contracts import names
from contracts.registry import task_type_names
from tests.e2e.conftest import Api
from tests.support.services import Backends

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def tap(services: Backends, api: Api) -> AsyncIterator[AbstractQueue]:
    """A queue of the test's own bound to every exchange the gateway submits to, as another
    service may bind one: it sees every task the gateway publishes, whether or not a consumer
    takes it first."""
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for task_type in task_type_names():
            await queue.bind(names.recorded_exchange(task_type), "")
        yield queue


async def test_a_submission_is_published_persistently_readable_at_once_and_runs(
    api: Api, tap: AbstractQueue
) -> None:
    response = await api.client.post(
        "/tasks", json={"task_type": "sleep", "payload": {"seconds": 0}},
        headers={"traceparent": TRACEPARENT})
    task_id = response.json()["task_id"]
    seen_at_once = await api.task(task_id)

    assert response.status_code == 202
    assert seen_at_once is not None
    assert (seen_at_once["task_id"], seen_at_once["source"]) == (task_id, "http")
    message = await tap.get(no_ack=True, timeout=5)
    assert (message.message_id, message.type, message.app_id) == (
        task_id, "sleep", "taskproc-gateway")
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.headers[names.HEADER_SOURCE] == "http"
    assert message.headers[names.HEADER_TRACEPARENT] == TRACEPARENT
    assert json.loads(message.body)["payload"] == {"seconds": 0}
    assert await tap.get(no_ack=True, fail=False) is None  # published once
    finished = await api.wait_for(task_id)
    assert finished["status"] == "succeeded"


async def test_health_and_readiness_when_both_dependencies_are_up(api: Api) -> None:
    health = await api.client.get("/health")
    ready = await api.client.get("/health/ready")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (
        200, {"status": "ready", "rabbitmq": "ok", "mongodb": "ok"})
