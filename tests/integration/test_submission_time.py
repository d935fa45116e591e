"""A task published straight to its exchange is `queued` at the time its body says it was
submitted, not when the projector got to it: the history reads in order of time."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from contracts import names
from contracts.messages import utcnow
from contracts.projection import TaskState
from contracts.statuses import Status
from infra.runtime.settings.system import SystemSettings
from taskproc.tasks.sleep import SLEEP
from tests.support.runtime import Runtime, worker_and_projector
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
async def runtime(settings: SystemSettings) -> AsyncIterator[Runtime]:
    async with worker_and_projector(settings, SLEEP, name="submission-time") as running:
        yield running


async def test_queued_is_dated_by_the_submitter_and_comes_first(
    runtime: Runtime, amqp_channel: AbstractChannel,
) -> None:
    task_id = f"submitted-{uuid.uuid4()}"
    # Whole milliseconds, as MongoDB keeps times; earlier than any clock the services read.
    submitted = (utcnow() - timedelta(seconds=2)).replace(microsecond=123_000)
    body = {"payload": {"seconds": 0}, "submitted_at": submitted.isoformat()}
    exchange = await amqp_channel.get_exchange(names.task_exchange("sleep"), ensure=False)
    await exchange.publish(aio_pika.Message(json.dumps(body).encode(), message_id=task_id,
                                            content_type="application/json"),
                           routing_key="sleep")

    async def succeeded() -> TaskState | None:
        state = await runtime.store.get(task_id)
        return state if state is not None and state.status is Status.SUCCEEDED else None

    async def with_queued() -> TaskState | None:
        state = await succeeded()
        has_queued = state is not None and Status.QUEUED in [h.status for h in state.history]
        return state if has_queued else None

    state = await eventually(with_queued, timeout_s=30, what=f"{task_id} succeeded and queued")
    assert [h.status for h in state.history] == [Status.QUEUED, Status.RUNNING,
                                                 Status.SUCCEEDED]
    assert state.history[0].at == submitted == state.created_at
    stamps = [h.at for h in state.history]
    assert stamps == sorted(stamps)
