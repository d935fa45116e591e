"""The ports: what the use cases need from the outside world, as `typing.Protocol`s.

infra/ holds the real adapters (MongoDB, RabbitMQ); tests hand in-memory ones to the same use
cases. Every adapter raises the service layer's own errors (StoreUnavailable, PublishFailed),
never its driver's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from contracts.control import CancelRequest
from contracts.messages import ProgressEvent, StatusEvent, TaskEnvelope
from contracts.projection import TaskState

if TYPE_CHECKING:
    from service.auth import ApiKey
    from service.queries import QueueDepth, TaskCounts, TaskPage, TaskQuery

# How a task reached the system: through the HTTP API, or published straight to its exchange.
Source = Literal["http", "amqp"]


class TaskReadModel(Protocol):
    """Each task's current state, folded from its status events by `contracts.projection.apply`:
    a repeated or older event changes nothing, a terminal status never regresses."""

    async def get(self, task_id: str) -> TaskState | None:
        """The task's state; None if no event of it was ever applied."""
        ...

    async def apply(self, event: StatusEvent, *, likely_new: bool = False) -> TaskState:
        """Fold `event` into the stored state; the resulting state."""
        ...

    async def apply_many(
        self, events: Sequence[StatusEvent], *, likely_new: bool = False
    ) -> dict[str, TaskState]:
        """Fold `events` (of any tasks, in arrival order); each task's resulting state, by id.

        `likely_new`: a hint that the tasks are new (their ids were just made up); a task that
        exists after all is folded into as usual.
        """
        ...

    async def ping(self) -> None:
        """Return if the store answers; raise StoreUnavailable if it does not."""
        ...

    async def find(self, query: TaskQuery) -> TaskPage:
        """One page of the tasks `query` lists, in its order (see service.queries)."""
        ...

    async def count(self, owners: tuple[str | None, ...], cap: int) -> TaskCounts:
        """How many tasks of these owners there are per type and status, reading at most
        `cap` tasks of each status."""
        ...


class ProjectorReadModel(Protocol):
    """The read model as the projector uses it: folds events in bulk, and looks a task up to check
    a follow-up's parent. Narrower than TaskReadModel, and wider in one way: progress events."""

    async def get(self, task_id: str) -> TaskState | None:
        """The task's state; None if no event of it was ever applied."""
        ...

    async def apply_many(
        self, events: Sequence[StatusEvent | ProgressEvent]
    ) -> dict[str, TaskState]:
        """Fold `events` (of any tasks, in arrival order) with `contracts.projection.apply`; each
        task's resulting state, by id (none for a task known only from progress events)."""
        ...


@dataclass(frozen=True)
class Claim:
    """Who holds an Idempotency-Key: the task id it was claimed for, and how far it got."""

    task_id: str
    request_hash: str
    state: Literal["pending", "queued"]
    claimed_at: datetime
    is_new: bool


class IdempotencyKeys(Protocol):
    """Idempotency-Keys: a key is claimed (`pending`) before its task is published and marked
    `queued` once the broker confirmed it; concurrent claims of one key agree on one task id."""

    async def claim(self, key: str, fingerprint: str, task_id: str) -> Claim:
        """Claim `key` for `task_id` (`is_new`), or return the claim that already holds it."""
        ...

    async def get(self, key: str) -> Claim | None:
        ...

    async def mark_queued(self, key: str, task_id: str) -> None:
        """The task of this claim was published; a claim for another task id is left alone."""
        ...

    async def release(self, key: str, task_id: str) -> None:
        """Give a `pending` claim for `task_id` back (its publish failed); else do nothing."""
        ...


class FollowUpPublisher(Protocol):
    """Sends a workflow step's follow-ups, from the worker that ran the step."""

    async def publish_follow_up(
        self, envelope: TaskEnvelope, *, parent_id: str, parent_type: str, source: str,
        tenant: str,
    ) -> None:
        """Return once the broker has confirmed a persistent, routed copy of `envelope`, naming
        its parent `parent_id` of type `parent_type` (its worker checks that `tenant` owns that
        parent before it runs it)."""
        ...


class TaskPublisher(Protocol):
    """Sends tasks to be run."""

    async def publish(
        self, envelope: TaskEnvelope, *, source: Source, tenant: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        """Return once the broker has confirmed a persistent, routed copy of `envelope`
        (owned by `tenant`); raise PublishFailed if it has not (nothing was queued)."""
        ...

    async def publish_queued(self, event: StatusEvent) -> None:
        """Send the `queued` event of a task that was published but could not be recorded, for
        the projector to record: return once the broker has confirmed it; raise PublishFailed if
        it has not."""
        ...

    async def ping(self) -> Literal["ok", "reconnecting"]:
        """Whether the broker link is up; raise PublishFailed if the broker is unreachable."""
        ...


class StatusRecorder(Protocol):
    """Writes a status event into the read model on behalf of a waiting request (the gateway's
    adapter group-commits concurrent ones into one write)."""

    async def record(self, event: StatusEvent) -> None:
        """Return once `event` is in the read model; raise StoreUnavailable if it is not."""
        ...


class ApiKeys(Protocol):
    """API keys, by key id; the store never sees a key itself, only its hash."""

    async def add(self, key: ApiKey) -> None:
        """Store a new key; its key id is new (a clash raises StoreUnavailable)."""
        ...

    async def get(self, key_id: str) -> ApiKey | None:
        ...

    async def all(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Mark the key revoked (at `at`, unless it was already); the key, None if unknown."""
        ...


class Cancellations(Protocol):
    """Cancelled tasks, kept so that a worker (re)starting learns what it missed; they expire
    with the tasks' retention."""

    async def add(self, request: CancelRequest) -> None:
        """Keep `request`; a task cancelled twice keeps its first request."""
        ...

    async def since(
        self, task_type: str, after: datetime, *, limit: int
    ) -> list[CancelRequest]:
        """The newest `limit` cancellations of `task_type` made at or after `after`, oldest
        first."""
        ...


class ControlPublisher(Protocol):
    """Tells the running workers of a type about a cancellation."""

    async def publish_cancel(self, request: CancelRequest) -> None:
        """Return once the broker confirmed it (or no worker of the type is listening); raise
        PublishFailed if the broker did not confirm it."""


class QueueDepths(Protocol):
    """How deep the task queues are (global: every tenant's tasks share them)."""

    async def depths(self) -> list[QueueDepth]:
        """Each task, retry and dead-letter queue; raise PublishFailed if the broker does not
        answer."""
        ...
