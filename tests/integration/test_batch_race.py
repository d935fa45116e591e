"""Identical batches racing with one Idempotency-Key, on real RabbitMQ and MongoDB: two gateways'
use cases (each its own connections) take three identical requests released together, trial
after trial, and a queue of the test's own bound to `tasks.sleep.recorded` counts what was
published. Each task must be published once per batch, however the race falls; every request
answers the batch's ids or "in progress"."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from contextlib import AsyncExitStack

from aio_pika.abc import AbstractChannel

from contracts import names
from infra.composition import connected_task_service
from infra.runtime.settings.system import SystemSettings
from service.batches import BatchAccepted, SubmitBatch, submit_batch
from service.commands import SubmitTask
from service.dependencies import Dependencies
from service.errors import IdempotencyInProgress
from tests.support.amqp import Queues

TRIALS = 10
TASKS = 10
RACERS = 3


async def race(gateways: list[Dependencies], batch: SubmitBatch) -> list[BatchAccepted | None]:
    """Send `batch` RACERS times at once, round-robin over `gateways`: each answer, None for
    "in progress". The barrier lets no request reach the key before every one is ready."""
    together = asyncio.Barrier(RACERS)

    async def one(deps: Dependencies) -> BatchAccepted | None:
        async with asyncio.timeout(10):
            await together.wait()
        try:
            return await submit_batch(deps, batch, source="http")
        except IdempotencyInProgress:
            return None

    return await asyncio.gather(*(one(gateways[n % len(gateways)]) for n in range(RACERS)))


async def test_identical_batches_racing_with_one_key_publish_each_task_once(
    settings: SystemSettings, amqp_channel: AbstractChannel,
) -> None:
    tasks = tuple(SubmitTask(task_type="sleep", payload={"seconds": 0}) for _ in range(TASKS))
    expected: list[str] = []
    answers: list[BatchAccepted | None] = []
    published: Counter[str] = Counter()
    async with AsyncExitStack() as stack:
        gateways = [(await stack.enter_async_context(
            connected_task_service(settings, name=f"batch race gateway {n}"))).deps
            for n in range(2)]
        await gateways[0].publisher.ping()  # declares the topology the tap binds to
        tap = await amqp_channel.declare_queue(exclusive=True)
        await tap.bind(names.recorded_exchange("sleep"), "")
        try:
            for _ in range(TRIALS):
                batch = SubmitBatch(tasks, idempotency_key=f"race-{uuid.uuid4()}")
                found = await race(gateways, batch)
                accepted = [answer for answer in found if answer is not None]
                assert accepted, "every request of a trial answered 'in progress'"
                assert all(answer == accepted[0] for answer in accepted)
                expected += accepted[0].task_ids
                answers += found
            # A publish is confirmed only once RabbitMQ has routed it to every bound queue, and
            # every request has returned: the tap already holds all that was published.
            while (message := await tap.get(fail=False, timeout=5)) is not None:
                await message.ack()
                published[str(message.message_id)] += 1
        finally:
            # No worker runs here: leave no task for a later test's worker to find.
            await Queues(amqp_channel).purge(names.task_queue("sleep"))

    total = sum(published.values())
    assert sorted(published) == sorted(expected)
    assert total == TRIALS * TASKS, (
        f"{total} publishes of {TRIALS * TASKS} tasks in {TRIALS} trials of {RACERS} requests; "
        f"{answers.count(None)} answered in progress")
