"""In-memory stand-ins for the service layer's ports, for the fast tier.

They keep the real adapters' promises, which tests/integration/test_store_contract.py checks
against both: the read model folds events with the one projection function (so it is monotonic
and idempotent), a key is claimed once, and an adapter that is "down" raises the service
layer's own error from every operation.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from contracts.messages import StatusEvent, TaskEnvelope, utcnow
from contracts.projection import TaskState, apply
from service.errors import PublishFailed, StoreUnavailable
from service.ports import Claim, Source


class MemoryReadModel:
    """service.ports.TaskReadModel in a dict. Set `down` to make every call raise."""

    def __init__(self) -> None:
        self.states: dict[str, TaskState] = {}
        self.down = False

    async def get(self, task_id: str) -> TaskState | None:
        await self._round_trip()
        return self.states.get(task_id)

    async def apply(self, event: StatusEvent, *, likely_new: bool = False) -> TaskState:
        states = await self.apply_many([event], likely_new=likely_new)
        return states[event.task_id]

    async def apply_many(
        self, events: Sequence[StatusEvent], *, likely_new: bool = False
    ) -> dict[str, TaskState]:
        await self._round_trip()
        # Read, fold and write with no await in between: no other writer can interleave.
        results: dict[str, TaskState] = {}
        for event in events:
            results[event.task_id] = self.states[event.task_id] = apply(
                self.states.get(event.task_id), event)
        return results

    async def ping(self) -> None:
        await self._round_trip()

    async def _round_trip(self) -> None:
        # Let other tasks run, as a real store's IO would.
        await asyncio.sleep(0)
        if self.down:
            raise StoreUnavailable("the in-memory store is down")


class MemoryIdempotencyKeys:
    """service.ports.IdempotencyKeys in a dict. Set `down` to make every call raise."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self.down = False

    async def claim(self, key: str, fingerprint: str, task_id: str) -> Claim:
        await self._round_trip()
        held = self.claims.get(key)
        if held is not None:
            return held
        claim = Claim(task_id, fingerprint, "pending", utcnow(), is_new=False)
        self.claims[key] = claim
        return dataclasses.replace(claim, is_new=True)

    async def get(self, key: str) -> Claim | None:
        await self._round_trip()
        return self.claims.get(key)

    async def mark_queued(self, key: str, task_id: str) -> None:
        await self._round_trip()
        held = self.claims.get(key)
        if held is not None and held.task_id == task_id:
            self.claims[key] = dataclasses.replace(held, state="queued")

    async def release(self, key: str, task_id: str) -> None:
        await self._round_trip()
        held = self.claims.get(key)
        if held is not None and held.task_id == task_id and held.state == "pending":
            del self.claims[key]

    async def _round_trip(self) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise StoreUnavailable("the in-memory idempotency keys are down")


@dataclass(frozen=True)
class Published:
    envelope: TaskEnvelope
    source: Source
    traceparent: str | None


class RecordingPublisher:
    """service.ports.TaskPublisher that keeps what it was given. Set `down` to refuse."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.down = False

    async def publish(
        self, envelope: TaskEnvelope, *, source: Source, traceparent: str | None = None
    ) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise PublishFailed("the in-memory broker is down")
        self.published.append(Published(envelope, source, traceparent))

    async def ping(self) -> Literal["ok", "reconnecting"]:
        await asyncio.sleep(0)
        if self.down:
            raise PublishFailed("the in-memory broker is down")
        return "ok"
