"""MongoDB away while tasks run: reads answer 503 quickly, the projector holds its events and
catches up once the server is back, and nothing is dead-lettered or quarantined meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from contracts import names
from contracts.statuses import Status
from tests.faults.amqp import Kept, drain
from tests.faults.scoreboard import Expect, Row
from tests.faults.system import System
from tests.faults.tracking import TaskTracker, TrackerFactory, assert_passed, until, webhook
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends, MongoServer

NewRow = Callable[[str], Row]
MONGODB_TIMEOUT_S = 1.0
PROJECTOR_QUEUES = (names.PROJECTOR_EVENTS_QUEUE, names.PROJECTOR_SUBMISSIONS_QUEUE,
                    names.PROJECTOR_DEAD_QUEUE)


async def read_while_down(tracker: TaskTracker, task_id: str) -> tuple[int | None, float]:
    """`GET /tasks/{id}` with a generous client deadline: its answer and how long it took."""
    start = time.monotonic()
    try:
        answer = await tracker.http.get(f"/tasks/{task_id}", timeout=MONGODB_TIMEOUT_S + 10)
    except httpx.HTTPError:  # a hang past the deadline, or a dropped connection: None
        return None, time.monotonic() - start
    return answer.status_code, time.monotonic() - start


def from_projector(kept: Kept) -> bool:
    """Quarantined by the projector itself, or dead-lettered out of one of its queues."""
    deaths: Any = kept.headers.get("x-death") or []
    queues = {str(death.get("queue")) for death in deaths if isinstance(death, dict)}
    original = kept.headers.get(names.HEADER_ORIGINAL_QUEUE)
    if isinstance(original, bytes):
        original = original.decode()
    return original in PROJECTOR_QUEUES or bool(queues & set(PROJECTOR_QUEUES))


@pytest.mark.timeout(180)
async def test_mongodb_down_while_projecting(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
    local_services: Backends,
) -> None:
    """A private nx-27017 behind the gateway and the projector is killed while tasks run and
    started again on the same port and data directory."""
    row = new_row("5. MongoDB down while projecting (private server killed, restarted)")
    mongo = MongoServer()
    await asyncio.to_thread(mongo.start)
    try:
        url = await system.start(workers=("webhook",), MONGODB_URL=mongo.url,
                                 MONGODB_TIMEOUT_S=str(MONGODB_TIMEOUT_S))
        tracker = tracker_for(row, url, mongodb_url=mongo.url)
        stop = asyncio.Event()

        def task(i: int) -> tuple[dict[str, object], Expect]:
            return webhook(receiver.url(f"/slow/s5/{i}")), Expect(Status.SUCCEEDED)

        async with tracker.watching():
            submitting = asyncio.create_task(
                tracker.submit_continuously(task, stop, concurrency=4, interval_s=0.15,
                                            limit=2000))
            try:
                await until(lambda: row.accepted >= 80, timeout_s=30, what="80 tasks accepted")
                known = next(iter(tracker.expected))
                await asyncio.to_thread(mongo.stop)
                called_before = len(receiver.deliveries)
                reads = [await read_while_down(tracker, known) for _ in range(3)]
                await until(lambda: len(receiver.deliveries) >= called_before + 30,
                            timeout_s=30, what="tasks running on while MongoDB is away")
                await asyncio.to_thread(mongo.start)
                accepted_before = row.accepted
                await until(lambda: row.accepted >= accepted_before + 60, timeout_s=30,
                            what="more tasks accepted after MongoDB is back")
            finally:
                stop.set()
                await submitting
            converged = await tracker.converge(timeout_s=60)
    finally:
        await asyncio.to_thread(mongo.close)

    quarantined = [k for k in await drain(local_services.rabbitmq_url, names.QUARANTINE_QUEUE)
                   if from_projector(k)]
    held = sum(p.log().count("holding event") for p in system.processes
               if p.name.startswith("projector"))
    codes = [code for code, _ in reads]
    slowest = max(took for _, took in reads)
    row.note(f"GET while MongoDB away: {codes}, slowest {slowest:.1f} s; "
             f"projector held events {held} time(s); {len(quarantined)} projector message(s) "
             "quarantined")
    assert codes == [503] * len(reads), f"reads while MongoDB was away answered {codes}"
    assert slowest <= MONGODB_TIMEOUT_S + 2, f"a read took {slowest:.1f} s"
    assert not quarantined, "the projector gave up on messages during the outage"
    assert_passed(row, converged, system.logs())
