"""Progress reports from a running handler: throttled, coalesced, published in the background.

A handler may report in a tight loop; `report` only records the latest report and returns. One
background sender per attempt publishes at most one report per `min_interval_s` and has at most
one publish in flight: reports made meanwhile are coalesced, the latest wins, and it goes out as
soon as the window opens. A failed publish is logged and forgotten: progress is a hint, and
never fails the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.messages import PROGRESS_MESSAGE_MAX

log = logging.getLogger(__name__)

# At most 4 reports a second per task reach RabbitMQ.
MIN_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Report:
    fraction: float
    message: str | None
    at: datetime


PublishReport = Callable[[Report], Awaitable[None]]


class ProgressReporter:
    """One attempt's progress: `report` never waits; `close` drops what was not sent yet."""

    def __init__(
        self, publish: PublishReport, *, min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        label: str = "",
    ) -> None:
        self._publish = publish
        self._interval_s = min_interval_s
        self._clock = clock
        self._sleep = sleep
        self._label = label  # names the task in log lines
        self._pending: Report | None = None
        self._next_allowed = -math.inf
        self._sender: asyncio.Task[None] | None = None
        self._closed = False

    def report(self, fraction: float, message: str | None = None) -> None:
        """Record `fraction` (0..1) and an optional short message (cut to 200 characters)."""
        if not 0.0 <= fraction <= 1.0:  # NaN fails this too
            raise ValueError(f"progress must be a fraction from 0 to 1, not {fraction!r}")
        if self._closed:
            return
        if message is not None:
            message = message[:PROGRESS_MESSAGE_MAX]
        self._pending = Report(float(fraction), message, datetime.now(UTC))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """`report`, in the shape of `TaskContext.report_progress`."""
        self.report(fraction, message)

    async def close(self) -> None:
        """The attempt is over: a report not sent yet is dropped, a publish in flight stopped."""
        self._closed = True
        self._pending = None
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send(self) -> None:
        try:
            while self._pending is not None:
                wait_s = self._next_allowed - self._clock()
                if wait_s > 0:
                    await self._sleep(wait_s)
                report, self._pending = self._pending, None
                if report is None:
                    break
                self._next_allowed = self._clock() + self._interval_s
                try:
                    await self._publish(report)
                except Exception as error:  # a lost report is harmless; a failed task is not
                    log.warning("progress of %s not published: %r", self._label or "a task",
                                error)
        finally:
            if self._sender is asyncio.current_task():
                self._sender = None
