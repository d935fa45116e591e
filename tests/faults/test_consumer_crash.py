"""Consumers killed, stopped or crashed while tasks are in flight: nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from contracts import names
from contracts.statuses import Status
from tests.faults.amqp import drain
from tests.faults.crashing_worker import CRASH_EXIT_CODE, CRASH_PATH
from tests.faults.scoreboard import Expect, Final, Row
from tests.faults.system import System
from tests.faults.tracking import TrackerFactory, assert_passed, until, webhook
from tests.support.processes import ServiceProcess
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends
from tests.support.waiting import eventually

NewRow = Callable[[str], Row]
HELD = 8  # calls the worker holds when it is killed (its prefetch is 16)
# Calls held at the receiver must still be in flight when the worker is stopped: no timeout.
PATIENT_CALLS = {"WEBHOOK_TIMEOUT_S": "60"}


def text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def delivered_under(receiver: WebhookReceiver, prefix: str) -> int:
    return sum(1 for delivery in receiver.deliveries if delivery.path.startswith(prefix))


async def wait_delivered(receiver: WebhookReceiver, prefix: str, at_least: int) -> None:
    async def enough() -> bool:
        return delivered_under(receiver, prefix) >= at_least

    await eventually(enough, timeout_s=60, what=f"{at_least} webhook calls under {prefix}")


async def test_consumer_sigkill_mid_task(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
) -> None:
    """200 webhook tasks answered in 0.4 s each; twice, the receiver stops answering until the
    worker holds at least HELD calls, the worker is SIGKILLed then and a new one started: every
    task ends succeeded. The kill cannot miss: no call it holds can finish first."""
    row = new_row("1. consumer SIGKILL mid-task")
    url = await system.start(workers=())
    victim = await system.start_worker("webhook", **PATIENT_CALLS)
    tracker = tracker_for(row, url)
    prefix = "/slow/s1/"
    tasks = 200

    async with tracker.watching():
        submitting = asyncio.create_task(tracker.submit_all(
            (webhook(receiver.url(f"{prefix}{i}")), Expect(Status.SUCCEEDED))
            for i in range(tasks)))
        try:
            for share in (4, 2):
                await wait_delivered(receiver, prefix, tasks // share)
                with receiver.holding(prefix):
                    await until(lambda: receiver.in_progress(prefix) >= HELD, timeout_s=30,
                                what=f"the worker to hold {HELD} calls")
                    held = receiver.in_progress(prefix)
                    victim.kill()
                row.note(f"SIGKILL after {delivered_under(receiver, prefix)} calls, "
                         f"{held} task(s) held in flight")
                assert held >= HELD, "the kill must hit tasks in flight"
                victim = await system.start_worker("webhook", **PATIENT_CALLS)
        finally:
            await submitting
        converged = await tracker.converge(timeout_s=60)

    assert_passed(row, converged, system.logs())


@pytest.mark.timeout(180)
async def test_consumer_sigterm_under_load(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
    local_services: Backends,
) -> None:
    """SIGTERM with SHUTDOWN_GRACE_S=1 while 0.4 s tasks (finish in the grace) and 4 s tasks
    (requeued at its end) run: the worker exits in time, nothing is dead-lettered, and a new
    worker finishes everything. The 4 s calls in flight are held unanswered until the worker
    has exited, so at least one task outlives the grace however fast the rest runs."""
    grace_s = 1.0
    row = new_row(f"2. consumer SIGTERM under load (grace {grace_s:g} s)")
    url = await system.start(workers=())
    victim = await system.start_worker("webhook", SHUTDOWN_GRACE_S=str(grace_s),
                                       **PATIENT_CALLS)
    tracker = tracker_for(row, url)
    tasks = 200
    short, long = "/slow/s2/", "/slower/s2/"

    def path(i: int) -> str:
        return f"{long}{i}" if i % 10 == 0 else f"{short}{i}"

    async with tracker.watching():
        submitting = asyncio.create_task(tracker.submit_all(
            (webhook(receiver.url(path(i))), Expect(Status.SUCCEEDED)) for i in range(tasks)))
        try:
            await wait_delivered(receiver, short, tasks // 3)
            with receiver.holding(long):
                await until(lambda: receiver.in_progress(long) > 0, timeout_s=30,
                            what="a 4 s task in flight")
                finishing, outliving = receiver.in_progress(short), receiver.in_progress(long)
                signalled = time.monotonic()
                victim.signal(signal.SIGTERM)
                code = await asyncio.to_thread(_wait, victim, grace_s + 15)
                took_s = time.monotonic() - signalled
            row.note(f"SIGTERM with {finishing} 0.4 s and {outliving} held 4 s task(s) in "
                     f"flight: exit {code} after {took_s:.1f} s")
            await system.start_worker("webhook")
        finally:
            await submitting
        # The requeued tasks come back first and one at a time, 4 s each for the long ones:
        # tens of seconds of wall clock, however fast the rest runs.
        converged = await tracker.converge(timeout_s=90)

    dead = [kept for kept in await drain(local_services.rabbitmq_url, names.dead_queue("webhook"))
            if kept.message_id in tracker.expected]
    if dead:
        row.note(f"{len(dead)} task(s) of this scenario in {names.dead_queue('webhook')}")
    assert code == 0, f"the worker exited with {code}:\n{victim.log()[-3000:]}"
    assert took_s < grace_s + 5, f"the worker took {took_s:.1f} s to stop"
    assert outliving > 0, "SIGTERM must come while a task that outlives the grace is in flight"
    assert not dead, f"{len(dead)} message(s) dead-lettered by a graceful shutdown"
    assert_passed(row, converged, system.logs())


def _wait(process: ServiceProcess, timeout_s: float) -> int | None:
    assert process.process is not None
    try:
        return process.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


async def restart_policy(system: System, stop: asyncio.Event, exits: list[int | None]) -> None:
    """Keep one crashing worker running: start a new one as soon as one exits (bounded)."""
    for _ in range(40):
        process = system.spawn("crashing-worker", "tests.faults.crashing_worker")
        while process.running():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
            if stop.is_set():
                return
        exits.append(process.process.poll() if process.process else None)


@pytest.mark.timeout(180)
async def test_poison_message_crashes_its_consumer(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
    local_services: Backends,
) -> None:
    """A message whose handler ends the process (os._exit) every time, among 100 good ones
    (fewer tasks: each crash costs a process start); the worker is restarted at once after
    every crash, as a restart policy would. The broker's delivery limit dead-letters it, the
    projector reports it `dead`, and every other task succeeds."""
    row = new_row("7. poison message: consumer process crash (100 tasks, restarted each time)")
    url = await system.start(workers=())
    tracker = tracker_for(row, url)
    bodies = [
        (webhook(receiver.url(f"{CRASH_PATH}s7/{i}")), Expect(Status.DEAD, effects=0))
        if i == 10 else (webhook(receiver.url(f"/s7/{i}")), Expect(Status.SUCCEEDED))
        for i in range(100)
    ]
    exits: list[int | None] = []
    stop = asyncio.Event()

    async with tracker.watching():
        await tracker.submit_all(bodies)
        restarts = asyncio.create_task(restart_policy(system, stop, exits))
        try:
            converged = await tracker.converge(timeout_s=120)
        finally:
            stop.set()
            await restarts

    crashes = exits.count(CRASH_EXIT_CODE)
    others = [code for code in exits if code != CRASH_EXIT_CODE]
    row.note(f"{crashes} crash(es), each followed by a restart; other exits: {others}")
    dead_letters = await drain(local_services.rabbitmq_url, names.dead_queue("webhook"))
    kept = {message.message_id: message for message in dead_letters}
    poison = [task_id for task_id, expect in tracker.expected.items()
              if expect.status is Status.DEAD]
    not_kept = [task_id for task_id in poison if task_id not in kept]
    if not_kept:
        row.note(f"{len(not_kept)} poison message(s) not kept in {names.dead_queue('webhook')}")
    innocent = [task_id for task_id, expect in tracker.expected.items()
                if expect.status is Status.SUCCEEDED
                and tracker.final.get(task_id, Final(None, None)).status is Status.DEAD]
    if innocent:
        reasons = sorted({text(kept[t].headers.get("x-first-death-reason"))
                          for t in innocent if t in kept})
        row.note(f"{len(innocent)} good task(s) dead-lettered with the poison message (they "
                 f"shared its prefetch batch and were requeued by every crash; dead-letter "
                 f"reason {reasons}); {sum(receiver.by_task[t] for t in innocent)} webhook "
                 "calls for them")
    assert crashes >= 1, "the poison message must crash the worker"
    assert not not_kept
    assert_passed(row, converged, system.logs())
