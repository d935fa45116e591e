"""Group items that arrive one by one into batches: a batch closes at `max_size` items or
`window_s` after its first item, whichever comes first.

Both the projector (status events into one bulk write) and the gateway (one insert for
concurrent submissions) use it, so a busy process makes one store round trip for many items
and a quiet one waits no more than the window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class Batcher(Generic[T]):
    """Collect items with `add`; `run` hands each closed batch to `flush`, one at a time."""

    def __init__(
        self, flush: Callable[[list[T]], Awaitable[None]], *, max_size: int, window_s: float
    ) -> None:
        self._flush = flush
        self._max_size = max_size
        self._window_s = window_s
        self._items: list[T] = []
        # What `run` waits on, if anything, and how many items end that wait. A future and a
        # timer per batch, not `asyncio.wait` on events: that made tasks for every batch and
        # was 5 % of a busy projector's time.
        self._waiter: asyncio.Future[None] | None = None
        self._wake_at = 1

    def add(self, item: T) -> None:
        self._items.append(item)
        if len(self._items) >= self._wake_at:
            self._wake()

    def __len__(self) -> int:
        return len(self._items)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush batches until `stop` is set, then flush what is left and return."""
        watcher = asyncio.create_task(self._wake_when_set(stop))
        try:
            while True:
                await self._until(1, stop)
                if not self._items:
                    return  # stopped, and nothing left
                # Wait for the batch to fill, at most the window: a quiet system answers fast.
                # Under load the window starts when the previous flush ends, so batches grow
                # with the load (items that arrived during a flush wait a little longer, and
                # the store takes fewer, larger writes).
                if self._window_s > 0:
                    await self._until(self._max_size, stop, timeout_s=self._window_s)
                else:
                    await asyncio.sleep(0)  # what is ready to run this loop pass joins in
                batch = self._take()
                try:
                    await self._flush(batch)
                except Exception:
                    # A flush settles its own items; one that raises must not end the loop
                    # that every later item waits on.
                    log.exception("a batch of %d item(s) could not be flushed", len(batch))
        finally:
            watcher.cancel()

    def _take(self) -> list[T]:
        """The next batch (at most `max_size` items), taken out of the collector."""
        batch, self._items = self._items[: self._max_size], self._items[self._max_size:]
        return batch

    async def _until(
        self, size: int, stop: asyncio.Event, *, timeout_s: float | None = None
    ) -> None:
        """Return once `size` items wait, `stop` is set, or `timeout_s` has passed."""
        if len(self._items) >= size or stop.is_set():
            return
        loop = asyncio.get_running_loop()
        self._waiter, self._wake_at = loop.create_future(), size
        timer = None if timeout_s is None else loop.call_later(timeout_s, self._wake)
        try:
            await self._waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wake_when_set(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake()
