"""The gateway's HTTP contract: what a client gets for bad requests, unknown ids, health, and
the published API description."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractQueue

from contracts import topology as names
from contracts.registry import task_type_names
from tests.e2e.conftest import Api
from tests.support.services import Backends

pytestmark = pytest.mark.e2e

SECRET = f"s3cr3t-{uuid.uuid4().hex}"

UNKNOWN_TYPE = {"task_type": "fax", "payload": {"number": "+1 555"}}
INVALID_PAYLOAD = {"task_type": "send_email",
                   "payload": {"to": ["ann@example.com"], "subject": "Hi"}}  # no body
MALFORMED_JSON = b'{"task_type": "sleep", "payload": {"seconds": 1'


@pytest.fixture
async def tap(services: Backends, api: Api) -> AsyncIterator[AbstractQueue]:
    """A queue of the test's own bound to every task exchange, as another service may bind
    one: it sees every task the gateway publishes, whether or not a consumer takes it first."""
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        for task_type in task_type_names():
            await queue.bind(names.task_exchange(task_type), "#")
        yield queue


async def tapped(queue: AbstractQueue) -> int:
    declared = await queue.channel.declare_queue(queue.name, passive=True)
    return declared.declaration_result.message_count or 0


def errors(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    detail: list[dict[str, Any]] = response.json()["detail"]
    return detail


async def test_malformed_json_is_a_422(api: Api) -> None:
    response = await api.client.post("/tasks", content=MALFORMED_JSON,
                                     headers={"Content-Type": "application/json"})

    assert [error["type"] for error in errors(response)] == ["json_invalid"]


async def test_an_unknown_task_type_is_a_422(api: Api) -> None:
    response = await api.client.post("/tasks", json=UNKNOWN_TYPE)

    [error] = errors(response)
    assert error["type"] == "union_tag_invalid"
    assert "task_type" in error["msg"]


async def test_a_payload_failing_its_schema_is_a_422_naming_the_field(api: Api) -> None:
    response = await api.client.post("/tasks", json=INVALID_PAYLOAD)

    [error] = errors(response)
    assert error["type"] == "missing"
    assert error["loc"][-2:] == ["payload", "body"]


async def test_an_invalid_email_address_is_a_422_naming_the_field(api: Api) -> None:
    response = await api.client.post("/tasks", json={
        "task_type": "send_email",
        "payload": {"to": "not-an-address", "subject": "Hi", "body": "x"}})

    [error] = errors(response)
    assert error["loc"][-3:] == ["payload", "to", 0]


@pytest.mark.parametrize("request_body", [
    {"task_type": "webhook", "payload": {"url": SECRET, "headers": {"Authorization": SECRET}}},
    {"task_type": "webhook", "payload": {"url": "http://127.0.0.1/", "api_key": SECRET}},
    {"task_type": "send_email", "payload": {"to": [SECRET], "subject": "x", "body": "x"}},
    {"task_type": "sleep", "payload": {"seconds": 1}, "password": SECRET},
], ids=["bad url", "unknown field", "bad address", "unknown top-level field"])
async def test_a_422_never_echoes_a_value_from_the_request(
    api: Api, request_body: dict[str, Any]
) -> None:
    response = await api.client.post("/tasks", json=request_body)

    assert errors(response)
    assert SECRET not in response.text


async def test_a_malformed_body_is_not_echoed_either(api: Api) -> None:
    response = await api.client.post(
        "/tasks", content=f'{{"task_type": "sleep", "token": "{SECRET}"'.encode(),
        headers={"Content-Type": "application/json"})

    assert errors(response)
    assert SECRET not in response.text


async def test_nothing_is_published_for_a_422(api: Api, tap: AbstractQueue) -> None:
    await api.client.post("/tasks", content=MALFORMED_JSON,
                          headers={"Content-Type": "application/json"})
    await api.client.post("/tasks", json=UNKNOWN_TYPE)
    await api.client.post("/tasks", json=INVALID_PAYLOAD)

    assert await tapped(tap) == 0
    # The tap does see what is published: a valid request lands in it once confirmed.
    await api.submit("sleep", {"seconds": 0})
    assert await tapped(tap) == 1


async def test_an_unknown_task_id_is_a_404(api: Api) -> None:
    response = await api.client.get(f"/tasks/no-such-task-{uuid.uuid4()}")

    assert response.status_code == 404
    assert "no task" in response.json()["detail"]


async def test_the_openapi_document_shows_every_payload_schema(api: Api) -> None:
    response = await api.client.get("/openapi.json")

    assert response.status_code == 200
    schemas = response.json()["components"]["schemas"]
    for model in ("SendEmailPayload", "WebhookPayload", "SleepPayload"):
        assert model in schemas
    assert set(schemas["SendEmailPayload"]["required"]) == {"to", "subject", "body"}
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_health_and_readiness_when_both_dependencies_are_up(api: Api) -> None:
    health = await api.client.get("/health")
    ready = await api.client.get("/health/ready")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (
        200, {"status": "ready", "rabbitmq": "ok", "mongodb": "ok"})
