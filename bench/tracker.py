"""Knows when submitted tasks show `succeeded` in the read model, by polling MongoDB.

It looks tasks up by `_id` (always indexed) from the oldest still pending, and goes further only
while most of a batch is done, so each poll costs about as many lookups as tasks finished since
the last one: the store is the system's bottleneck and the bench must not load it much.
"""

from __future__ import annotations

import asyncio
import time
from itertools import islice
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

_BATCH = 200
_TERMINAL_FAILURES = ("failed", "dead", "cancelled", "rejected")


class Tracker:
    def __init__(self, tasks: AsyncCollection[dict[str, Any]]) -> None:
        self._tasks = tasks
        self._pending: dict[str, None] = {}  # insertion-ordered: oldest submission first
        self.submitted = 0
        self.succeeded = 0
        self.failed = 0
        self.last_done_at: float | None = None

    def add(self, task_id: str) -> None:
        self._pending[task_id] = None
        self.submitted += 1

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def poll(self) -> None:
        """One pass from the oldest pending task onwards."""
        while self._pending:
            head = list(islice(self._pending, _BATCH))
            asked_at = time.monotonic()
            found = self._tasks.find({"_id": {"$in": head}}, {"status": 1})
            done = 0
            async for document in found:
                status = document.get("status")
                if status == "succeeded" or status in _TERMINAL_FAILURES:
                    del self._pending[document["_id"]]
                    done += 1
                    self.succeeded += status == "succeeded"
                    self.failed += status != "succeeded"
                    # Visible by the time the query ran: an upper bound off by one poll at most.
                    self.last_done_at = asked_at
            if done < len(head) // 2:
                return

    async def wait_all(self, *, stall_s: float, deadline: float, fast: bool = False) -> bool:
        """Poll until nothing is pending; False if progress stalls for `stall_s` or the
        deadline (a `time.monotonic()` value) passes first."""
        progress_at, seen = time.monotonic(), self.succeeded + self.failed
        while self._pending:
            await self.poll()
            now = time.monotonic()
            if self.succeeded + self.failed > seen:
                progress_at, seen = now, self.succeeded + self.failed
            if now - progress_at > stall_s or now > deadline:
                return False
            near_end = fast or len(self._pending) < _BATCH
            await asyncio.sleep(0.02 if near_end else 0.25)
        return True
