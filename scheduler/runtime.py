"""The scheduler's loop: tick, then sleep until the earliest next run (bounded), until stopped.

Any number of scheduler processes may run: each due time is claimed once in MongoDB (see
service.scheduling), so two processes only share the work. On nx-27017, which has no TTL index,
the scheduler also sweeps run records past RETENTION_DAYS once a minute
(infra.mongodb.schedule_store).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from contracts.messages import utcnow
from infra.composition import connected_task_service
from infra.mongodb.schedule_store import MongoSchedules
from infra.runtime.process import first_of, stop_on_signals
from infra.runtime.settings.scheduler import SchedulerSettings
from service.errors import StoreUnavailable
from service.scheduling import SchedulerPorts, tick

log = logging.getLogger("scheduler")

SCHEDULER_APP_ID = "taskproc-scheduler"
# After a failed tick (MongoDB away), wait this long before the next.
_RETRY_S = 2.0
_MIN_SLEEP_S = 0.01
# How often expired run records are swept where no TTL index removes them (as the projector
# sweeps finished tasks).
SWEEP_EVERY_S = 60.0


async def run_scheduler(settings: SchedulerSettings, *, stop: asyncio.Event | None = None) -> None:
    """Submit due schedules' tasks until SIGTERM (or `stop`, when given)."""
    stop = stop or stop_on_signals()
    name = f"scheduler {settings.process_name}"
    async with connected_task_service(settings, app_id=SCHEDULER_APP_ID,
                                      name=name) as connected:
        ports = SchedulerPorts(
            tasks=connected.deps, schedules=connected.schedules,
            grace=timedelta(seconds=settings.scheduler_grace_s),
            # Long enough for a live scheduler to publish and record a claimed run.
            patience=timedelta(seconds=2 * settings.publish_timeout_s
                               + 2 * settings.mongodb_timeout_s + 1))
        log.info("scheduler %s running (looks for due schedules at least every %.1fs)",
                 settings.process_name, settings.scheduler_max_sleep_s)
        swept_at = time.monotonic()
        while not stop.is_set():
            pause = await _tick_once(ports, settings.scheduler_max_sleep_s)
            if time.monotonic() - swept_at >= SWEEP_EVERY_S:
                swept_at = time.monotonic()
                await _sweep(connected.schedules)
            await first_of(stop, timeout_s=pause)


async def _sweep(schedules: MongoSchedules) -> None:
    try:
        removed = await schedules.sweep_expired(utcnow())
    except StoreUnavailable as error:
        log.warning("cannot sweep expired schedule runs (next try in %.0fs): %s",
                    SWEEP_EVERY_S, error)
        return
    if removed:
        log.info("expired %d schedule run record(s) past their retention", removed)


async def _tick_once(ports: SchedulerPorts, max_sleep_s: float) -> float:
    """One tick; how long to sleep before the next."""
    try:
        await tick(ports, utcnow())
        earliest = await ports.schedules.earliest()
    except StoreUnavailable as error:
        log.warning("cannot read schedules (retrying in %.0fs): %s", _RETRY_S, error)
        return _RETRY_S
    if earliest is None:
        return max_sleep_s
    until = (earliest - utcnow()).total_seconds()
    return min(max(until, _MIN_SLEEP_S), max_sleep_s)
