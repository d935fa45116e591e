"""The scheduler's tick on in-memory ports with a fake clock: one task per due time, however
many schedulers tick; catch-up policies; recovery of a run claimed by a scheduler that died."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from infra.composition import task_service
from infra.runtime.settings.system import SystemSettings
from service.dependencies import Dependencies
from service.rate_limit import RateLimiter
from service.schedule_times import CatchUp
from service.schedules import Run, Schedule, create_schedule, run_key, run_task_id
from service.scheduling import SchedulerPorts, tick
from tests.fakes.ports import (
    ManualClock,
    MemoryIdempotencyKeys,
    MemoryReadModel,
    RecordingPublisher,
)
from tests.fakes.schedules import MemorySchedules

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
Tasks = tuple[Dependencies, RecordingPublisher, MemoryReadModel]
SETTINGS = SystemSettings(rabbitmq_url="amqp://guest:guest@127.0.0.1:1/",
                    mongodb_url="mongodb://127.0.0.1:1/?directConnection=true")


@pytest.fixture
async def tasks() -> AsyncIterator[Tasks]:
    read_model, publisher = MemoryReadModel(), RecordingPublisher()
    async with task_service(SETTINGS, read_model=read_model, keys=MemoryIdempotencyKeys(),
                            publisher=publisher, app_id="scheduler-test") as deps:
        yield deps, publisher, read_model


def ports(deps: Dependencies, store: MemorySchedules,
          limiter: RateLimiter | None = None) -> SchedulerPorts:
    return SchedulerPorts(tasks=deps, schedules=store, grace=timedelta(seconds=5),
                          patience=timedelta(seconds=20), limiter=limiter or RateLimiter())


async def every_minute(store: MemorySchedules, catch_up: CatchUp = "skip") -> Schedule:
    schedule = create_schedule("acme", task_type="sleep", payload={"seconds": 0}, cron=None,
                               interval_s=60, timezone="UTC", catch_up=catch_up,
                               labels=("nightly",), max_attempts=2, timeout_s=None, now=START)
    await store.add(schedule)
    return schedule


async def test_each_due_time_submits_one_labelled_task_of_the_tenant(tasks: Tasks) -> None:
    deps, publisher, read_model = tasks
    store = MemorySchedules()
    schedule = await every_minute(store)
    assert await tick(ports(deps, store), START + timedelta(seconds=59)) == 0
    for minute in (1, 2, 3):
        await tick(ports(deps, store), START + timedelta(minutes=minute, seconds=1))
    envelopes = [p.envelope for p in publisher.published]
    assert len(envelopes) == 3
    assert {p.tenant for p in publisher.published} == {"acme"}
    assert all(e.labels == (f"schedule={schedule.schedule_id}", "nightly") for e in envelopes)
    assert all(e.max_attempts == 2 for e in envelopes)
    expected = [run_task_id(run_key(schedule.schedule_id, START + timedelta(minutes=m)))
                for m in (1, 2, 3)]
    assert [e.task_id for e in envelopes] == expected
    state = await read_model.get(expected[0])
    assert state is not None
    assert state.status == "queued"
    after = await store.get(schedule.schedule_id)
    assert after is not None
    assert after.next_run_at == START + timedelta(minutes=4)
    assert after.last_task_id == expected[-1]


async def test_two_schedulers_ticking_at_once_submit_each_due_time_once(tasks: Tasks) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    await every_minute(store)
    for minute in range(1, 6):
        now = START + timedelta(minutes=minute, seconds=1)
        await asyncio.gather(tick(ports(deps, store), now), tick(ports(deps, store), now))
    ids = [p.envelope.task_id for p in publisher.published]
    assert len(ids) == 5
    assert len(set(ids)) == 5


async def test_skip_after_downtime_runs_nothing_missed(tasks: Tasks) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    schedule = await every_minute(store, "skip")
    await tick(ports(deps, store), START + timedelta(minutes=5, seconds=30))
    assert publisher.published == []
    after = await store.get(schedule.schedule_id)
    assert after is not None
    assert after.next_run_at == START + timedelta(minutes=6)


async def test_last_after_downtime_runs_the_latest_missed_once(tasks: Tasks) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    schedule = await every_minute(store, "last")
    await tick(ports(deps, store), START + timedelta(minutes=5, seconds=30))
    assert len(publisher.published) == 1
    after = await store.get(schedule.schedule_id)
    assert after is not None
    assert after.last_run_at == START + timedelta(minutes=5)
    assert after.next_run_at == START + timedelta(minutes=6)


async def test_paused_schedules_do_not_run(tasks: Tasks) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    schedule = await every_minute(store)
    await store.set_paused(schedule.schedule_id, True, schedule.next_run_at)
    await tick(ports(deps, store), START + timedelta(minutes=1, seconds=1))
    assert publisher.published == []


async def test_a_run_abandoned_between_claim_and_submit_is_resubmitted_with_its_task_id(
    tasks: Tasks,
) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    schedule = await every_minute(store)
    slot = START + timedelta(minutes=1)
    key = run_key(schedule.schedule_id, slot)
    # A scheduler claimed the run, then died before it published.
    await store.claim_run(Run(run_key=key, schedule_id=schedule.schedule_id, slot=slot,
                              run_at=slot, task_id=run_task_id(key), claimed_at=slot))
    await tick(ports(deps, store), slot + timedelta(seconds=2))
    assert publisher.published == []  # it may still be publishing
    await tick(ports(deps, store), slot + timedelta(seconds=25))
    assert [p.envelope.task_id for p in publisher.published] == [run_task_id(key)]


async def test_a_failed_publish_is_retried_without_a_second_task_id(tasks: Tasks) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    await every_minute(store, "last")
    publisher.down = True
    await tick(ports(deps, store), START + timedelta(minutes=1, seconds=1))
    publisher.down = False
    await tick(ports(deps, store), START + timedelta(minutes=1, seconds=30))
    ids = {p.envelope.task_id for p in publisher.published}
    assert len(publisher.published) == 1
    assert len(ids) == 1


async def test_runs_over_the_owner_keys_rate_are_skipped_and_the_schedules_move_on(
    tasks: Tasks, caplog: pytest.LogCaptureFixture,
) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    clock = ManualClock()
    limiter = RateLimiter(clock=clock)
    # Three schedules of one key allowed 1 task/s, all due at the same minute; one of another key.
    slow = [await owned_by(store, "key-slow", 1.0) for _ in range(3)]
    other = await owned_by(store, "key-other", 1.0)

    await tick(ports(deps, store, limiter), START + timedelta(minutes=1, seconds=1))

    submitted = {(p.envelope.labels or ("",))[0] for p in publisher.published}
    assert len([s for s in slow if f"schedule={s.schedule_id}" in submitted]) == 1
    assert f"schedule={other.schedule_id}" in submitted
    for schedule in (*slow, other):
        after = await store.get(schedule.schedule_id)
        assert after is not None
        assert after.next_run_at == START + timedelta(minutes=2)
    assert caplog.text.count("over the rate of the key that made it") == 2
    skipped = [run for run in store.runs.values() if run.run_at is None]
    assert len(skipped) == 2

    clock.advance(60)
    await tick(ports(deps, store, limiter), START + timedelta(minutes=2, seconds=1))
    assert len(publisher.published) == 2 + 2  # the bucket refilled one run's worth


async def owned_by(store: MemorySchedules, key: str, rate: float) -> Schedule:
    schedule = create_schedule("acme", task_type="sleep", payload={"seconds": 0}, cron=None,
                               interval_s=60, timezone="UTC", catch_up="skip", labels=(),
                               max_attempts=None, timeout_s=None, now=START, owner_key=key,
                               owner_rate_per_s=rate)
    await store.add(schedule)
    return schedule


async def test_only_the_scheduler_that_claims_a_run_charges_it_to_the_key(tasks: Tasks) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    clock = ManualClock()
    first, second = RateLimiter(clock=clock), RateLimiter(clock=clock)
    await owned_by(store, "key-one", 1.0)
    now = START + timedelta(minutes=1, seconds=1)

    await asyncio.gather(tick(ports(deps, store, first), now),
                         tick(ports(deps, store, second), now))

    assert len(publisher.published) == 1
    # The bucket holds one run: the loser of the claim still has room for the key's next run.
    room = [first.has_room("key-one", 1.0), second.has_room("key-one", 1.0)]
    assert sorted(room) == [False, True]


class SchedulerLoop:
    """The scheduler's loop (scheduler.runtime) on a manual clock: tick, then move the clock to
    the earliest next due time, or on by the loop's shortest sleep if one is due already."""

    def __init__(self, deps: Dependencies, store: MemorySchedules) -> None:
        self.store = store
        self.ports = ports(deps, store)

    async def run(self, start: datetime, until: datetime) -> None:
        now = start
        while now <= until:
            await tick(self.ports, now)
            earliest = await self.store.earliest()
            assert earliest is not None
            now = max(now + timedelta(milliseconds=10), earliest)


async def every_seconds(store: MemorySchedules, seconds: float, catch_up: CatchUp) -> Schedule:
    schedule = create_schedule("acme", task_type="sleep", payload={"seconds": 0}, cron=None,
                               interval_s=seconds, timezone="UTC", catch_up=catch_up,
                               labels=(), max_attempts=None, timeout_s=None, now=START)
    await store.add(schedule)
    return schedule


def run_times(publisher: RecordingPublisher, store: MemorySchedules) -> list[datetime]:
    """The due time each submitted task ran for, in order of submission."""
    by_task = {run.task_id: run.run_at for run in store.runs.values() if run.run_at is not None}
    return [by_task[p.envelope.task_id] for p in publisher.published]


def seconds(*offsets: float) -> list[datetime]:
    return [START + timedelta(seconds=s) for s in offsets]


@pytest.mark.parametrize("catch_up", ["skip", "last"])
async def test_due_times_within_the_grace_of_a_late_first_check_each_run_once(
    tasks: Tasks, catch_up: CatchUp,
) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    await every_seconds(store, 1, catch_up)
    # Down from the start until 12.5 s: due times 8 to 12 are within the 5-s grace of the
    # first check, 1 to 7 were missed. `last` runs none of the missed ones: 8 to 12 run.
    await SchedulerLoop(deps, store).run(START + timedelta(seconds=12.5),
                                         START + timedelta(seconds=16.5))
    assert run_times(publisher, store) == seconds(8, 9, 10, 11, 12, 13, 14, 15, 16)


async def test_last_runs_the_latest_missed_due_time_when_none_is_within_the_grace(
    tasks: Tasks,
) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    await every_seconds(store, 10, "last")
    # Down until 46 s: 10 to 30 missed, 40 six seconds late (missed too), 50 still to come.
    await SchedulerLoop(deps, store).run(START + timedelta(seconds=46),
                                         START + timedelta(seconds=61))
    assert run_times(publisher, store) == seconds(40, 50, 60)


@pytest.mark.parametrize("down_s", [0.5, 2.5, 4.9])
async def test_an_outage_under_the_grace_loses_and_doubles_nothing(
    tasks: Tasks, down_s: float,
) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    await every_seconds(store, 1, "skip")
    loop = SchedulerLoop(deps, store)
    await loop.run(START + timedelta(seconds=1), START + timedelta(seconds=3))
    await loop.run(START + timedelta(seconds=3 + down_s), START + timedelta(seconds=9))
    assert run_times(publisher, store) == seconds(*range(1, 10))


async def test_two_schedulers_catching_up_together_run_each_due_time_once(tasks: Tasks) -> None:
    deps, publisher, _ = tasks
    store = MemorySchedules()
    await every_seconds(store, 2, "skip")
    start, until = START + timedelta(seconds=16.5), START + timedelta(seconds=21)
    await asyncio.gather(SchedulerLoop(deps, store).run(start, until),
                         SchedulerLoop(deps, store).run(start + timedelta(milliseconds=3), until))
    assert sorted(run_times(publisher, store)) == seconds(12, 14, 16, 18, 20)
