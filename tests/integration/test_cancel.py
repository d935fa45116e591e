"""Cancelling against real RabbitMQ and MongoDB: the gateway's use case (its real wiring) and
worker processes' runtimes (the real bootstrap, `run_worker`) on this event loop, each started
and stopped by the test, so the order of every step is the test's own.

A probe handler for `sleep` tells what it ran: which attempts started, which saw
CancelledError, and which ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import pytest
from aio_pika.abc import AbstractChannel

from consumers.bootstrap import run_worker
from contracts import names
from contracts.control import CancelRequest
from contracts.messages import utcnow
from contracts.statuses import Status
from infra.composition import Connected, connected_task_service
from infra.runtime.settings.system import SystemSettings
from service.cancel import cancel_task
from service.commands import SubmitTask
from service.submit import submit
from taskproc.context import TaskContext
from taskproc.failures import Retry
from taskproc.handler import TaskHandler
from taskproc.tasks.sleep import SLEEP, SleepPayload
from tests.e2e.conftest import EventTap
from tests.support.amqp import Queues
from tests.support.waiting import eventually

QUEUE = names.task_queue("sleep")


@dataclass
class Probe:
    """What the probe handler saw, by task id."""

    started: dict[str, list[int]] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    # Who ran each attempt: the label of the worker whose handler it was.
    ran_by: dict[str, str] = field(default_factory=dict)
    # Every first attempt asks for a retry in 5 s.
    fail_first: bool = False

    def handler(self, label: str) -> TaskHandler[SleepPayload, None]:
        async def probe_sleep(payload: SleepPayload, ctx: TaskContext) -> dict[str, float]:
            self.started.setdefault(ctx.task_id, []).append(ctx.attempt)
            self.ran_by[ctx.task_id] = label
            if self.fail_first and ctx.attempt == 1:
                raise Retry("the first attempt fails", delay_s=5)
            try:
                await asyncio.sleep(payload.seconds)
            except asyncio.CancelledError:
                self.cancelled.append(ctx.task_id)  # the handler may clean up here
                raise
            self.finished.append(ctx.task_id)
            return {"slept_s": payload.seconds}

        return TaskHandler(SLEEP, probe_sleep)


@pytest.fixture
def worker_settings(settings: SystemSettings) -> SystemSettings:
    # No metrics servers (two workers of a type share this process); a quick reload, so the
    # test of a lost control message does not wait 30 s.
    return settings.model_copy(update={"metrics_port": 0, "cancel_refresh_s": 0.5})


@pytest.fixture
async def gateway(settings: SystemSettings) -> AsyncIterator[Connected]:
    async with connected_task_service(settings, name="integration cancel gateway") as connected:
        yield connected


@pytest.fixture
async def events(amqp_channel: AbstractChannel) -> EventTap:
    queue = await amqp_channel.declare_queue(exclusive=True)
    await queue.bind(names.EVENTS_EXCHANGE, "sleep.#")
    return EventTap(queue)


@pytest.fixture
async def empty(queues: Queues) -> Queues:
    """The sleep queues, emptied of what earlier tests left."""
    await queues.purge(QUEUE)
    for tier in names.RETRY_TIERS_S:
        await queues.purge(names.retry_queue("sleep", tier))
    return queues


class StartWorker(Protocol):
    def __call__(self, label: str, **settings: Any) -> Awaitable[asyncio.Event]: ...


@pytest.fixture
async def workers(
    worker_settings: SystemSettings, probe: Probe, amqp_channel: AbstractChannel
) -> AsyncIterator[StartWorker]:
    """`stop = await start("a")`: a sleep worker runtime, consuming once this returns; keyword
    arguments override its settings."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(label: str, **settings: Any) -> asyncio.Event:
        stop = asyncio.Event()
        own = worker_settings.model_copy(update=settings)
        task = asyncio.create_task(run_worker(own, "sleep", role=f"-{label}",
                                              handler=probe.handler(label), stop=stop))
        running.append((stop, task))
        before = await consumers_of(amqp_channel)
        await eventually(lambda: consumer_added(amqp_channel, before),
                         what=f"worker {label} consuming {QUEUE}")
        return stop

    yield start
    for stop, _ in running:
        stop.set()
    await asyncio.gather(*(task for _, task in running))


async def consumers_of(channel: AbstractChannel) -> int:
    queue = await channel.declare_queue(QUEUE, passive=True)
    return queue.declaration_result.consumer_count or 0


async def consumer_added(channel: AbstractChannel, before: int) -> bool:
    return await consumers_of(channel) > before


@pytest.fixture
def probe() -> Probe:
    return Probe()


async def submit_sleep(gateway: Connected, seconds: float, **options: Any) -> str:
    command = SubmitTask(task_type="sleep", payload={"seconds": seconds}, **options)
    return await submit(gateway.deps, command, source="http")


async def cancel(gateway: Connected, task_id: str) -> Status:
    state = await cancel_task(gateway.deps, gateway.cancel, task_id)
    return state.status


async def status_of(gateway: Connected, task_id: str) -> Status | None:
    state = await gateway.deps.read_model.get(task_id)
    return None if state is None else state.status


async def test_a_task_cancelled_while_queued_never_runs(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    # Filled while no worker runs, cancelled, and only then a worker starts: it learns the
    # cancellation from MongoDB (the control message found no queue to go to).
    task_id = await submit_sleep(gateway, 0)
    assert await cancel(gateway, task_id) is Status.CANCELLED

    await workers("a")
    dropped = await events.wait_for(task_id, "cancelled")

    assert dropped["worker"].endswith("sleep-a")
    assert task_id not in probe.started
    assert await status_of(gateway, task_id) is Status.CANCELLED
    assert await empty.depth(QUEUE) == 0


async def test_a_running_task_is_stopped_and_its_message_acked(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    stop = await workers("a")
    task_id = await submit_sleep(gateway, 120)
    await events.wait_for(task_id, "running")

    assert await cancel(gateway, task_id) is Status.CANCELLED
    await events.wait_for(task_id, "cancelled")

    assert probe.cancelled == [task_id]
    assert task_id not in probe.finished
    # Stopped, the worker gives back whatever it has not acked: nothing comes back.
    stop.set()
    await eventually(lambda: no_consumer(empty.channel), what="the worker stopped")
    assert await empty.depth(QUEUE) == 0
    assert probe.started[task_id] == [1]
    assert await status_of(gateway, task_id) is Status.CANCELLED


async def test_a_running_task_that_published_no_running_yet_is_stopped_all_the_same(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    # `running` only after 60 s: the read model still says `queued` while the handler runs.
    await workers("a", running_event_after_ms=60_000)
    task_id = await submit_sleep(gateway, 1.5)  # under 2 s: `sleep` reports no progress
    await eventually(lambda: started(probe, task_id), what=f"task {task_id} started")
    assert await status_of(gateway, task_id) is Status.QUEUED

    assert await cancel(gateway, task_id) is Status.CANCELLED
    cancelled = await events.wait_for(task_id, "cancelled")

    assert probe.cancelled == [task_id]
    assert task_id not in probe.finished
    assert [event["status"] for event in await events.of(task_id)] == ["cancelled"]
    # The worker's `cancelled` says when the stopped attempt started.
    assert cancelled["attempt"] == 1
    assert datetime.fromisoformat(cancelled["started_at"]) <= datetime.fromisoformat(
        cancelled["at"])
    assert await status_of(gateway, task_id) is Status.CANCELLED
    assert await empty.depth(QUEUE) == 0


async def started(probe: Probe, task_id: str) -> bool:
    return task_id in probe.started


async def no_consumer(channel: AbstractChannel) -> bool:
    return await consumers_of(channel) == 0


async def test_a_copy_back_from_a_retry_tier_is_dropped(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    probe.fail_first = True  # attempt 1 asks for a retry in 5 s
    await workers("a")
    task_id = await submit_sleep(gateway, 0)
    await events.wait_for(task_id, "retrying")
    assert await empty.depth(names.retry_queue("sleep", 5)) == 1

    assert await cancel(gateway, task_id) is Status.CANCELLED
    dropped = await events.wait_for(task_id, "cancelled")

    # The copy came back as attempt 2 and went no further.
    assert dropped["attempt"] == 2
    assert probe.started[task_id] == [1]
    assert await empty.depth(names.retry_queue("sleep", 5)) == 0
    assert await empty.depth(QUEUE) == 0
    assert await status_of(gateway, task_id) is Status.CANCELLED


async def test_a_task_waiting_for_not_before_never_runs(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    await workers("a")
    task_id = await submit_sleep(gateway, 0, not_before=utcnow() + timedelta(seconds=3))
    # The worker parks it in a delay tier until its time: it is there once the queue is empty.
    await eventually(lambda: parked(empty), what="the task parked in a delay tier")

    assert await cancel(gateway, task_id) is Status.CANCELLED
    dropped = await events.wait_for(task_id, "cancelled")

    assert dropped["attempt"] == 1
    assert task_id not in probe.started
    assert await status_of(gateway, task_id) is Status.CANCELLED


async def parked(queues: Queues) -> bool:
    depths = [await queues.depth(names.retry_queue("sleep", t)) for t in names.RETRY_TIERS_S]
    return sum(depths) == 1


async def test_with_two_workers_the_one_running_the_task_stops_it(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    await workers("a")
    await workers("b")
    task_id = await submit_sleep(gateway, 120)
    running = await events.wait_for(task_id, "running")

    await cancel(gateway, task_id)
    cancelled = await events.wait_for(task_id, "cancelled")

    assert cancelled["worker"] == running["worker"]
    assert running["worker"] == f"test/sleep-{probe.ran_by[task_id]}"
    assert probe.cancelled == [task_id]
    # Both heard it; the other one only remembers it. Either one drops a redelivered copy.
    again = await submit_sleep(gateway, 120)
    await events.wait_for(again, "running")
    await cancel(gateway, again)
    await events.wait_for(again, "cancelled")
    assert probe.cancelled == [task_id, again]
    assert await empty.depth(QUEUE) == 0


async def test_a_worker_started_after_a_lost_control_message_learns_from_mongodb(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    # The gateway kept the cancellation and died before it published the control message.
    task_id = await submit_sleep(gateway, 0)
    await gateway.cancel.cancellations.add(
        CancelRequest(task_id=task_id, task_type="sleep", by="a gateway that died"))

    await workers("a")
    dropped = await events.wait_for(task_id, "cancelled")

    assert dropped["attempt"] == 1
    assert task_id not in probe.started


async def test_a_running_worker_that_missed_the_control_message_stops_the_task_on_reload(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    await workers("a")
    task_id = await submit_sleep(gateway, 120)
    await events.wait_for(task_id, "running")

    # Kept in MongoDB only: the worker's periodic reload (0.5 s here) finds it.
    await gateway.cancel.cancellations.add(
        CancelRequest(task_id=task_id, task_type="sleep", by="a gateway that died"))
    await events.wait_for(task_id, "cancelled")

    assert probe.cancelled == [task_id]


async def test_a_worker_restarted_after_the_cancel_learns_it_before_it_takes_a_task(
    gateway: Connected, workers: StartWorker, probe: Probe, empty: Queues, events: EventTap,
) -> None:
    stop = await workers("a")
    stop.set()
    await eventually(lambda: no_consumer(empty.channel), what="worker a stopped")
    task_id = await submit_sleep(gateway, 0)
    await cancel(gateway, task_id)

    await workers("a")
    dropped = await events.wait_for(task_id, "cancelled")

    assert dropped["worker"] == "test/sleep-a"
    assert task_id not in probe.started
    assert await empty.depth(QUEUE) == 0
