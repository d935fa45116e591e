"""Schedules: a task submitted again and again, by a cron expression or an interval.

The use cases the gateway calls (create, read, list, pause, resume, delete), the port the
schedules are kept behind, and the run record that makes each due time submit one task.

Bounds (ScheduleBounds, from settings): a tenant holds at most `max_per_tenant` schedules and
an interval is at least `min_interval_s`; a listing is paged like `GET /tasks`, so no answer
holds more than one page. Each schedule remembers the API key that made it and that key's
rate: the scheduler counts runs against it (service.scheduling).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from contracts.messages import utcnow
from service.errors import ServiceError, TaskNotFound
from service.listing import decode_cursor, encode_cursor
from service.queries import SortKey
from service.schedule_times import CatchUp, InvalidTiming, Timing

# A task id made from a run's key: a run submitted again after a crash keeps its task id.
RUN_NAMESPACE = uuid.UUID("5b0e7c62-8f0e-4f55-9d1e-1f3c2a6d9e41")


class ScheduleNotFound(TaskNotFound):
    def __init__(self, schedule_id: str) -> None:
        LookupError.__init__(self, f"no schedule {schedule_id!r}")


class TooManySchedules(ServiceError):
    """The tenant already holds the most schedules allowed (`MAX_SCHEDULES_PER_TENANT`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"this tenant already has {limit} schedules, the most allowed: "
                         "delete one first")
        self.limit = limit


@dataclass(frozen=True)
class ScheduleBounds:
    """An operator's bounds on schedules (MAX_SCHEDULES_PER_TENANT, MIN_SCHEDULE_INTERVAL_S)."""

    max_per_tenant: int
    min_interval_s: float


@dataclass(frozen=True)
class SchedulePage:
    """One page of a tenant's schedules, oldest first, and the cursor of the next (None: the
    last page)."""

    items: list[Schedule]
    cursor: str | None


@dataclass(frozen=True)
class Schedule:
    """A schedule and where it stands; times in UTC."""

    schedule_id: str
    tenant: str
    task_type: str
    payload: dict[str, Any]
    cron: str | None
    interval_s: float | None
    timezone: str
    catch_up: CatchUp
    labels: tuple[str, ...]
    max_attempts: int | None
    timeout_s: float | None
    paused: bool
    next_run_at: datetime
    created_at: datetime
    last_run_at: datetime | None = None
    last_task_id: str | None = None
    # The API key that made it, and its rate: runs count against that rate. None for a
    # schedule made before schedules remembered it (then its tenant's runs share one bucket).
    owner_key: str | None = None
    owner_rate_per_s: float | None = None

    @property
    def sort_key(self) -> SortKey:
        """Where it falls in its tenant's listing: by creation, ties broken by id."""
        return SortKey(self.created_at, self.schedule_id)

    @property
    def timing(self) -> Timing:
        return Timing(self.cron, self.interval_s, self.timezone, anchor=self.created_at)

    @property
    def task_labels(self) -> tuple[str, ...]:
        """Every task of the schedule carries `schedule=<id>` first, then the schedule's."""
        own = f"schedule={self.schedule_id}"
        return (own, *(label for label in self.labels if label != own))


@dataclass(frozen=True)
class Run:
    """One due time (`slot`) of one schedule, claimed before its task is published: `run_key`
    is unique, so of two schedulers only one claims it. `run_at`: the due time the task runs
    for (the slot, or the latest missed one under `catch_up=last`); None: skipped."""

    run_key: str
    schedule_id: str
    slot: datetime
    run_at: datetime | None
    task_id: str
    claimed_at: datetime
    submitted: bool = False


def run_key(schedule_id: str, slot: datetime) -> str:
    return f"{schedule_id}/{slot.isoformat()}"


def run_task_id(key: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, key))


class Schedules(Protocol):
    """Schedules, and the runs claimed of them. `next_run_at` is indexed (as epoch
    milliseconds, which compare exactly on every MongoDB-protocol server)."""

    async def add(self, schedule: Schedule) -> None:
        ...

    async def get(self, schedule_id: str) -> Schedule | None:
        ...

    async def of_tenant(self, tenant: str, after: SortKey | None, limit: int) -> list[Schedule]:
        """At most `limit` of the tenant's schedules, oldest first, strictly after `after`."""
        ...

    async def count_of_tenant(self, tenant: str, at_most: int) -> int:
        """How many schedules the tenant has, counting no further than `at_most`."""
        ...

    async def delete(self, schedule_id: str) -> bool:
        """Remove it; False if there was none."""
        ...

    async def set_paused(self, schedule_id: str, paused: bool,
                         next_run_at: datetime) -> Schedule | None:
        """Pause or resume it (resuming sets its next run); the result, None if unknown."""
        ...

    async def due(self, now: datetime, limit: int) -> list[Schedule]:
        """Unpaused schedules with `next_run_at <= now`, earliest first."""
        ...

    async def earliest(self) -> datetime | None:
        """The earliest `next_run_at` of the unpaused schedules."""
        ...

    async def advance(self, schedule: Schedule, next_run_at: datetime,
                      run: Run | None) -> bool:
        """Move the schedule from its `next_run_at` to `next_run_at`, noting `run`; False (and
        nothing changed) if it is no longer at its `next_run_at` (another scheduler moved it,
        or it was paused, resumed or deleted)."""
        ...

    async def claim_run(self, run: Run) -> tuple[Run, bool]:
        """Insert `run` unless a run of its key exists; the run now stored under the key, and
        whether it is `run`, new."""
        ...

    async def mark_submitted(self, key: str) -> None:
        ...


def create_schedule(tenant: str, *, task_type: str, payload: dict[str, Any],
                    cron: str | None, interval_s: float | None, timezone: str,
                    catch_up: CatchUp, labels: tuple[str, ...], max_attempts: int | None,
                    timeout_s: float | None, now: datetime | None = None,
                    min_interval_s: float = 0, owner_key: str | None = None,
                    owner_rate_per_s: float | None = None) -> Schedule:
    """A new schedule, its first run the first due time after `now`; InvalidTiming for a bad
    cron expression, time zone or interval, or an interval under `min_interval_s`."""
    now = now or utcnow()
    # Whole milliseconds, as MongoDB keeps it: every scheduler counts intervals from the same
    # anchor.
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    timing = Timing(cron, interval_s, timezone, anchor=now)
    timing.check()
    if interval_s is not None and interval_s < min_interval_s:
        raise InvalidTiming("interval_s", f"interval_s must be at least {min_interval_s:g} s "
                                          "(MIN_SCHEDULE_INTERVAL_S)")
    return Schedule(schedule_id=str(uuid.uuid4()), tenant=tenant, task_type=task_type,
                    payload=payload, cron=cron, interval_s=interval_s, timezone=timezone,
                    catch_up=catch_up, labels=labels, max_attempts=max_attempts,
                    timeout_s=timeout_s, paused=False, next_run_at=timing.next_after(now),
                    created_at=now, owner_key=owner_key, owner_rate_per_s=owner_rate_per_s)


async def add_schedule(store: Schedules, schedule: Schedule,
                       bounds: ScheduleBounds) -> Schedule:
    """Store it; TooManySchedules if its tenant holds `bounds.max_per_tenant` already. Two
    creations racing may both pass the check: the cap bounds a tenant's schedules to about
    itself, not exactly (a count and an insert are not one atomic step in MongoDB)."""
    held = await store.count_of_tenant(schedule.tenant, bounds.max_per_tenant)
    if held >= bounds.max_per_tenant:
        raise TooManySchedules(bounds.max_per_tenant)
    await store.add(schedule)
    return schedule


async def get_schedule(store: Schedules, schedule_id: str, tenant: str) -> Schedule:
    """The tenant's schedule; ScheduleNotFound for another tenant's, as for a missing one."""
    found = await store.get(schedule_id)
    if found is None or found.tenant != tenant:
        raise ScheduleNotFound(schedule_id)
    return found


async def list_schedules(store: Schedules, tenant: str, *, limit: int,
                         cursor: str | None = None) -> SchedulePage:
    """One page of the tenant's schedules, oldest first, after `cursor` (a previous page's);
    InvalidCursor for a cursor no listing gave. Reads at most `limit` + 1 schedules."""
    after = decode_cursor(cursor) if cursor else None
    found = await store.of_tenant(tenant, after, limit + 1)
    items = found[:limit]
    more = len(found) > limit
    return SchedulePage(items, encode_cursor(items[-1].sort_key) if more else None)


async def delete_schedule(store: Schedules, schedule_id: str, tenant: str) -> None:
    await get_schedule(store, schedule_id, tenant)
    if not await store.delete(schedule_id):
        raise ScheduleNotFound(schedule_id)


async def pause_schedule(store: Schedules, schedule_id: str, tenant: str, *,
                         paused: bool, now: datetime | None = None) -> Schedule:
    """Pause it, or resume it: a resumed schedule runs next at its first due time after now
    (what it missed while paused is not run)."""
    found = await get_schedule(store, schedule_id, tenant)
    next_run_at = found.next_run_at
    if not paused and found.paused:
        next_run_at = found.timing.next_after(now or utcnow())
    changed = await store.set_paused(schedule_id, paused, next_run_at)
    if changed is None:
        raise ScheduleNotFound(schedule_id)
    return changed
