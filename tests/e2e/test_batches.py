"""Batches on the real system: one invalid task publishes nothing to RabbitMQ; a valid batch of
1,000 runs to the end and `GET /batches/{id}` counts it; an Idempotency-Key repeat publishes
nothing more."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractQueue

from contracts import names
from tests.e2e.conftest import Api
from tests.support.amqp import Queues
from tests.support.waiting import eventually


def sleeps(count: int) -> list[dict[str, Any]]:
    return [{"task_type": "sleep", "payload": {"seconds": 0}} for _ in range(count)]


@pytest.fixture
async def sleep_tap(queues: Queues) -> AsyncIterator[AbstractQueue]:
    """A queue of the test's own bound to exchange `tasks.sleep.recorded`, as another service may
    bind one: a copy of every sleep task the gateway publishes from now on, whoever consumes the
    original."""
    tap = await queues.channel.declare_queue(f"test-tap-{uuid.uuid4().hex}", exclusive=True)
    await tap.bind(names.recorded_exchange("sleep"), "")
    yield tap
    await tap.delete(if_unused=False, if_empty=False)


async def drain(tap: AbstractQueue, until: str | None = None) -> list[str]:
    """The ids of the messages in `tap` (taken off it); with `until`, waits for that id."""
    seen: list[str] = []

    async def probe() -> list[str] | None:
        while (message := await tap.get(fail=False, timeout=5)) is not None:
            await message.ack()
            seen.append(str(message.message_id))
        return seen if until is None or until in seen else None

    return await eventually(probe, timeout_s=60, what=f"{until} in the tap")


async def test_a_batch_with_one_invalid_task_publishes_nothing(
    api: Api, http: httpx.AsyncClient, sleep_tap: AbstractQueue
) -> None:
    tasks = sleeps(1000)
    tasks[17] = {"task_type": "sleep", "payload": {"seconds": -1}}

    refused = await http.post("/tasks/batch", json={"tasks": tasks})
    # Published after the refusal: once it reached the tap, anything the batch published
    # would have reached it before.
    sentinel = await api.submit("sleep", {"seconds": 0})
    published = await drain(sleep_tap, until=sentinel)

    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"][:3] == ["body", "tasks", 17]
    assert published == [sentinel]


async def test_a_batch_of_1000_runs_to_the_end_and_a_repeat_publishes_nothing_more(
    http: httpx.AsyncClient, sleep_tap: AbstractQueue
) -> None:
    body = {"tasks": sleeps(1000), "labels": ["e2e-batch"]}
    headers = {"Idempotency-Key": f"batch-{uuid.uuid4()}"}

    accepted = await http.post("/tasks/batch", json=body, headers=headers)
    assert accepted.status_code == 202, accepted.text
    batch_id, task_ids = accepted.json()["batch_id"], accepted.json()["task_ids"]

    async def all_succeeded() -> dict[str, Any] | None:
        view = await http.get(f"/batches/{batch_id}")
        assert view.status_code == 200, view.text
        return view.json() if view.json()["counts"].get("succeeded") == 1000 else None

    done = await eventually(all_succeeded, timeout_s=180, what=f"batch {batch_id} done")
    repeat = await http.post("/tasks/batch", json=body, headers=headers)
    published = await drain(sleep_tap)

    assert len(set(task_ids)) == 1000
    assert done == {"batch_id": batch_id, "total": 1000, "counts": {"succeeded": 1000}}
    assert repeat.status_code == 202
    assert repeat.json() == accepted.json()
    assert sorted(published) == sorted(task_ids)  # each once; the repeat published nothing


async def test_an_unknown_batch_is_not_found(http: httpx.AsyncClient) -> None:
    unknown = await http.get(f"/batches/{uuid.uuid4()}")

    assert unknown.status_code == 404
