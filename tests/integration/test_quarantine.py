"""The worker runtime, in process against real servers: a message it cannot run is quarantined
with the reason, the task is `rejected`, and the consumer goes on with the next message."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from contracts import names
from contracts.projection import TaskState
from contracts.statuses import Status
from infra.mongodb.task_store import TaskStore
from infra.runtime.settings.system import SystemSettings
from taskproc.tasks.webhook import WEBHOOK
from tests.support.amqp import Queues
from tests.support.receivers import WebhookReceiver
from tests.support.runtime import Runtime, worker_and_projector
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
async def runtime(settings: SystemSettings) -> AsyncIterator[Runtime]:
    async with worker_and_projector(settings, WEBHOOK, name="integration") as running:
        yield running


async def publish_raw(channel: AbstractChannel, body: bytes, message_id: str) -> None:
    """Publish to exchange `tasks.webhook` as another service would, confirmed."""
    exchange = await channel.get_exchange(names.task_exchange("webhook"), ensure=False)
    message = aio_pika.Message(body, message_id=message_id, content_type="application/json",
                               delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
    await exchange.publish(message, routing_key="webhook")


async def state_with(store: TaskStore, task_id: str, status: Status) -> TaskState | None:
    state = await store.get(task_id)
    return state if state is not None and state.status is status else None


def webhook_payload(receiver: WebhookReceiver, path: str) -> dict[str, object]:
    return {"url": receiver.url(path), "json": {"hello": "world"}}


def invalid_bodies(payload: dict[str, object]) -> dict[str, bytes]:
    """One message per way of being invalid, each around an otherwise runnable payload."""
    return {
        "not JSON": b"{this is not json",
        "wrong schema": json.dumps({"payload": payload, "priority": "high"}).encode(),
        "schema version 2": json.dumps({"payload": payload, "schema_version": 2}).encode(),
        "task_type mismatch": json.dumps({"payload": payload, "task_type": "sleep"}).encode(),
        "invalid payload": json.dumps({"payload": {**payload, "url": "not a url"}}).encode(),
    }


EXPECTED_REASONS = {
    "not JSON": "body is not JSON",
    "wrong schema": "does not match the task schema: priority",
    "schema version 2": "does not match the task schema: schema_version",
    "task_type mismatch": "task_type 'sleep' published to 'webhook'",
    "invalid payload": "payload is not a valid webhook: url",
}


@pytest.mark.parametrize("case", list(EXPECTED_REASONS))
async def test_an_invalid_message_is_quarantined_and_its_task_rejected(
    case: str, runtime: Runtime, amqp_channel: AbstractChannel, queues: Queues,
    webhook_receiver: WebhookReceiver,
) -> None:
    task_id = f"invalid-{uuid.uuid4()}"
    path = f"/quarantine/{task_id}"
    raw = invalid_bodies(webhook_payload(webhook_receiver, path))[case]

    await publish_raw(amqp_channel, raw, message_id=task_id)

    quarantined = await eventually(lambda: queues.take(names.QUARANTINE_QUEUE, task_id),
                                   timeout_s=30, what=f"{task_id} in tasks.quarantine")
    reason = quarantined.header(names.HEADER_QUARANTINE_REASON)
    assert reason is not None
    assert EXPECTED_REASONS[case] in reason
    assert quarantined.header(names.HEADER_ORIGINAL_QUEUE) == names.task_queue("webhook")
    assert quarantined.body == raw
    rejected = await eventually(lambda: state_with(runtime.store, task_id, Status.REJECTED),
                                timeout_s=30, what=f"{task_id} rejected in the read model")
    assert rejected.error is not None
    assert rejected.error.type == "InvalidTask"
    assert runtime.still_running()
    assert not [d for d in webhook_receiver.deliveries if d.path == path]


async def test_the_consumer_runs_a_valid_task_after_an_invalid_one(
    runtime: Runtime, amqp_channel: AbstractChannel, webhook_receiver: WebhookReceiver
) -> None:
    invalid_id, valid_id = f"invalid-{uuid.uuid4()}", f"valid-{uuid.uuid4()}"
    await publish_raw(amqp_channel, b"\xff\xfe not even text", message_id=invalid_id)

    body = {"payload": webhook_payload(webhook_receiver, f"/after-invalid/{valid_id}")}
    await publish_raw(amqp_channel, json.dumps(body).encode(), message_id=valid_id)

    succeeded = await eventually(lambda: state_with(runtime.store, valid_id, Status.SUCCEEDED),
                                 timeout_s=30, what=f"{valid_id} succeeded")
    assert succeeded.result["status_code"] == 200
    assert webhook_receiver.by_task[valid_id] == 1
    await eventually(lambda: state_with(runtime.store, invalid_id, Status.REJECTED),
                     timeout_s=30, what=f"{invalid_id} rejected")
    assert runtime.still_running()
