"""The AsyncAPI document: a channel and a send operation for every task type, the models' own
schemas, the exchanges as the topology declares them, and a shape AsyncAPI 3.0 accepts."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from contracts.asyncapi import EVENTS_CHANNEL, asyncapi_document
from contracts.messages import ProgressEvent, StatusEvent, TaskBody
from contracts.registry import task_types
from infra.rabbitmq.topology import build_topology

with warnings.catch_warnings():
    # asyncapi3 0.0.2 warns at import that a field name shadows a BaseModel attribute.
    warnings.simplefilter("ignore", UserWarning)
    from asyncapi3 import AsyncAPI3

REF_TEMPLATE = "#/components/schemas/{model}"
DOCUMENT = asyncapi_document("1.2.3")


def refs_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs_in(item)


def unresolved(document: dict[str, Any]) -> list[str]:
    """The `$ref`s that are not a JSON pointer to a node of `document`."""
    missing = []
    for ref in refs_in(document):
        node: Any = document
        if not ref.startswith("#/"):
            missing.append(ref)
            continue
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                missing.append(ref)
                break
            node = node[part]
    return missing


def exchange_binding(channel: dict[str, Any]) -> dict[str, Any]:
    binding: dict[str, Any] = channel["bindings"]["amqp"]["exchange"]
    return binding


def test_the_document_is_asyncapi_3_with_its_version_and_server() -> None:
    assert DOCUMENT["asyncapi"] == "3.0.0"
    assert DOCUMENT["info"]["version"] == "1.2.3"
    server = DOCUMENT["servers"]["rabbitmq"]
    assert (server["protocol"], server["host"]) == ("amqp", "{host}")
    assert server["variables"]["host"]["default"] == "127.0.0.1:5672"


def test_asyncapi_3_accepts_its_shape() -> None:
    AsyncAPI3.model_validate(DOCUMENT)


def test_the_shape_check_refuses_a_wrong_document() -> None:
    wrong = copy.deepcopy(DOCUMENT)
    wrong["operations"]["publish_sleep"]["action"] = "publish"  # AsyncAPI 2's word

    with pytest.raises(ValueError, match="action"):
        AsyncAPI3.model_validate(wrong)


def test_every_ref_resolves_within_the_document() -> None:
    assert list(refs_in(DOCUMENT))
    assert unresolved(DOCUMENT) == []


def test_a_dangling_ref_is_found() -> None:
    broken = copy.deepcopy(DOCUMENT)
    broken["components"]["schemas"].pop("SleepPayload")

    assert unresolved(broken) == ["#/components/schemas/SleepPayload"]


@pytest.mark.parametrize("spec", task_types(), ids=lambda spec: spec.name)
def test_every_task_type_has_a_channel_a_message_and_a_send_operation(spec: Any) -> None:
    declared = {e.name: e.type.value for e in build_topology(task_types()).exchanges}
    channel = DOCUMENT["channels"][f"tasks_{spec.name}"]
    message = DOCUMENT["components"]["messages"][f"{spec.name}_task"]
    operation = DOCUMENT["operations"][f"publish_{spec.name}"]

    assert exchange_binding(channel) == {"name": f"tasks.{spec.name}",
                                         "type": declared[f"tasks.{spec.name}"],
                                         "durable": True, "autoDelete": False}
    body, typed = message["payload"]["allOf"]
    assert body == {"$ref": "#/components/schemas/TaskBody"}
    assert typed["properties"]["payload"] == {
        "$ref": f"#/components/schemas/{spec.payload.__name__}"}
    assert message["contentType"] == "application/json"
    assert {"message_id", "user_id", "content_type"} <= set(message["x-amqp-properties"])
    assert {"traceparent", "x-attempt", "x-run", "x-source", "x-tenant"} == set(
        message["headers"]["properties"])
    assert operation["action"] == "send"
    assert operation["channel"] == {"$ref": f"#/channels/tasks_{spec.name}"}
    assert operation["bindings"]["amqp"]["deliveryMode"] == 2


def test_status_and_progress_events_are_received_from_task_events() -> None:
    declared = {e.name: e.type.value for e in build_topology(task_types()).exchanges}
    channel = DOCUMENT["channels"][EVENTS_CHANNEL]

    assert exchange_binding(channel) == {"name": "task-events", "type": declared["task-events"],
                                         "durable": True, "autoDelete": False}
    assert channel["address"] == "{task_type}.{event}"
    assert set(channel["parameters"]["task_type"]["enum"]) == {s.name for s in task_types()}
    assert {"succeeded", "failed", "progress"} <= set(channel["parameters"]["event"]["enum"])
    assert "queued" not in channel["parameters"]["event"]["enum"]
    receives = {name: op for name, op in DOCUMENT["operations"].items()
                if op["action"] == "receive"}
    assert {op["messages"][0]["$ref"] for op in receives.values()} == {
        f"#/channels/{EVENTS_CHANNEL}/messages/status_event",
        f"#/channels/{EVENTS_CHANNEL}/messages/progress_event"}
    messages = DOCUMENT["components"]["messages"]
    assert messages["status_event"]["payload"] == {"$ref": "#/components/schemas/StatusEvent"}
    assert messages["progress_event"]["payload"] == {
        "$ref": "#/components/schemas/ProgressEvent"}


@pytest.mark.parametrize(
    "model", [TaskBody, StatusEvent, ProgressEvent, *(spec.payload for spec in task_types())],
    ids=lambda model: model.__name__)
def test_the_schemas_are_the_models_own(model: type[BaseModel]) -> None:
    own = model.model_json_schema(ref_template=REF_TEMPLATE)
    nested = own.pop("$defs", {})
    schemas = DOCUMENT["components"]["schemas"]

    assert schemas[model.__name__] == own
    for name, schema in nested.items():
        assert schemas[name] == schema
