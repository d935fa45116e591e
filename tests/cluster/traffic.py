"""Steady traffic through a scenario on the cluster, and its faults measured as a user sees them.

32 clients submit `sleep` tasks over HTTP for the whole scenario while the tracker polls their
status (tests/faults/tracking.py). Each fault opens a refusal window: a 503 is the promised answer
from the moment of the fault until the system accepts again, and any other refusal, or a 503
after that, fails the row. The row's notes give, per fault, the 503 window (from the fault to the
last 503) and the time to recover (from the fault to the first 202 for a request sent after the
last 503).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from contracts.statuses import Status
from tests.faults.scoreboard import Expect, RefusalWindow
from tests.faults.tracking import TaskTracker, until

CLIENTS = 32
INTERVAL_S = 0.25  # each client's pace at most: 128 requests/s offered in all
SLEEP_S = 0.02  # each task's work, so a worker holds unacked deliveries when a node goes
# aio-pika's robust connection pauses `reconnect_interval` after every try, a successful one
# included (1 s on a node list, infra/rabbitmq/nodes.py): a fault comes later than that.
SETTLED_S = 2.0
RECOVER_TIMEOUT_S = 60.0


def sleep_task(_: int) -> tuple[Mapping[str, Any], Expect]:
    """A task that succeeds with no side effect to count (the status is the proof)."""
    return ({"task_type": "sleep", "payload": {"seconds": SLEEP_S}},
            Expect(Status.SUCCEEDED, effects=0))


@dataclass
class Fault:
    """One fault injected at `at` (time.monotonic()), and the refusals it may cause."""

    what: str
    at: float
    window: RefusalWindow
    last_refusal_s: float = 0.0  # 503 window: from the fault to the last 503 answered
    recovered_s: float | None = None  # to the first 202 sent after the last 503

    def describe(self) -> str:
        recovered = ("never" if self.recovered_s is None else f"{self.recovered_s:.2f} s")
        return (f"{self.what}: 503 window {self.last_refusal_s:.2f} s, "
                f"recovered in {recovered}")


class Traffic:
    """`async with Traffic(tracker) as traffic:` 32 clients submit until the block ends."""

    def __init__(self, tracker: TaskTracker) -> None:
        self.tracker = tracker
        self.faults: list[Fault] = []
        self._stop = asyncio.Event()
        self._submitting: asyncio.Task[None] | None = None
        self._watching: Any = None

    async def __aenter__(self) -> Traffic:
        self._watching = self.tracker.watching()
        await self._watching.__aenter__()
        self._submitting = asyncio.create_task(self.tracker.submit_continuously(
            sleep_task, self._stop, concurrency=CLIENTS, interval_s=INTERVAL_S,
            limit=1_000_000))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self._stop.set()
        try:
            if self._submitting is not None:
                await self._submitting
        finally:
            await self._watching.__aexit__(kind, error, trace)

    async def accepted(self, more: int, *, timeout_s: float = 60.0) -> None:
        """Wait until `more` tasks beyond those accepted so far are accepted."""
        row = self.tracker.row
        target = row.accepted + more
        await until(lambda: row.accepted >= target, timeout_s=timeout_s,
                    what=f"{more} more tasks accepted")

    def fault(self, what: str) -> Fault:
        """Mark a fault injected now: 503s are allowed from here until `recovered`."""
        fault = Fault(what, time.monotonic(),
                      self.tracker.expect_refusals(503, why=what))
        self.faults.append(fault)
        return fault

    async def recovered(self, fault: Fault, *, settle_s: float = SETTLED_S) -> None:
        """Wait until the system accepts again after `fault`: at least `settle_s` after it,
        a request sent after the last 503 so far was accepted. Closes its refusal window."""
        deadline = fault.at + RECOVER_TIMEOUT_S
        while True:
            now = time.monotonic()
            refusals = [s for s in self.tracker.submissions
                        if s.code == 503 and s.answered_at >= fault.at]
            last = max((s.answered_at for s in refusals), default=fault.at)
            accepted = [s for s in self.tracker.submissions
                        if s.accepted and s.sent_at > last]
            if now >= fault.at + settle_s and accepted:
                first = min(accepted, key=lambda s: s.answered_at)
                fault.last_refusal_s = last - fault.at
                fault.recovered_s = (first.answered_at - fault.at) if refusals else 0.0
                fault.window.close(first.sent_at)
                return
            if now > deadline:
                fault.last_refusal_s = last - fault.at
                raise AssertionError(f"{fault.what}: no 202 for a request sent after the last "
                                     f"503 within {RECOVER_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.1)

    def notes(self) -> list[str]:
        return [fault.describe() for fault in self.faults]
