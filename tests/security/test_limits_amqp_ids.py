"""Task ids from AMQP on real servers: a message whose id breaks the rule is quarantined, its
task `rejected` under a derived valid id, and it is acked once (no loop through redeliveries);
ids at the edges of the rule run as given."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from contracts import names
from contracts.limits import is_valid_task_id
from contracts.projection import TaskState
from contracts.statuses import Status
from infra.mongodb.task_store import TaskStore
from infra.rabbitmq.amqp_codec import derived_task_id
from infra.runtime.settings.system import SystemSettings
from taskproc.tasks.sleep import SLEEP
from tests.support.amqp import Queues, take_matching
from tests.support.runtime import Runtime, worker_and_projector
from tests.support.waiting import eventually

BODY = b'{"payload": {"seconds": 0}}'




@pytest.fixture(scope="module")
async def runtime(settings: SystemSettings) -> AsyncIterator[Runtime]:
    """A sleep worker and a projector on the session's vhost, on this event loop."""
    async with worker_and_projector(settings, SLEEP, name="limits") as running:
        yield running


@pytest.fixture
def queues(amqp_channel: AbstractChannel) -> Queues:
    return Queues(amqp_channel)


async def state_with(store: TaskStore, task_id: str, status: Status) -> TaskState | None:
    state = await store.get(task_id)
    return state if state is not None and state.status is status else None


def outside_message(body: bytes, message_id: str | None) -> aio_pika.Message:
    return aio_pika.Message(body, message_id=message_id, content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def publish(channel: AbstractChannel, message: aio_pika.Message) -> None:
    exchange = await channel.get_exchange(names.task_exchange("sleep"), ensure=False)
    await exchange.publish(message, routing_key="sleep")


async def quarantined_copy(channel: AbstractChannel, body: bytes) -> AbstractIncomingMessage | None:
    """Take the quarantined message with this body; put every other one back."""
    found = await take_matching(channel, names.QUARANTINE_QUEUE,
                                lambda message: message.body == body)
    return found[0] if found else None


INVALID = {
    "200 emoji as message_id": ("\N{PILE OF POO}" * 60, None),  # 240 bytes: still a shortstr
    "129 characters as message_id": ("x" * 129, None),
    "a space as message_id": ("task 1", None),
    "200 emoji in the body": (None, "\N{PILE OF POO}" * 200),
    "empty task_id in the body beside an invalid message_id": ("a/b", ""),
}


@pytest.mark.parametrize("case", list(INVALID))
async def test_an_invalid_id_is_quarantined_and_rejected_under_a_derived_id_once(
    case: str, runtime: Runtime, amqp_channel: AbstractChannel, queues: Queues,
) -> None:
    message_id, body_id = INVALID[case]
    # A unique body, so this case's message and derived id are its own.
    body = json.dumps({"payload": {"seconds": 0}, "case": case,
                       **({} if body_id is None else {"task_id": body_id})}).encode()
    message = outside_message(body, message_id)

    await publish(amqp_channel, message)

    copy = await eventually(lambda: quarantined_copy(amqp_channel, body), timeout_s=30,
                            what=f"{case}: the message in tasks.quarantine")
    reason = copy.headers.get(names.HEADER_QUARANTINE_REASON)
    reason = reason.decode() if isinstance(reason, bytes) else str(reason)
    derived = derived_task_id(copy)  # the same content and properties as the one published
    assert is_valid_task_id(derived)
    assert ("task id is not 1-128 characters" in reason
            or "does not match the task schema" in reason), reason
    rejected = await eventually(lambda: state_with(runtime.store, derived, Status.REJECTED),
                                timeout_s=30, what=f"{case}: rejected as {derived}")
    assert rejected.error is not None
    assert rejected.error.type == "InvalidTask"
    # Acked once: no copy back in the task queue, none left in quarantine.
    assert await queues.take(names.task_queue("sleep"), message_id or "") is None
    assert await quarantined_copy(amqp_channel, body) is None
    assert not runtime.worker.done()
    assert not runtime.projector.done()


@pytest.mark.parametrize("task_id", ["a", "x" * 128, "Order-17:v2.retry_1"])
async def test_ids_at_the_edges_of_the_rule_run_as_given(
    task_id: str, runtime: Runtime, amqp_channel: AbstractChannel,
) -> None:
    await publish(amqp_channel, outside_message(BODY, task_id))

    await eventually(lambda: state_with(runtime.store, task_id, Status.SUCCEEDED),
                     timeout_s=30, what=f"{task_id} succeeded")


async def test_an_amqp_task_over_a_cap_is_quarantined_and_rejected_naming_the_cap(
    runtime: Runtime, amqp_channel: AbstractChannel,
) -> None:
    task_id = f"over-cap-{uuid.uuid4()}"
    body = json.dumps({"payload": {"seconds": 0}, "timeout_s": 601, "max_attempts": 21}).encode()

    await publish(amqp_channel, outside_message(body, task_id))

    rejected = await eventually(lambda: state_with(runtime.store, task_id, Status.REJECTED),
                                timeout_s=30, what=f"{task_id} rejected")
    assert rejected.error is not None
    assert rejected.error.message == ("over a limit: timeout_s: at most 600 for sleep; "
                                      "max_attempts: at most 20 for sleep")
    assert await quarantined_copy(amqp_channel, body) is not None
