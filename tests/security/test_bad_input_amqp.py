"""Bad input published straight to RabbitMQ, on real servers: a body nested too deep for the
parser, and a `then` chain over the caps the gateway holds a workflow to, are each quarantined
and their task `rejected` at once (acked once, never redelivered to the delivery limit), while
the worker and the projector, which read the same body, keep running."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from contracts import names
from contracts.limits import MAX_BODY_DEPTH, MAX_WORKFLOW_DEPTH, MAX_WORKFLOW_TASKS
from contracts.projection import TaskState
from contracts.statuses import Status
from infra.mongodb.task_store import TaskStore
from infra.runtime.settings.system import SystemSettings
from taskproc.tasks.sleep import SLEEP
from tests.support.amqp import take_matching
from tests.support.runtime import Runtime, worker_and_projector
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
async def runtime(settings: SystemSettings) -> AsyncIterator[Runtime]:
    """A sleep worker and a projector on the session's vhost, on this event loop."""
    async with worker_and_projector(settings, SLEEP, name="bad-input") as running:
        yield running


async def publish(channel: AbstractChannel, body: bytes, task_id: str) -> None:
    exchange = await channel.get_exchange(names.task_exchange("sleep"), ensure=False)
    await exchange.publish(aio_pika.Message(body, message_id=task_id,
                                            content_type="application/json"),
                           routing_key="sleep")


async def rejected(store: TaskStore, task_id: str) -> TaskState | None:
    state = await store.get(task_id)
    return state if state is not None and state.status is Status.REJECTED else None


async def quarantined(channel: AbstractChannel, task_id: str) -> list[AbstractIncomingMessage]:
    """Take every quarantined copy of `task_id`; put every other message back."""
    return await take_matching(channel, names.QUARANTINE_QUEUE,
                               lambda message: message.message_id == task_id)


async def assert_rejected_once(
    runtime: Runtime, channel: AbstractChannel, task_id: str, reason: str,
) -> None:
    state = await eventually(lambda: rejected(runtime.store, task_id), timeout_s=30,
                             what=f"{task_id} rejected")
    assert state.error is not None
    assert (state.error.type, state.error.message) == ("InvalidTask", reason)
    # Rejected at its first delivery: one attempt-free outcome, one copy in quarantine, none
    # left in the task queue to come round again.
    assert state.attempt == 0
    assert len(await quarantined(channel, task_id)) == 1
    queue = await channel.get_queue(names.task_queue("sleep"), ensure=False)
    assert (await queue.declare()).message_count == 0
    assert runtime.still_running()


@pytest.mark.parametrize("levels", [1_000, 50_000])
async def test_a_body_nested_too_deep_is_rejected_at_once(
    levels: int, runtime: Runtime, amqp_channel: AbstractChannel,
) -> None:
    task_id = f"deep-{levels}-{uuid.uuid4()}"
    # `previous_result` may hold any JSON: only its depth is wrong. Written out by hand, as the
    # JSON encoder recurses too.
    body = (b'{"payload": {"seconds": 0}, "previous_result": '
            + b"[" * levels + b"]" * levels + b"}")

    await publish(amqp_channel, body, task_id)

    await assert_rejected_once(runtime, amqp_channel, task_id,
                               f"body is nested deeper than {MAX_BODY_DEPTH} levels")


def chain(depth: int, width: int) -> list[dict[str, Any]]:
    """`width` sleep follow-ups per step, `depth` steps deep."""
    if depth == 0:
        return []
    below = chain(depth - 1, width)
    return [{"task_type": "sleep", "payload": {"seconds": 0}, **({"then": below} if below else {})}
            for _ in range(width)]


OVER_CAPS = {
    # One more level than a workflow may have.
    "too deep": (chain(MAX_WORKFLOW_DEPTH + 1, 1),
                 f"then: `then` nests at most {MAX_WORKFLOW_DEPTH} deep"),
    # 10 + 100 + 1,000 follow-ups from one message, each step within the per-task width.
    "too many": (chain(3, 10), f"then: a workflow holds at most {MAX_WORKFLOW_TASKS} follow-ups"),
}


@pytest.mark.parametrize("case", list(OVER_CAPS))
async def test_a_then_chain_over_the_gateways_caps_is_rejected_before_it_fans_out(
    case: str, runtime: Runtime, amqp_channel: AbstractChannel,
) -> None:
    then, reason = OVER_CAPS[case]
    task_id = f"chain-{case.replace(' ', '-')}-{uuid.uuid4()}"

    await publish(amqp_channel, json.dumps({"payload": {"seconds": 0}, "then": then}).encode(),
                  task_id)

    await assert_rejected_once(runtime, amqp_channel, task_id, reason)
