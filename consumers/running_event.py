"""An attempt's `running` event: published only for an attempt that lasts.

Most tasks end within a few milliseconds, and a `running` event for each would be one more
confirmed message per task through the broker, the system's bottleneck. So an attempt publishes
`running` only once it has run `after_s` (RUNNING_EVENT_AFTER_MS); one that ends sooner
publishes only its outcome, which carries `started_at`, and the read model shows the attempt's
start from that. Whatever a reader sees only of a `running` task must not be lost meanwhile:
a progress report publishes `running` first, at once (`before_progress`).

The rules the worker keeps with it:
- an attempt that ends before the timer fires publishes no `running` (`end` stops the timer,
  which has not begun a publish);
- a `running` that has begun is on the channel before anything the worker publishes after it
  (a publish queues its frames before its first wait), and the task message is acked only once
  it is confirmed (`confirmed`);
- a progress report goes out only after `running` is confirmed, so the read model, which takes
  a report only for a `running` task, has it first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

PublishRunning = Callable[[], Awaitable[None]]


class RunningEvent:
    """One attempt's `running`: published `after_s` after the attempt started, unless it ends
    first (`after_s` 0: at once)."""

    def __init__(self, publish: PublishRunning, after_s: float) -> None:
        self._publish = publish
        self._begun = False
        self._ended = False
        # Sleeps `after_s`, then publishes: the publish, once begun, is this task.
        self._sending: asyncio.Task[None] = asyncio.create_task(self._after(after_s))

    async def _after(self, after_s: float) -> None:
        if after_s > 0:
            await asyncio.sleep(after_s)
        await self._send()

    async def _send(self) -> None:
        self._begun = True
        await self._publish()

    async def before_progress(self) -> None:
        """Publish `running` now unless it has begun, and wait until it is confirmed."""
        if not self._begun:
            if self._ended:
                return
            self._sending.cancel()
            self._sending = asyncio.create_task(self._send())
        # Shielded: a progress sender stopped at the attempt's end must not stop `running`.
        await asyncio.shield(self._sending)

    def end(self) -> None:
        """The attempt is over: a `running` not begun is never published."""
        self._ended = True
        if not self._begun:
            self._sending.cancel()

    async def confirmed(self) -> None:
        """Wait for a begun `running` to be confirmed (raises what its publish raised)."""
        if self._begun:
            await self._sending

    async def abandon(self) -> None:
        """Stop it, whatever its state, and wait until it has stopped (the attempt failed)."""
        self._ended = True
        self._sending.cancel()
        await asyncio.gather(self._sending, return_exceptions=True)
