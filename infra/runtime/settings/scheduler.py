"""The scheduler's settings (`python -m scheduler`, `taskproc scheduler`)."""

from __future__ import annotations

from pydantic import Field

from infra.runtime.settings.common import NamedProcess
from infra.runtime.settings.connections import TaskServiceSettings


class SchedulerSettings(NamedProcess, TaskServiceSettings):
    """Everything the scheduler reads: the task service's connections and its clock."""

    # A schedule's due time at most this many seconds late still runs; later, it was missed
    # (no scheduler ran) and the schedule's catch_up policy decides.
    scheduler_grace_s: float = Field(default=5.0, gt=0, le=3600)
    # The longest the scheduler sleeps between looks for due schedules (a new schedule due
    # sooner than it waits at most this long for its first run).
    scheduler_max_sleep_s: float = Field(default=1.0, gt=0, le=30)
