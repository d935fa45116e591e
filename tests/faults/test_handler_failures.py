"""Handlers that fail: every time (poison), a few times (transient), or for good (permanent)."""

from __future__ import annotations

from collections.abc import Callable

from contracts import names
from contracts.statuses import Status
from tests.faults.amqp import drain
from tests.faults.scoreboard import Expect, Row
from tests.faults.system import System
from tests.faults.tracking import TrackerFactory, assert_passed, webhook
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends

NewRow = Callable[[str], Row]


def text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


async def test_poison_message_that_always_raises(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
    local_services: Backends,
) -> None:
    """A receiver answering 500 every time and max_attempts 2: each task is called twice, ends
    `failed` at attempt 2, and its message is kept in tasks.webhook.dead with the reason."""
    row = new_row("6. poison message: handler fails every attempt (500, max_attempts 2)")
    url = await system.start()
    tracker = tracker_for(row, url)
    paths = [f"/s6/{i}" for i in range(200)]
    for path in paths:
        receiver.answers[path] = [500]

    async with tracker.watching():
        await tracker.submit_all((webhook(receiver.url(path), max_attempts=2),
                                  Expect(Status.FAILED, attempt=2, effects=2)) for path in paths)
        converged = await tracker.converge(timeout_s=60)

    kept = {k.message_id: k for k in await drain(local_services.rabbitmq_url,
                                                 names.dead_queue("webhook"))}
    unexplained = [
        task_id for task_id in tracker.expected
        if task_id not in kept
        or text(kept[task_id].headers.get(names.HEADER_DEAD_REASON)) != "max_attempts_exhausted"
        or "500" not in text(kept[task_id].headers.get(names.HEADER_LAST_ERROR))
    ]
    row.note(f"{len(tracker.expected) - len(unexplained)} of {len(tracker.expected)} kept in "
             f"{names.dead_queue('webhook')} with {names.HEADER_DEAD_REASON} and "
             f"{names.HEADER_LAST_ERROR}")
    assert not unexplained, f"{len(unexplained)} failed task(s) not kept with their reason"
    assert_passed(row, converged, system.logs())


async def test_transient_failures_then_success(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
) -> None:
    """A receiver answering 500, 500, then 200 for each task: every task ends `succeeded` at
    attempt 3 after two retries (1 s and 5 s tiers), called exactly three times. 150 tasks:
    each one costs three runs and seven status events."""
    row = new_row("8. transient failures (500, 500, then 200; 150 tasks)")
    url = await system.start()
    tracker = tracker_for(row, url)
    paths = [f"/s8/{i}" for i in range(150)]
    for path in paths:
        receiver.answers[path] = [500, 500, 200]

    async with tracker.watching():
        await tracker.submit_all((webhook(receiver.url(path)),
                                  Expect(Status.SUCCEEDED, attempt=3, effects=3))
                                 for path in paths)
        converged = await tracker.converge(timeout_s=60)

    assert_passed(row, converged, system.logs())


async def test_permanent_failures(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
) -> None:
    """A receiver answering 404: every task ends `failed` at once, attempt 1, called once."""
    row = new_row("9. permanent failures (404)")
    url = await system.start()
    tracker = tracker_for(row, url)
    paths = [f"/s9/{i}" for i in range(200)]
    for path in paths:
        receiver.answers[path] = [404]

    async with tracker.watching():
        await tracker.submit_all((webhook(receiver.url(path)),
                                  Expect(Status.FAILED, attempt=1, effects=1))
                                 for path in paths)
        converged = await tracker.converge(timeout_s=60)

    assert_passed(row, converged, system.logs())
