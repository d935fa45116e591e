"""RabbitMQ away: the gateway answers 503 (never a hang, never a half-recorded task), and every
process finds the broker again by itself."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from contracts.statuses import Status
from tests.faults.amqp import ctl
from tests.faults.scoreboard import Expect, Row
from tests.faults.system import System
from tests.faults.tracking import TrackerFactory, assert_passed, until, webhook
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends
from tests.support.waiting import eventually

NewRow = Callable[[str], Row]
PUBLISH_TIMEOUT_S = 2.0
HELD = 8  # calls the webhook worker holds when the broker stops (its prefetch is 16)


async def queue_report(vhost: str) -> str:
    """Messages, unacked messages and consumers per task queue, as ops would check."""
    table = await ctl("list_queues", "-p", vhost, "name", "messages_ready",
                      "messages_unacknowledged", "consumers")
    return "; ".join(line for line in table.splitlines()
                     if line.startswith(("tasks.webhook\t", "projector.")))


@pytest.mark.timeout(240)
async def test_broker_restart_under_load(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
    local_services: Backends,
) -> None:
    """Steady submissions while the whole broker stops (`rabbitmqctl stop_app`) for a few
    seconds and starts again: 503 while it is away, 202 after; the worker and the projector
    reconnect without being restarted, and no accepted task is lost. The broker stops while
    the worker holds tasks: the receiver answers none of its calls until then."""
    row = new_row("3. broker restart under load (stop_app / start_app)")
    # The held calls must still be waiting when the broker is gone (stop_app takes seconds).
    url = await system.start(workers=("webhook",), PUBLISH_TIMEOUT_S=str(PUBLISH_TIMEOUT_S),
                             WEBHOOK_TIMEOUT_S="60")
    tracker = tracker_for(row, url)
    started = {process.name: process.pid for process in system.processes}
    stop = asyncio.Event()
    prefix = "/s3/"

    def task(i: int) -> tuple[dict[str, object], Expect]:
        return webhook(receiver.url(f"{prefix}{i}")), Expect(Status.SUCCEEDED)

    async with tracker.watching():
        submitting = asyncio.create_task(
            tracker.submit_continuously(task, stop, concurrency=6, interval_s=0.15,
                                        limit=5000))
        try:
            await until(lambda: row.accepted >= 80, timeout_s=30, what="80 tasks accepted")
            try:
                with receiver.holding(prefix):
                    await until(lambda: receiver.in_progress(prefix) >= HELD, timeout_s=30,
                                what=f"the worker to hold {HELD} calls")
                    held = receiver.in_progress(prefix)
                    # From here until a request sent after the restart is accepted, a 503 is
                    # the promised answer; any other refusal, or a 503 after that, fails the row.
                    outage = tracker.expect_refusals(503, why="broker stopped (stop_app)")
                    down_at = time.monotonic()
                    await ctl("stop_app")
                stopped_at = time.monotonic()
                await until(lambda: row.refused >= 3, timeout_s=15,
                            what="503 answers while the broker is away")
            finally:
                starting_at = time.monotonic()
                await ctl("start_app")
                await ctl("await_startup")
            back_at = time.monotonic()
            await until(lambda: tracker.accepted_since(back_at) > 0, timeout_s=60,
                        what="a 202 for a request sent once the broker is back")
            outage.close()
            accepted_before = row.accepted
            await until(lambda: row.accepted >= accepted_before + 80, timeout_s=60,
                        what="202 answers again once the broker is back")
        finally:
            stop.set()
            await submitting
        converged = await tracker.converge(timeout_s=45)

    again = [s for s in tracker.submissions if s.task_id and s.sent_at > back_at]
    first_again = min((s.sent_at + s.latency_s for s in again), default=back_at) - back_at
    row.note(f"stop_app with {held} task(s) held by the worker; "
             f"broker away {back_at - down_at:.1f} s (stop_app {stopped_at - down_at:.1f} s, "
             f"start_app {back_at - starting_at:.1f} s); first 202 {first_again:.1f} s after; "
             f"{tracker.refused_but_run()} refused request(s) ran all the same")
    if not converged:
        row.note(f"queues then: {await queue_report(local_services.vhost)}")
    restarted = [p.name for p in system.processes
                 if p.name in started and (not p.running() or started[p.name] != p.pid)]
    assert not restarted, f"processes died instead of reconnecting: {restarted}"
    assert row.refused > 0, "the gateway must answer 503 while the broker is away"
    assert held >= HELD, "the broker must stop while the worker holds tasks"
    assert_passed(row, converged, system.logs())


async def test_broker_down_at_submit(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
    local_services: Backends,
) -> None:
    """While the broker refuses this vhost (permissions cleared, connections closed) every
    `POST /tasks` answers 503 within PUBLISH_TIMEOUT_S + 2 s and nothing is recorded; once
    permissions are back, 202 again and the tasks run."""
    row = new_row("4. broker down at submit (per vhost: permissions cleared)")
    url = await system.start(workers=("webhook",), PUBLISH_TIMEOUT_S=str(PUBLISH_TIMEOUT_S))
    tracker = tracker_for(row, url)
    vhost = local_services.vhost
    test_began = datetime.now(UTC)
    await tracker.submit_all((webhook(receiver.url(f"/s4/before/{i}")),
                              Expect(Status.SUCCEEDED)) for i in range(60))

    away_from = datetime.now(UTC)
    # Every request from here until one is accepted again may get a 503, and only a 503; the
    # 60 before and the 100 after must all be accepted.
    outage = tracker.expect_refusals(503, why="vhost permissions cleared")
    try:
        await ctl("clear_permissions", "-p", vhost, "guest")
        await ctl("close_all_connections", "--vhost", vhost, "fault test: broker away")
        during = await tracker.submit_all(
            ((webhook(receiver.url(f"/s4/away/{i}")), Expect(Status.SUCCEEDED))
             for i in range(30)), concurrency=6)
        recorded = await tracker.tasks.count_documents({"created_at": {"$gte": away_from}})
    finally:
        await ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    away_until = datetime.now(UTC)

    async def accepted_again() -> bool:
        answer = await tracker.submit(webhook(receiver.url(f"/s4/probe/{row.submitted}")),
                                      Expect(Status.SUCCEEDED))
        return answer.task_id is not None

    async with tracker.watching():
        await eventually(accepted_again, timeout_s=30, interval_s=0.5,
                         what="202 once permissions are back")
        outage.close()
        await tracker.submit_all((webhook(receiver.url(f"/s4/after/{i}")),
                                  Expect(Status.SUCCEEDED)) for i in range(100))
        converged = await tracker.converge(timeout_s=60)

    slowest = max(s.latency_s for s in during)
    codes = sorted({s.code or 0 for s in during})
    half_recorded = await tracker.tasks.count_documents(
        {"created_at": {"$gte": away_from, "$lt": away_until}})
    ran = sum(1 for d in list(receiver.deliveries) if d.path.startswith("/s4/away/"))
    # The same query must see the tasks accepted before the outage, or it proves nothing.
    assert await tracker.tasks.count_documents(
        {"created_at": {"$gte": test_began, "$lt": away_from}}) >= 60
    row.note(f"while away: answers {codes}, slowest {slowest:.1f} s; {recorded} recorded, "
             f"{half_recorded} recorded later, {ran} run")
    assert codes == [503], f"answers while the broker was away: {codes}"
    assert slowest <= PUBLISH_TIMEOUT_S + 2, f"a 503 took {slowest:.1f} s"
    assert recorded == half_recorded == ran == 0, "a refused task left a trace"
    assert_passed(row, converged, system.logs())
