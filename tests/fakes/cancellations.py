"""In-memory stand-ins for the cancellation ports (service.ports.Cancellations and
ControlPublisher), for the fast tier and the worker's unit tests."""

from __future__ import annotations

import asyncio
from datetime import datetime

from contracts.control import CancelRequest
from service.errors import PublishFailed, StoreUnavailable


class MemoryCancellations:
    """Cancellations in a dict. Set `down` to make every call raise."""

    def __init__(self) -> None:
        self.requests: dict[str, CancelRequest] = {}
        self.down = False

    async def add(self, request: CancelRequest) -> None:
        await self._round_trip()
        self.requests.setdefault(f"{request.tenant}/{request.task_id}", request)

    async def since(
        self, task_type: str, after: datetime, *, limit: int
    ) -> list[CancelRequest]:
        await self._round_trip()
        found = [r for r in self.requests.values() if r.task_type == task_type and r.at >= after]
        return sorted(found, key=lambda request: request.at)[-limit:]

    async def _round_trip(self) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise StoreUnavailable("the in-memory cancellations are down")


class RecordingControl:
    """Keeps what it was asked to publish. Set `down` to make it raise PublishFailed."""

    def __init__(self) -> None:
        self.published: list[CancelRequest] = []
        self.down = False

    async def publish_cancel(self, request: CancelRequest) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise PublishFailed("the in-memory broker is down")
        self.published.append(request)
