"""What a listing asks of the read model, and what it answers: plain data the ports share.

Tasks are listed in (created_at, task_id) order, newest first unless `ascending`. A page ends
at a `SortKey`; the next page is "strictly after that key", so tasks created after the first
page was read (they sort before it, newest first) never shift the next one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from contracts.projection import TaskState
from contracts.statuses import Status
from service.ports import Source


@dataclass(frozen=True, order=True)
class SortKey:
    """Where a task falls in a listing: by creation time, ties broken by id."""

    created_at: datetime
    task_id: str

    @classmethod
    def of(cls, state: TaskState) -> SortKey:
        return cls(state.created_at, state.task_id)


@dataclass(frozen=True, kw_only=True)
class TaskQuery:
    """Which tasks to list; every filter given must match (each status of `statuses` is one
    alternative; every label of `labels` must be there). Time bounds are exclusive."""

    # Whose tasks: a tenant's name, None for the tasks that name no tenant (the default
    # tenant's from before tenants).
    owners: tuple[str | None, ...]
    statuses: tuple[Status, ...] = ()
    task_type: str | None = None
    source: Source | None = None
    idempotency_key: str | None = None
    labels: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    limit: int = 50
    ascending: bool = False
    # Only tasks strictly after this key in the listing's order (the previous page's last).
    after: SortKey | None = None

    def matches(self, state: TaskState) -> bool:
        """Whether `state` is one this query lists (the order and the limit aside): the
        in-memory read model's whole filter, and the definition the store's queries keep."""
        checks = (
            state.tenant in self.owners,
            not self.statuses or state.status in self.statuses,
            self.task_type is None or state.task_type == self.task_type,
            self.source is None or state.source == self.source,
            self.idempotency_key is None or state.idempotency_key == self.idempotency_key,
            set(self.labels) <= set(state.labels),
            self.created_after is None or state.created_at > self.created_after,
            self.created_before is None or state.created_at < self.created_before,
            self.updated_after is None or state.updated_at > self.updated_after,
            self.updated_before is None or state.updated_at < self.updated_before,
            self.after is None or self.comes_after(SortKey.of(state)),
        )
        return all(checks)

    def comes_after(self, key: SortKey) -> bool:
        assert self.after is not None
        return key > self.after if self.ascending else key < self.after


@dataclass(frozen=True)
class TaskPage:
    """Up to `limit` tasks in order; `next` is the key to continue from, None at the end."""

    items: list[TaskState]
    next: SortKey | None


@dataclass(frozen=True)
class TaskCount:
    task_type: str
    status: Status
    count: int


@dataclass(frozen=True)
class TaskCounts:
    """How many tasks of each type are in each status. A status with more tasks than the cap
    asked for is counted over its newest `cap` tasks only: it is named in `capped`, its counts
    are lower bounds, and `counted_since` gives the creation time (to the millisecond) of the
    oldest task counted, so the counts are exact for the tasks created after it."""

    counts: list[TaskCount]
    capped: frozenset[Status]
    # Per capped status; absent for one whose oldest counted task predates the listing keys.
    counted_since: Mapping[Status, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueDepth:
    """A queue as RabbitMQ counts it: messages ready for delivery, and consumers."""

    queue: str
    messages: int
    consumers: int
