"""The AsyncAPI 3.0 document of what travels over RabbitMQ, built from the models the service
uses: a channel and a `send` operation per task exchange `tasks.<type>`, and the `task-events`
exchange with `receive` operations for status and progress events.

Pure: the caller passes the package version. Every schema is the model's own JSON Schema, its
`$defs` moved to `components/schemas` (one namespace, as pydantic names them), so each `$ref`
resolves inside the document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from contracts import names
from contracts.limits import TASK_ID_PATTERN
from contracts.messages import ProgressEvent, StatusEvent, TaskBody
from contracts.registry import TaskSpec, task_types
from contracts.statuses import Status

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
DEFAULT_HOST = "127.0.0.1:5672"
# As infra/rabbitmq/topology.py declares them (tests/unit/test_asyncapi.py holds them equal):
# this package may not import the adapter.
TASK_EXCHANGE_TYPE = "topic"
EVENTS_EXCHANGE_TYPE = "topic"
_SCHEMAS = "#/components/schemas/"
EVENTS_CHANNEL = "task_events"

# What a publisher may put in a task message's headers. The x- ones are this service's own:
# believed only from its RabbitMQ users (infra/rabbitmq/amqp_codec.py), ignored from others.
_SERVICE_ONLY = " Set by this service; ignored from any other publisher: do not set it."
TASK_HEADERS: dict[str, dict[str, Any]] = {
    names.HEADER_TRACEPARENT: {
        "type": "string",
        "description": "W3C trace context of the publisher: the task's attempts join its trace "
                       "(a malformed value is ignored).",
    },
    names.HEADER_ATTEMPT: {"type": "integer", "minimum": 1,
                           "description": "Attempt number." + _SERVICE_ONLY},
    names.HEADER_RUN: {"type": "integer", "minimum": 1,
                       "description": "Run number (a replay starts a new run)." + _SERVICE_ONLY},
    names.HEADER_SOURCE: {"type": "string", "enum": ["http", "amqp"],
                          "description": "`http` for a task the gateway submitted; anything "
                                         "else counts as `amqp`." + _SERVICE_ONLY},
    names.HEADER_TENANT: {"type": "string",
                          "description": "The tenant of the API key that submitted the task. A "
                                         "direct publisher's tenant comes from its RabbitMQ "
                                         "user (`user_id`)." + _SERVICE_ONLY},
}
# The AMQP properties of a task message, as schemas: AsyncAPI's AMQP bindings have no field
# for most of them, hence the extension.
TASK_PROPERTIES: dict[str, dict[str, Any]] = {
    "message_id": {"type": "string", "pattern": TASK_ID_PATTERN,
                   "description": "The task id (the body's `task_id` takes precedence). Always "
                                  "set it: without one the id is derived from the message."},
    "user_id": {"type": "string",
                "description": "The connection's RabbitMQ user (RabbitMQ checks it): it gives "
                               "the task's tenant."},
    "content_type": {"const": "application/json"},
    "delivery_mode": {"const": 2, "description": "Persistent."},
}


def _specs() -> tuple[TaskSpec, ...]:
    """The registered task types: the one line that reads the registry."""
    return task_types()


def asyncapi_document(version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the task exchanges and `task-events`, as a JSON-ready
    dict; `version` is the package's."""
    specs = _specs()
    refs, schemas = _schemas([TaskBody, StatusEvent, ProgressEvent, *(s.payload for s in specs)])
    channels = {_task_channel(spec.name): _task_channel_object(spec.name) for spec in specs}
    channels[EVENTS_CHANNEL] = _events_channel(specs)
    operations: dict[str, Any] = {
        f"publish_{spec.name}": {
            "action": "send",
            "summary": f"Publish a `{spec.name}` task.",
            "channel": {"$ref": f"#/channels/{_task_channel(spec.name)}"},
            "messages": [{"$ref": f"#/channels/{_task_channel(spec.name)}/messages/task"}],
            # Confirms and `mandatory`: an unroutable message is an error, not a silent loss.
            "bindings": {"amqp": {"deliveryMode": 2, "mandatory": True,
                                  "bindingVersion": AMQP_BINDING_VERSION}},
        }
        for spec in specs
    }
    for event in ("status_event", "progress_event"):
        operations[f"receive_{event}"] = {
            "action": "receive",
            "summary": f"Bind a queue of your own to `{names.EVENTS_EXCHANGE}` for {event}s.",
            "channel": {"$ref": f"#/channels/{EVENTS_CHANNEL}"},
            "messages": [{"$ref": f"#/channels/{EVENTS_CHANNEL}/messages/{event}"}],
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Task processor: messages",
            "version": version,
            "description": "Publish tasks to `tasks.<type>` with any AMQP 0-9-1 client; follow "
                           "them over HTTP (`GET /tasks/{id}`) or through `task-events`.",
        },
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": {
            "host": "{host}",
            "protocol": "amqp",
            "protocolVersion": "0.9.1",
            "variables": {"host": {"default": DEFAULT_HOST, "description": "host:port"}},
            "security": [{"$ref": "#/components/securitySchemes/rabbitmq_user"}],
        }},
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": schemas,
            "messages": {
                **{f"{spec.name}_task": _task_message(spec.name, refs[TaskBody], refs[spec.payload])
                   for spec in specs},
                "status_event": _event_message(
                    "status_event", refs[StatusEvent],
                    "A task's new status; routing key `<type>.<status>`. `running` only for "
                    "an attempt that lasts; its outcome carries `started_at` either way."),
                "progress_event": _event_message(
                    names.PROGRESS_EVENT_TYPE, refs[ProgressEvent],
                    f"How far a running attempt got; routing key `<type>.{names.PROGRESS}`."),
            },
            "securitySchemes": {"rabbitmq_user": {
                "type": "userPassword",
                "description": "A RabbitMQ user; a publisher's user gives its tasks' tenant.",
            }},
        },
    }


def _schemas(models: list[type[BaseModel]]) -> tuple[dict[type[BaseModel], str], dict[str, Any]]:
    """Each model's `$ref` and every schema, under `components/schemas`."""
    keys: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "validation") for m in models]
    mapping, top = models_json_schema(keys, ref_template=_SCHEMAS + "{model}")
    refs = {model: mapping[key]["$ref"] for model, key in zip(models, keys, strict=True)}
    return refs, top.get("$defs", {})


def _task_channel(task_type: str) -> str:
    return f"tasks_{task_type}"


def _task_channel_object(task_type: str) -> dict[str, Any]:
    exchange = names.task_exchange(task_type)
    return {
        # The routing key: the exchange names the type and takes any key; the gateway uses this.
        "address": task_type,
        "title": exchange,
        "description": f"Tasks of type `{task_type}`: exchange `{exchange}`, any routing key.",
        "messages": {"task": {"$ref": f"#/components/messages/{task_type}_task"}},
        "servers": [{"$ref": "#/servers/rabbitmq"}],
        "bindings": {"amqp": {
            "is": "routingKey",
            "exchange": {"name": exchange, "type": TASK_EXCHANGE_TYPE, "durable": True,
                         "autoDelete": False},
            "bindingVersion": AMQP_BINDING_VERSION,
        }},
    }


def _events_channel(specs: tuple[TaskSpec, ...]) -> dict[str, Any]:
    return {
        "address": "{task_type}.{event}",
        "title": names.EVENTS_EXCHANGE,
        "description": f"Status and progress events: exchange `{names.EVENTS_EXCHANGE}`. Bind "
                       "a queue of your own, e.g. with `*.succeeded` or `webhook.*`.",
        "parameters": {
            "task_type": {"enum": [spec.name for spec in specs], "description": "Task type."},
            "event": {
                # `queued` is not published: the submission itself is the message on its
                # task exchange.
                "enum": [status.value for status in Status if status is not Status.QUEUED]
                        + [names.PROGRESS],
                "description": f"The new status, or `{names.PROGRESS}` for a progress event.",
            },
        },
        "messages": {
            "status_event": {"$ref": "#/components/messages/status_event"},
            "progress_event": {"$ref": "#/components/messages/progress_event"},
        },
        "servers": [{"$ref": "#/servers/rabbitmq"}],
        "bindings": {"amqp": {
            "is": "routingKey",
            "exchange": {"name": names.EVENTS_EXCHANGE, "type": EVENTS_EXCHANGE_TYPE,
                         "durable": True, "autoDelete": False},
            "bindingVersion": AMQP_BINDING_VERSION,
        }},
    }


def _task_message(task_type: str, body_ref: str, payload_ref: str) -> dict[str, Any]:
    """A task message: the task body, its `payload` the type's own."""
    return {
        "name": f"{task_type}_task",
        "title": f"A `{task_type}` task",
        "summary": "Only `payload` is required; set message_id to the task id.",
        "contentType": "application/json",
        "headers": {"type": "object", "properties": TASK_HEADERS},
        "payload": {"allOf": [
            {"$ref": body_ref},
            {"type": "object", "properties": {
                "payload": {"$ref": payload_ref},
                # If present, it must name the exchange's type.
                "task_type": {"enum": [task_type, None]},
            }},
        ]},
        "x-amqp-properties": TASK_PROPERTIES,
    }


def _event_message(message_type: str, payload_ref: str, summary: str) -> dict[str, Any]:
    return {
        "name": message_type,
        "summary": summary,
        "contentType": "application/json",
        "headers": {"type": "object", "properties": {names.HEADER_TRACEPARENT: {
            "type": "string", "description": "W3C trace context of the attempt."}}},
        "payload": {"$ref": payload_ref},
        "correlationId": {"description": "The AMQP `correlation_id` property: the task id.",
                          "location": "$message.payload#/task_id"},
        "bindings": {"amqp": {"messageType": message_type,
                              "bindingVersion": AMQP_BINDING_VERSION}},
    }
