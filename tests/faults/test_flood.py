"""A flood of submissions: every task the gateway accepts runs and ends `succeeded`."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from contracts.statuses import Status
from tests.faults.scoreboard import Expect, Row
from tests.faults.system import System
from tests.faults.tracking import TrackerFactory, assert_passed, webhook
from tests.support.receivers import WebhookReceiver

NewRow = Callable[[str], Row]
TASKS = 500
CLIENTS = 32


@pytest.mark.timeout(240)
async def test_flood_of_submissions(
    system: System, tracker_for: TrackerFactory, new_row: NewRow, receiver: WebhookReceiver,
) -> None:
    """500 webhook tasks from 32 clients as fast as the gateway answers, one worker."""
    row = new_row(f"13. flood ({TASKS} webhook tasks, {CLIENTS} clients)")
    url = await system.start()
    tracker = tracker_for(row, url)

    async with tracker.watching():
        start = time.monotonic()
        await tracker.submit_all(((webhook(receiver.url(f"/s13/{i}")), Expect(Status.SUCCEEDED))
                                  for i in range(TASKS)), concurrency=CLIENTS)
        submitting_s = time.monotonic() - start
        converged = await tracker.converge(timeout_s=120)

    done_s = row.converge_s or float("nan")
    row.note(f"throughput: {row.accepted / submitting_s:.0f} accepted/s over {submitting_s:.1f} s;"
             f" {row.accepted / done_s:.0f} tasks/s end to end")
    assert_passed(row, converged, system.logs())
