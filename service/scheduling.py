"""The scheduler's tick: submit a task for each due schedule, once per due time, however many
schedulers run.

For a schedule due at `slot`, a scheduler claims the run `<schedule_id>/<slot>` (a unique key:
of two schedulers, one claims it), submits its task under an id made from that key, marks the
run submitted and moves the schedule on to its next due time. A scheduler that dies between
claim and submit leaves the schedule at `slot`: once the claim is older than `patience`, the
next tick submits the same task id again (at-least-once; never two tasks for one due time).

Runs count against the rate of the API key that made the schedule, in this scheduler's own
token bucket per key (as each gateway process keeps its own). A run over that rate is skipped,
recorded and logged like a missed one, and the schedule moves on to its next due time: deferring
it instead would leave it at the head of the due queue, holding up every schedule behind it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from contracts.log_fields import task_fields
from service.api_keys import DEFAULT_RATE_PER_S
from service.commands import SubmitTask
from service.dependencies import Dependencies
from service.errors import PublishFailed, StoreUnavailable
from service.rate_limit import RateLimiter
from service.schedule_times import Decision, decide, next_due
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
    # Runs taken from their owner key's rate (see the module's docstring).
    limiter: RateLimiter = field(default_factory=RateLimiter)


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
    decision = _within_rate(ports, schedule,
                            decide(schedule.timing, schedule.catch_up, slot, now, ports.grace))
    key = run_key(schedule.schedule_id, slot)
    mine = Run(run_key=key, schedule_id=schedule.schedule_id, slot=slot,
               run_at=decision.run_at, task_id=run_task_id(key), claimed_at=now,
               submitted=decision.run_at is None)
    run, is_new = await ports.schedules.claim_run(mine)
    if is_new and run.run_at is not None:
        ports.limiter.charge(*_owner_bucket(schedule))
    submitted = 0
    if run.run_at is None:
        if is_new and not decision.over_rate:
            log.info("schedule %s: due time %s missed, skipped (catch_up=skip)",
                     schedule.schedule_id, slot.isoformat())
    elif is_new or (not run.submitted and now - run.claimed_at > ports.patience):
        if not await _submit(ports, schedule, run):
            return _Outcome(0, 0)
        submitted = 1
    elif not run.submitted:
        return _Outcome(0, 0)  # another scheduler is submitting it right now
    following = next_due(schedule.timing, slot, run.run_at, now, ports.grace)
    moved = await ports.schedules.advance(schedule, following,
                                          run if run.run_at is not None else None)
    return _Outcome(submitted, int(moved))


@dataclass(frozen=True)
class _Decided:
    run_at: datetime | None
    over_rate: bool = False


def _within_rate(ports: SchedulerPorts, schedule: Schedule, decision: Decision) -> _Decided:
    """The decision, or a skip if the run would take its owner key over its rate. Asked before
    the claim, so every scheduler follows the claim's one verdict; only a run this scheduler
    claims is charged (`_handle`)."""
    if decision.run_at is None:
        return _Decided(None)
    bucket, rate = _owner_bucket(schedule)
    if ports.limiter.has_room(bucket, rate):
        return _Decided(decision.run_at)
    log.warning("schedule %s: run for %s skipped: over the rate of the key that made it "
                "(%g/s)", schedule.schedule_id, decision.run_at.isoformat(), rate)
    return _Decided(None, over_rate=True)


def _owner_bucket(schedule: Schedule) -> tuple[str, float]:
    """The rate bucket a schedule's runs are counted in, and its rate. A schedule made before
    schedules remembered their key: its tenant's runs share one bucket at the default rate."""
    return (schedule.owner_key or f"tenant:{schedule.tenant}",
            schedule.owner_rate_per_s or DEFAULT_RATE_PER_S)


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
             (run.run_at or run.slot).isoformat(), extra=task_fields(run.task_id))
    return True
