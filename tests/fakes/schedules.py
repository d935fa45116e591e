"""Schedules in memory: the fake behind service.schedules.Schedules (passes the same contract
tests as infra.mongodb.schedule_store.MongoSchedules)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from service.queries import SortKey
from service.schedules import Run, Schedule


def with_run(schedule: Schedule, next_run_at: datetime, run: Run | None) -> Schedule:
    """The schedule after `advance`, as the MongoDB store keeps it."""
    if run is None:
        return replace(schedule, next_run_at=next_run_at)
    return replace(schedule, next_run_at=next_run_at, last_run_at=run.run_at or run.slot,
                   last_task_id=run.task_id)


def _millis(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


class MemorySchedules:
    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}
        self.runs: dict[str, Run] = {}

    async def add(self, schedule: Schedule) -> None:
        if schedule.schedule_id in self.schedules:
            raise ValueError(f"schedule {schedule.schedule_id} exists")
        self.schedules[schedule.schedule_id] = schedule

    async def get(self, schedule_id: str) -> Schedule | None:
        return self.schedules.get(schedule_id)

    async def of_tenant(self, tenant: str, after: SortKey | None, limit: int) -> list[Schedule]:
        found = sorted((s for s in self.schedules.values() if s.tenant == tenant
                        and (after is None or s.sort_key > after)),
                       key=lambda s: s.sort_key)
        return found[:limit]

    async def count_of_tenant(self, tenant: str, at_most: int) -> int:
        return min(at_most, sum(1 for s in self.schedules.values() if s.tenant == tenant))

    async def delete(self, schedule_id: str) -> bool:
        return self.schedules.pop(schedule_id, None) is not None

    async def set_paused(self, schedule_id: str, paused: bool,
                         next_run_at: datetime) -> Schedule | None:
        found = self.schedules.get(schedule_id)
        if found is None:
            return None
        changed = replace(found, paused=paused, next_run_at=next_run_at)
        self.schedules[schedule_id] = changed
        return changed

    async def due(self, now: datetime, limit: int) -> list[Schedule]:
        found = [s for s in self.schedules.values()
                 if not s.paused and _millis(s.next_run_at) <= _millis(now)]
        return sorted(found, key=lambda s: s.next_run_at)[:limit]

    async def earliest(self) -> datetime | None:
        times = [s.next_run_at for s in self.schedules.values() if not s.paused]
        return min(times, default=None)

    async def advance(self, schedule: Schedule, next_run_at: datetime, run: Run | None) -> bool:
        current = self.schedules.get(schedule.schedule_id)
        if (current is None or current.paused
                or _millis(current.next_run_at) != _millis(schedule.next_run_at)):
            return False
        self.schedules[schedule.schedule_id] = with_run(current, next_run_at, run)
        return True

    async def claim_run(self, run: Run) -> tuple[Run, bool]:
        if run.run_key in self.runs:
            return self.runs[run.run_key], False
        self.runs[run.run_key] = run
        return run, True

    async def mark_submitted(self, key: str) -> None:
        if key in self.runs:
            self.runs[key] = replace(self.runs[key], submitted=True)
