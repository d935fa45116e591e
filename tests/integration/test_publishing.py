"""Publisher confirms against a real RabbitMQ: a publish is either confirmed and routed, or an
error the caller sees."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import aio_pika
import pytest

from contracts import names
from contracts.messages import TaskEnvelope
from contracts.registry import task_types
from infra.rabbitmq.broker import Broker, BrokerUnavailable, Unroutable, persistent_message
from infra.rabbitmq.publishing import publish_task
from infra.rabbitmq.topology import build_topology
from tests.support.amqp import Queues
from tests.support.services import free_port
from tests.support.waiting import eventually


async def test_a_mandatory_publish_that_no_queue_takes_raises_unroutable(broker: Broker) -> None:
    message = persistent_message(b"{}", message_id="nowhere")

    with pytest.raises(Unroutable):
        await broker.publish("", "no-such-queue", message)


async def test_a_broker_on_a_closed_port_is_unavailable_within_its_timeout() -> None:
    timeout_s = 3.0
    broker = Broker(f"amqp://guest:guest@127.0.0.1:{free_port()}/", build_topology(task_types()),
                    timeout_s=timeout_s, name="tests closed port")
    message = persistent_message(b"{}", message_id="never-sent")

    started = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable):
            await broker.publish(names.task_exchange("sleep"), "sleep", message)
        elapsed = time.monotonic() - started
    finally:
        await broker.close()

    assert elapsed < timeout_s + 2


async def test_a_published_task_lands_in_its_queue_with_the_properties_ops_read(
    broker: Broker, queues: Queues
) -> None:
    await queues.purge(names.task_queue("sleep"))
    submitted_at = datetime.now(UTC).replace(microsecond=0)
    envelope = TaskEnvelope(task_id=f"publish-{uuid.uuid4()}", task_type="sleep",
                            payload={"seconds": 0}, submitted_at=submitted_at)

    await publish_task(broker, envelope, app_id="integration-tests", source="http", attempt=1)

    seen = await eventually(lambda: queues.take(names.task_queue("sleep"), envelope.task_id),
                            what="the task in queue tasks.sleep")
    assert seen.properties["delivery_mode"] == aio_pika.DeliveryMode.PERSISTENT
    assert seen.properties["content_type"] == "application/json"
    assert seen.properties["message_id"] == envelope.task_id
    assert seen.properties["type"] == "sleep"
    assert seen.properties["app_id"] == "integration-tests"
    assert seen.properties["timestamp"] == submitted_at
    assert seen.headers[names.HEADER_ATTEMPT] == 1
    body = json.loads(seen.body)
    assert body["task_id"] == envelope.task_id
    assert body["payload"] == {"seconds": 0}


async def test_a_task_the_service_submits_reaches_its_queue_and_never_the_projector(
    broker: Broker, queues: Queues
) -> None:
    """The service records `queued` itself; a task published straight to the task exchange is
    the projector's to record, so only that one is copied to `projector.submissions`."""
    for queue in (names.task_queue("sleep"), names.PROJECTOR_SUBMISSIONS_QUEUE):
        await queues.purge(queue)
    submitted = TaskEnvelope(task_id=f"recorded-{uuid.uuid4()}", task_type="sleep",
                             payload={"seconds": 0}, submitted_at=datetime.now(UTC))
    straight = persistent_message(
        json.dumps({"task_id": f"straight-{uuid.uuid4()}", "task_type": "sleep",
                    "payload": {"seconds": 0}}).encode(), message_id=f"straight-{uuid.uuid4()}")

    await publish_task(broker, submitted, app_id="integration-tests", source="http")
    await queues.publish(names.task_exchange("sleep"), straight)

    assert await queues.take(names.task_queue("sleep"), submitted.task_id) is not None
    assert await queues.take(names.PROJECTOR_SUBMISSIONS_QUEUE, submitted.task_id) is None
    assert await queues.take(names.task_queue("sleep"), straight.message_id or "") is not None
    assert await queues.take(names.PROJECTOR_SUBMISSIONS_QUEUE,
                             straight.message_id or "") is not None
