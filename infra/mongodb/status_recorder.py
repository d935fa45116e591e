"""Group commit of status records (service.ports.StatusRecorder): concurrent submissions share
one insert.

A submission waits for the write that carries its record, so the 202 still means "confirmed by
RabbitMQ and in the read model". While one write is in flight the next batch gathers, so a busy
gateway makes one MongoDB round trip for many requests and a quiet one waits for nobody.
"""

from __future__ import annotations

import asyncio

from contracts.messages import StatusEvent
from infra.runtime.batching import Batcher
from service.ports import TaskReadModel

_BATCH_SIZE = 500

_Pending = tuple[StatusEvent, "asyncio.Future[None]"]


class GroupCommitRecorder:
    def __init__(self, store: TaskReadModel) -> None:
        self._store = store
        self._batches: Batcher[_Pending] = Batcher(self._write, max_size=_BATCH_SIZE,
                                                   window_s=0.0)
        self._stop = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._batches.run(self._stop))

    async def close(self) -> None:
        self._stop.set()
        if self._runner is not None:
            await self._runner

    async def record(self, event: StatusEvent) -> None:
        """Return once `event` is in the read model; raise StoreUnavailable if it is not."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batches.add((event, written))
        await written

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            # Task ids were just made up: insert without reading first.
            await self._store.apply_many([event for event, _ in batch], likely_new=True)
        except Exception as error:  # each waiting request handles it as its own failure
            for _, written in batch:
                if not written.done():
                    written.set_exception(error)
            return
        for _, written in batch:
            if not written.done():
                written.set_result(None)
