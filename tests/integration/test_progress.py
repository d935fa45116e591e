"""Progress through real RabbitMQ and MongoDB: the gateway (over ASGI), a `sleep` worker with a
handler of the test's own, and the projector, in process. A report reaches `GET /tasks/{id}`
while the task runs and stays out of its history; a handler reporting in a tight loop is not
slowed down, and the broker sees a few reports a second, not thousands. The store keeps no
report of a task it does not have.

The worker publishes `running` only after RUNNING_EVENT_AFTER_MS, 60 s here, longer than any of
these tasks: what makes them `running` in the read model, so that it takes their reports, is
the `running` a first report publishes at once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractQueue

from consumers.bootstrap import run_worker
from contracts import names
from contracts.messages import ProgressEvent, StatusEvent
from contracts.projection import Progress
from contracts.statuses import Status
from gateway.app import create_app
from infra.composition import mongo_adapters
from infra.runtime.settings.system import SystemSettings
from projector.bootstrap import run_projector
from taskproc.context import TaskContext
from taskproc.handler import TaskHandler
from taskproc.tasks.sleep import SLEEP, SleepPayload
from tests.support.keys import bearer
from tests.support.services import Backends
from tests.support.waiting import eventually

GATED = 2.0  # payload `seconds` that selects the gated handler
LOOPING = 1.0  # ... and the one that reports 10,000 times
REPORTS = 10_000
LOOP_S = 1.5  # how long the looping handler keeps reporting


@dataclass
class Handler:
    """What the test's handler did, and the gate the gated task waits at."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    reporting_s: float = 0.0  # time spent inside ctx.progress by the looping task

    async def handle(self, payload: SleepPayload, ctx: TaskContext) -> dict[str, Any]:
        if payload.seconds == GATED:
            await ctx.progress(0.5, "half way")
            await self.release.wait()
            return {"gated": True}
        started = time.monotonic()
        for step in range(REPORTS):
            before = time.perf_counter()
            await ctx.progress(step / REPORTS, f"step {step}")
            self.reporting_s += time.perf_counter() - before
            if step % 1000 == 999:  # real work between batches of reports
                await asyncio.sleep(LOOP_S / (REPORTS / 1000))
        return {"steps": REPORTS, "took_s": time.monotonic() - started}


@dataclass(frozen=True)
class Stack:
    http: httpx.AsyncClient
    handler: Handler
    progress_tap: AbstractQueue

    async def submit(self, seconds: float) -> str:
        answer = await self.http.post("/tasks", json={"task_type": "sleep",
                                                      "payload": {"seconds": seconds}})
        assert answer.status_code == 202, answer.text
        task_id: str = answer.json()["task_id"]
        return task_id

    async def task(self, task_id: str) -> dict[str, Any]:
        answer = await self.http.get(f"/tasks/{task_id}")
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    async def wait_status(self, task_id: str, status: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            found = await self.task(task_id)
            return found if found["status"] == status else None

        result: dict[str, Any] = await eventually(probe, timeout_s=30,
                                                  what=f"task {task_id} {status}")
        return result

    async def progress_events(self, task_id: str) -> list[tuple[dict[str, Any], str | None]]:
        """(body, AMQP type) of each `<type>.progress` message of the task received so far."""
        found = []
        while (message := await self.progress_tap.get(no_ack=True, fail=False)) is not None:
            body = json.loads(message.body)
            if body["task_id"] == task_id:
                found.append((body, message.type))
        return found


@pytest.fixture(scope="module")
async def stack(settings: SystemSettings, services: Backends, api_key: str) -> AsyncIterator[Stack]:
    settings = settings.model_copy(update={"process_name": "progress", "metrics_port": 0,
                                           "running_event_after_ms": 60_000})
    app = create_app(settings)
    handler = Handler()
    stop = asyncio.Event()
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection, app.router.lifespan_context(app):
        channel = await connection.channel()
        # As another service might: only the progress reports of `sleep`.
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(names.EVENTS_EXCHANGE, names.event_routing_key("sleep", names.PROGRESS))
        worker = asyncio.create_task(run_worker(settings, "sleep", stop=stop,
                                                handler=TaskHandler(SLEEP, handler.handle)))
        projector = asyncio.create_task(run_projector(settings, stop=stop))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://gateway", timeout=10,
                                         headers=bearer(api_key)) as http:
                yield Stack(http=http, handler=handler, progress_tap=tap)
        finally:
            handler.release.set()
            stop.set()
            await asyncio.gather(worker, projector)


async def test_a_report_shows_in_get_while_running_and_stays_out_of_the_history(
    stack: Stack,
) -> None:
    task_id = await stack.submit(GATED)

    async def reported() -> dict[str, Any] | None:
        found = await stack.task(task_id)
        return found if found["progress"] is not None else None

    running = await eventually(reported, timeout_s=30, what=f"progress of task {task_id}")
    stack.handler.release.set()
    done = await stack.wait_status(task_id, "succeeded")
    published = await stack.progress_events(task_id)

    # Long before the worker's delay ran out: the report published `running` first.
    assert running["status"] == "running"
    assert running["started_at"] is not None
    assert running["progress"]["fraction"] == 0.5
    assert running["progress"]["message"] == "half way"
    assert [step["status"] for step in running["history"]] == ["queued", "running"]
    # The last report of the attempt is kept once it ends; it never became a history entry.
    assert done["progress"] == running["progress"]
    assert [step["status"] for step in done["history"]] == ["queued", "running", "succeeded"]
    assert [(body["fraction"], kind) for body, kind in published] == [
        (0.5, names.PROGRESS_EVENT_TYPE)]
    assert "status" not in published[0][0]


async def test_ten_thousand_reports_in_a_loop_cost_little_and_reach_the_broker_throttled(
    stack: Stack,
) -> None:
    task_id = await stack.submit(LOOPING)

    done = await stack.wait_status(task_id, "succeeded")
    # Routed before `succeeded` was published on the same channel: all in the tap by now.
    published = await stack.progress_events(task_id)

    took_s = done["result"]["took_s"]
    assert took_s < LOOP_S + 1.0  # the loop's own sleeps, plus little
    assert stack.handler.reporting_s < 0.5  # 10,000 calls; each returns at once
    # At most one report per 0.25 s window, plus the first.
    assert 2 <= len(published) <= took_s / 0.25 + 1
    fractions = [body["fraction"] for body, _ in published]
    assert fractions == sorted(fractions)
    assert done["progress"] is not None  # one of the loop's reports, kept after success
    assert done["progress"]["fraction"] in fractions



async def test_the_store_keeps_a_report_of_a_running_task_and_ignores_one_of_an_unknown_task(
    settings: SystemSettings,
) -> None:
    mongo = mongo_adapters(settings)
    known, unknown = f"progress-{uuid.uuid4()}", f"progress-{uuid.uuid4()}"
    at = datetime(2026, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    try:
        await mongo.tasks.apply(StatusEvent(task_id=known, task_type="sleep",
                                            status=Status.RUNNING, attempt=1, worker="w"))
        states = await mongo.tasks.apply_many([
            ProgressEvent(task_id=known, task_type="sleep", attempt=1, fraction=0.25,
                          message="a quarter", at=at, worker="w"),
            ProgressEvent(task_id=unknown, task_type="sleep", attempt=1, fraction=0.5,
                          worker="w"),
        ])
        stored = await mongo.tasks.get(known)
        never = await mongo.tasks.get(unknown)
    finally:
        await mongo.close()

    assert set(states) == {known}
    assert stored is not None
    assert stored.progress == Progress(fraction=0.25, message="a quarter", at=at)
    assert [entry.status for entry in stored.history] == [Status.RUNNING]
    assert never is None
