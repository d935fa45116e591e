"""In-memory stand-ins for the service layer's ports, for the fast tier.

They keep the real adapters' promises, which tests/integration/test_store_contract.py checks
against both: the read model folds events with the one projection function (so it is monotonic
and idempotent), a key is claimed once, and an adapter that is "down" raises the service
layer's own error from every operation.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from contracts.messages import StatusEvent, TaskEnvelope, utcnow
from contracts.projection import TaskState, apply
from contracts.statuses import Status
from service.auth import ApiKey
from service.errors import PublishFailed, StoreUnavailable
from service.ports import Claim, Source
from service.queries import QueueDepth, SortKey, TaskCount, TaskCounts, TaskPage, TaskQuery


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

    async def find(self, query: TaskQuery) -> TaskPage:
        await self._round_trip()
        found = sorted((state for state in self.states.values() if query.matches(state)),
                       key=SortKey.of, reverse=not query.ascending)
        items = found[:query.limit]
        more = len(found) > query.limit
        return TaskPage(items, SortKey.of(items[-1]) if more else None)

    async def count(self, owners: tuple[str | None, ...], cap: int) -> TaskCounts:
        await self._round_trip()
        per_status: dict[Status, list[TaskState]] = defaultdict(list)
        for state in self.states.values():
            if state.tenant in owners:
                per_status[state.status].append(state)
        counts: list[TaskCount] = []
        since: dict[Status, datetime] = {}
        for status, states in per_status.items():
            # The newest `cap`, as the store reads them; its keys hold times to the millisecond.
            newest = sorted(states, key=SortKey.of, reverse=True)[:cap]
            if len(states) > cap and newest:
                oldest = newest[-1].created_at
                since[status] = oldest.replace(microsecond=oldest.microsecond // 1000 * 1000)
            counts += [TaskCount(task_type, status, number) for task_type, number
                       in Counter(state.task_type for state in newest).items()]
        capped = frozenset(status for status, states in per_status.items() if len(states) > cap)
        return TaskCounts(sorted(counts, key=lambda c: (c.task_type, c.status)), capped, since)

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


class MemoryApiKeys:
    """service.ports.ApiKeys in a dict. Set `down` to make every call raise; `reads` counts the
    lookups that reached it (what the gateway's cache spares)."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.down = False
        self.reads = 0

    async def add(self, key: ApiKey) -> None:
        await self._round_trip()
        if key.key_id in self.keys:
            raise StoreUnavailable(f"API key id {key.key_id} exists already")
        self.keys[key.key_id] = key

    async def get(self, key_id: str) -> ApiKey | None:
        await self._round_trip()
        self.reads += 1
        return self.keys.get(key_id)

    async def all(self) -> list[ApiKey]:
        await self._round_trip()
        return sorted(self.keys.values(), key=lambda key: key.created_at)

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        await self._round_trip()
        key = self.keys.get(key_id)
        if key is not None and key.revoked_at is None:
            key = self.keys[key_id] = dataclasses.replace(key, revoked_at=at)
        return key

    async def _round_trip(self) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise StoreUnavailable("the in-memory API keys are down")


class ManualClock:
    """A monotonic clock that moves only when told: cache windows and rate limits in tests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Published:
    envelope: TaskEnvelope
    source: Source
    traceparent: str | None
    tenant: str | None = None


class RecordingPublisher:
    """service.ports.TaskPublisher that keeps what it was given. Set `down` to refuse."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.queued_events: list[StatusEvent] = []
        self.down = False

    async def publish(
        self, envelope: TaskEnvelope, *, source: Source, tenant: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise PublishFailed("the in-memory broker is down")
        self.published.append(Published(envelope, source, traceparent, tenant))

    async def publish_queued(self, event: StatusEvent) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise PublishFailed("the in-memory broker is down")
        self.queued_events.append(event)

    async def ping(self) -> Literal["ok", "reconnecting"]:
        await asyncio.sleep(0)
        if self.down:
            raise PublishFailed("the in-memory broker is down")
        return "ok"


class FixedQueueDepths:
    """service.ports.QueueDepths that answers `depths` as set. Set `down` to make it raise."""

    def __init__(self) -> None:
        self.found: list[QueueDepth] = []
        self.down = False

    async def depths(self) -> list[QueueDepth]:
        await asyncio.sleep(0)
        if self.down:
            raise PublishFailed("the in-memory broker is down")
        return list(self.found)
