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

from infra.process import first_of

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
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._first_at = 0.0  # when the oldest item waiting arrived (loop time)

    def add(self, item: T) -> None:
        if not self._items:
            self._first_at = asyncio.get_running_loop().time()
        self._items.append(item)
        self._arrived.set()
        if len(self._items) >= self._max_size:
            self._full.set()

    def __len__(self) -> int:
        return len(self._items)

    async def run(self, stop: asyncio.Event) -> None:
        """Flush batches until `stop` is set, then flush what is left and return."""
        while True:
            await first_of(self._arrived, stop)
            if not self._items:
                if stop.is_set():
                    return
                self._arrived.clear()
                continue
            # Wait for the batch to fill, at most the window from its oldest item's arrival: a
            # quiet system answers fast, and items that waited out a flush go at once.
            left_s = self._first_at + self._window_s - asyncio.get_running_loop().time()
            if left_s > 0 and not stop.is_set():
                await first_of(self._full, stop, timeout_s=left_s)
            batch = self.take()
            try:
                await self._flush(batch)
            except Exception:
                # A flush settles its own items; one that raises must not end the loop that
                # every later item waits on.
                log.exception("a batch of %d item(s) could not be flushed", len(batch))

    def take(self) -> list[T]:
        """The next batch (at most `max_size` items), taken out of the collector."""
        batch, self._items = self._items[: self._max_size], self._items[self._max_size:]
        if len(self._items) < self._max_size:
            self._full.clear()
        if not self._items:
            self._arrived.clear()
        return batch

