"""The scheduler's tick: submit a task for each due schedule, once per due time, however many
schedulers run.

For a schedule due at `slot`, a scheduler claims the run `<schedule_id>/<slot>` (a unique key:
of two schedulers, one claims it), submits its task under an id made from that key, marks the
run submitted and moves the schedule on to its next due time. A scheduler that dies between
claim and submit leaves the schedule at `slot`: once the claim is older than `patience`, the
next tick submits the same task id again (at-least-once; never two tasks for one due time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.commands import SubmitTask
from service.dependencies import Dependencies
from service.errors import PublishFailed, StoreUnavailable
from service.schedule_times import decide
from service.schedules import Run, Schedule, Schedules, run_key, run_task_id
from service.submit import submit

log = logging.getLogger(__name__)

# How many due schedules one query takes; a tick repeats while a full page came back.
DUE_PAGE = 100


@dataclass(frozen=True)
class SchedulerPorts:
    tasks: Dependencies
    schedules: Schedules
    # A due time at most this late runs; later, it was missed and the catch-up policy decides.
    grace: timedelta
    # A claimed run not marked submitted after this long was abandoned by its scheduler.
    patience: timedelta


async def tick(ports: SchedulerPorts, now: datetime) -> int:
    """Handle every schedule due at `now`; how many tasks were submitted."""
    submitted = 0
    while True:
        due = await ports.schedules.due(now, DUE_PAGE)
        moved = 0
        for schedule in due:
            outcome = await _handle(ports, schedule, now)
            submitted += outcome.submitted
            moved += outcome.moved
        # A full page whose schedules moved on may have more behind it; one that moved none
        # is held by another scheduler (or failing): wait for the next tick.
        if len(due) < DUE_PAGE or moved == 0:
            return submitted


@dataclass(frozen=True)
class _Outcome:
    submitted: int
    moved: int


async def _handle(ports: SchedulerPorts, schedule: Schedule, now: datetime) -> _Outcome:
    """Claim the due time (a skipped one too, so every scheduler follows the one decision the
    claim's winner made), submit its task if it runs, move the schedule on."""
    slot = schedule.next_run_at
    decision = decide(schedule.timing, schedule.catch_up, slot, now, ports.grace)
    key = run_key(schedule.schedule_id, slot)
    mine = Run(run_key=key, schedule_id=schedule.schedule_id, slot=slot,
               run_at=decision.run_at, task_id=run_task_id(key), claimed_at=now,
               submitted=decision.run_at is None)
    run, is_new = await ports.schedules.claim_run(mine)
    submitted = 0
    if run.run_at is None:
        if is_new:
            log.info("schedule %s: due time %s missed, skipped (catch_up=skip)",
                     schedule.schedule_id, slot.isoformat())
    elif is_new or (not run.submitted and now - run.claimed_at > ports.patience):
        if not await _submit(ports, schedule, run):
            return _Outcome(0, 0)
        submitted = 1
    elif not run.submitted:
        return _Outcome(0, 0)  # another scheduler is submitting it right now
    # On time, the next due time follows this one; after a catch-up, the first after now.
    following = (schedule.timing.next_after(slot) if run.run_at == slot
                 else schedule.timing.next_after(now))
    moved = await ports.schedules.advance(schedule, following,
                                          run if run.run_at is not None else None)
    return _Outcome(submitted, int(moved))


async def _submit(ports: SchedulerPorts, schedule: Schedule, run: Run) -> bool:
    """Submit the run's task and mark the run; False if that failed (the next tick, or another
    scheduler once `patience` passed, tries again with the same task id)."""
    command = SubmitTask(task_type=schedule.task_type, payload=schedule.payload,
                         max_attempts=schedule.max_attempts, timeout_s=schedule.timeout_s,
                         tenant=schedule.tenant, labels=schedule.task_labels,
                         task_id=run.task_id)
    try:
        await submit(ports.tasks, command, source="http")
        await ports.schedules.mark_submitted(run.run_key)
    except (PublishFailed, StoreUnavailable) as error:
        log.warning("schedule %s: run %s not submitted yet: %s", schedule.schedule_id,
                    run.run_key, error)
        return False
    log.info("schedule %s: submitted task %s for %s", schedule.schedule_id, run.task_id,
             (run.run_at or run.slot).isoformat())
    return True
