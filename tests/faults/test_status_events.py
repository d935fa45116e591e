"""Status events delivered twice and out of order: the read model ends at each task's newest
status and never steps back."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from contracts import names
from contracts.messages import StatusEvent
from contracts.statuses import Status
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.publishing import publish_event
from tests.faults.amqp import queue_state
from tests.faults.scoreboard import Expect, Row, rank
from tests.faults.system import System
from tests.faults.tracking import TrackerFactory, assert_passed
from tests.support.services import Backends
from tests.support.waiting import eventually

NewRow = Callable[[str], Row]
S = Status

# What the workers would have reported for a task, in the order it happened.
HISTORIES: dict[str, list[tuple[Status, int]]] = {
    "succeeded": [(S.QUEUED, 0), (S.RUNNING, 1), (S.SUCCEEDED, 1)],
    "succeeded on retry": [(S.QUEUED, 0), (S.RUNNING, 1), (S.RETRYING, 1), (S.RUNNING, 2),
                           (S.SUCCEEDED, 2)],
    "failed after retries": [(S.QUEUED, 0), (S.RUNNING, 1), (S.RETRYING, 1), (S.RUNNING, 2),
                             (S.RETRYING, 2), (S.RUNNING, 3), (S.FAILED, 3)],
    "dead": [(S.QUEUED, 0), (S.RUNNING, 1), (S.DEAD, 1)],
    # Redelivered after its outcome was published (a crash before the ack): a late `running`.
    "redelivered after its outcome": [(S.QUEUED, 0), (S.RUNNING, 1), (S.SUCCEEDED, 1),
                                      (S.RUNNING, 1)],
}


@pytest.mark.timeout(240)
async def test_duplicate_and_out_of_order_events(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, broker: Broker,
    local_services: Backends,
) -> None:
    """200 tasks' events, each published one to three times, all shuffled together, to
    exchange task-events: every task ends at its newest status and attempt."""
    row = new_row("11. duplicate and out-of-order status events (200 tasks)")
    url = await system.start(workers=(), with_projector=False)
    projector = await system.start_projector()
    tracker = tracker_for(row, url)
    row.duplicate_effects = None  # no task runs here: there is no side effect to count
    rng = random.Random(11)
    start = datetime.now(UTC)
    events: list[StatusEvent] = []
    distinct = 0
    for i in range(200):
        task_id = f"s11-{uuid.uuid4()}"
        history = HISTORIES[list(HISTORIES)[i % len(HISTORIES)]]
        distinct += len(history)
        for step, (status, attempt) in enumerate(history):
            event = StatusEvent(task_id=task_id, task_type="webhook", status=status,
                                attempt=attempt, worker="faults/events",
                                at=start + timedelta(milliseconds=step))
            events += [event] * rng.randint(1, 3)
        newest_status, newest_attempt = max(history, key=lambda step: rank(*step))
        tracker.track(task_id, Expect(newest_status, attempt=newest_attempt, effects=0))
    rng.shuffle(events)
    gate = asyncio.Semaphore(32)

    async def publish(event: StatusEvent) -> None:
        async with gate:
            await publish_event(broker, event)

    async with tracker.watching():
        await asyncio.gather(*(publish(event) for event in events))

        queue = names.PROJECTOR_EVENTS_QUEUE

        async def state() -> tuple[int, int]:
            return await queue_state(local_services.rabbitmq_url, queue)

        async def all_projected() -> None:
            # Late duplicates and older events must have been applied before the final look.
            # Once the queue has handed every event to the projector, stop the projector: it
            # acks what it has stored; anything else goes back to the queue, where it shows
            # once RabbitMQ has let go of its consumer.
            await eventually(lambda: _is(state, ready=0), timeout_s=30,
                             what=f"{queue} to hand out every event")
            code = await asyncio.to_thread(projector.stop, 30.0)
            ready, _ = await eventually(lambda: _is(state, consumers=0), timeout_s=30,
                                        what=f"the projector's consumer gone from {queue}")
            assert ready == 0, f"{ready} event(s) not applied; projector exit {code}"

        converged = await tracker.converge(timeout_s=60, settle=all_projected)

    row.note(f"{len(events)} events published in shuffled order, {len(events) - distinct} of "
             "them duplicates")
    assert_passed(row, converged, system.logs())


async def _is(
    read: Callable[[], Awaitable[tuple[int, int]]], *, ready: int | None = None,
    consumers: int | None = None,
) -> tuple[int, int] | None:
    """The queue's (ready, consumers) if it matches what is given, else None."""
    now = await read()
    matches = ready in (None, now[0]) and consumers in (None, now[1])
    return now if matches else None
