"""The gateway's HTTP contract: what a client gets for bad requests, unknown ids, health, and
the published API description."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from contracts.registry import task_type_names, task_types
from tests.fast.conftest import ClientFor, Fakes

SECRET = f"s3cr3t-{uuid.uuid4().hex}"

UNKNOWN_TYPE = {"task_type": "fax", "payload": {"number": "+1 555"}}
INVALID_PAYLOAD = {"task_type": "send_email",
                   "payload": {"to": ["ann@example.com"], "subject": "Hi"}}  # no body
MALFORMED_JSON = b'{"task_type": "sleep", "payload": {"seconds": 1'


def errors(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    detail: list[dict[str, Any]] = response.json()["detail"]
    return detail


async def test_malformed_json_is_a_422(http: httpx.AsyncClient) -> None:
    response = await http.post("/tasks", content=MALFORMED_JSON,
                               headers={"Content-Type": "application/json"})

    assert [error["type"] for error in errors(response)] == ["json_invalid"]


async def test_an_unknown_task_type_is_a_422(http: httpx.AsyncClient) -> None:
    response = await http.post("/tasks", json=UNKNOWN_TYPE)

    [error] = errors(response)
    assert error["type"] == "union_tag_invalid"
    assert "task_type" in error["msg"]


async def test_a_payload_failing_its_schema_is_a_422_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/tasks", json=INVALID_PAYLOAD)

    [error] = errors(response)
    assert error["type"] == "missing"
    assert error["loc"][-2:] == ["payload", "body"]


async def test_an_invalid_email_address_is_a_422_naming_the_field(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post("/tasks", json={
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
    http: httpx.AsyncClient, request_body: dict[str, Any]
) -> None:
    response = await http.post("/tasks", json=request_body)

    assert errors(response)
    assert SECRET not in response.text


async def test_a_malformed_body_is_not_echoed_either(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/tasks", content=f'{{"task_type": "sleep", "token": "{SECRET}"'.encode(),
        headers={"Content-Type": "application/json"})

    assert errors(response)
    assert SECRET not in response.text


async def test_nothing_is_published_or_recorded_for_a_422(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    await http.post("/tasks", content=MALFORMED_JSON,
                    headers={"Content-Type": "application/json"})
    await http.post("/tasks", json=UNKNOWN_TYPE)
    await http.post("/tasks", json=INVALID_PAYLOAD)

    assert fakes.publisher.published == []
    assert fakes.read_model.states == {}
    # The publisher does see what is published: a valid request reaches it.
    accepted = await http.post("/tasks", json={"task_type": "sleep", "payload": {"seconds": 0}})
    assert accepted.status_code == 202
    assert len(fakes.publisher.published) == 1


async def test_an_unknown_task_id_is_a_404(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/tasks/no-such-task-{uuid.uuid4()}")

    assert response.status_code == 404
    assert "no task" in response.json()["detail"]


async def test_the_openapi_document_shows_every_payload_schema(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")

    assert response.status_code == 200
    schemas = response.json()["components"]["schemas"]
    for spec in task_types():
        assert spec.payload.__name__ in schemas
    assert set(schemas["SendEmailPayload"]["required"]) == {"to", "subject", "body"}
    docs = await http.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_the_asyncapi_document_is_open_and_names_every_task_exchange(
    client_for: ClientFor,
) -> None:
    anonymous = await client_for(None)

    response = await anonymous.get("/asyncapi.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    exchanges = {channel["bindings"]["amqp"]["exchange"]["name"]
                 for channel in document["channels"].values()}
    assert exchanges == {f"tasks.{name}" for name in task_type_names()} | {"task-events"}
    assert "/asyncapi.json" not in (await anonymous.get("/openapi.json")).json()["paths"]


async def test_health_and_readiness_when_both_dependencies_answer(
    http: httpx.AsyncClient,
) -> None:
    health = await http.get("/health")
    ready = await http.get("/health/ready")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (
        200, {"status": "ready", "rabbitmq": "ok", "mongodb": "ok"})


@pytest.mark.parametrize(("broker_down", "store_down", "expected"), [
    (True, False, {"status": "unavailable", "rabbitmq": "unreachable", "mongodb": "ok"}),
    (False, True, {"status": "unavailable", "rabbitmq": "ok", "mongodb": "unreachable"}),
], ids=["broker down", "store down"])
async def test_readiness_names_the_dependency_that_does_not_answer(
    http: httpx.AsyncClient, fakes: Fakes, broker_down: bool, store_down: bool,
    expected: dict[str, str],
) -> None:
    fakes.publisher.down, fakes.read_model.down = broker_down, store_down

    health = await http.get("/health")
    ready = await http.get("/health/ready")

    assert health.status_code == 200
    assert (ready.status_code, ready.json()) == (503, expected)
    assert "in-memory" not in ready.text  # the dependency's own error text stays in the log


async def test_the_docs_show_an_accepted_example_of_every_registered_type(
    http: httpx.AsyncClient,
) -> None:
    api = (await http.get("/openapi.json")).json()
    body = api["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
    examples = {name: example["value"] for name, example in body["examples"].items()}

    # Each built-in's payload model gives one; a user's type shows one if its model gives one.
    built_in = {spec.name for spec in task_types()
                if spec.payload.__module__.startswith("taskproc.tasks.")}
    assert built_in <= set(examples) <= set(task_type_names())
    for name, example in examples.items():
        assert example["task_type"] == name
        schema = body["schema"]["discriminator"]["mapping"][name].rsplit("/", 1)[-1]
        assert api["components"]["schemas"][schema]["examples"] == [example]
        # An example that /docs shows is one the gateway accepts.
        answer = await http.post("/tasks", json=example)
        assert answer.status_code == 202, answer.text
