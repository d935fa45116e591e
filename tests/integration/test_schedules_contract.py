"""The schedules store's contract, run against the MongoDB adapter and the in-memory fake: due
by `next_run_at` to the millisecond (nx-27017 compares dates to the second, the adapter a
number), one claim of a run wins, a schedule moves on only from the due time it was read at."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from contracts.messages import utcnow
from infra.mongodb.client import mongo_client
from infra.mongodb.schedule_store import MongoSchedules
from infra.runtime.settings.system import SystemSettings
from service.schedules import Run, Schedule, Schedules, create_schedule, run_key, run_task_id
from tests.fakes.schedules import MemorySchedules

RETENTION = timedelta(days=30)


@pytest.fixture(params=["mongodb", "memory"])
async def store(
    request: pytest.FixtureRequest, settings: SystemSettings
) -> AsyncIterator[Schedules]:
    if request.param == "memory":
        yield MemorySchedules()
        return
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    # A database of its own: `due` and `earliest` see every schedule stored.
    schedules = MongoSchedules(client, f"{settings.mongodb_database}-sched-{uuid.uuid4().hex[:8]}")
    await schedules.ensure_indexes(RETENTION)
    yield schedules
    await client.close()


def a_schedule(tenant: str = "acme", **changes: object) -> Schedule:
    schedule = create_schedule(tenant, task_type="sleep", payload={"seconds": 0}, cron=None,
                               interval_s=60, timezone="UTC", catch_up="skip",
                               labels=("a",), max_attempts=None, timeout_s=None)
    return dataclasses.replace(schedule, **changes)  # type: ignore[arg-type]


async def test_a_schedule_reads_back_as_stored(store: Schedules) -> None:
    schedule = a_schedule()
    await store.add(schedule)

    assert await store.get(schedule.schedule_id) == schedule
    assert await store.of_tenant("acme", None, 10) == [schedule]
    assert await store.of_tenant("other", None, 10) == []
    assert await store.get("unknown") is None


async def test_due_compares_to_the_millisecond(store: Schedules) -> None:
    now = utcnow().replace(microsecond=500_000)
    due = a_schedule(next_run_at=now - timedelta(milliseconds=1))
    not_yet = a_schedule(next_run_at=now + timedelta(milliseconds=200))
    paused = a_schedule(next_run_at=now - timedelta(seconds=5), paused=True)
    for schedule in (due, not_yet, paused):
        await store.add(schedule)

    assert [s.schedule_id for s in await store.due(now, 10)] == [due.schedule_id]
    assert await store.earliest() == due.next_run_at


async def test_of_concurrent_claims_of_a_run_exactly_one_wins(store: Schedules) -> None:
    schedule = a_schedule()
    key = run_key(schedule.schedule_id, schedule.next_run_at)
    runs = [Run(run_key=key, schedule_id=schedule.schedule_id, slot=schedule.next_run_at,
                run_at=schedule.next_run_at, task_id=run_task_id(key), claimed_at=utcnow())
            for _ in range(4)]

    claimed = await asyncio.gather(*(store.claim_run(run) for run in runs))

    assert sorted(is_new for _, is_new in claimed) == [False, False, False, True]
    assert {run.task_id for run, _ in claimed} == {run_task_id(key)}
    await store.mark_submitted(key)
    again, is_new = await store.claim_run(runs[0])
    assert (again.submitted, is_new) == (True, False)


async def test_a_schedule_moves_on_only_from_the_due_time_it_was_read_at(
    store: Schedules,
) -> None:
    schedule = a_schedule()
    await store.add(schedule)
    following = schedule.next_run_at + timedelta(seconds=60)

    moved = await asyncio.gather(*(store.advance(schedule, following, None) for _ in range(3)))

    assert sorted(moved) == [False, False, True]
    after = await store.get(schedule.schedule_id)
    assert after is not None
    assert after.next_run_at == following


async def test_the_last_run_reads_back_in_utc_with_its_zone(store: Schedules) -> None:
    schedule = a_schedule()
    await store.add(schedule)
    slot = schedule.next_run_at
    key = run_key(schedule.schedule_id, slot)
    run = Run(run_key=key, schedule_id=schedule.schedule_id, slot=slot, run_at=slot,
              task_id=run_task_id(key), claimed_at=utcnow())

    assert await store.advance(schedule, slot + timedelta(seconds=60), run)

    after = await store.get(schedule.schedule_id)
    assert after is not None
    assert after.last_run_at is not None
    # nx-27017 keeps a datetime written by `$set` as text without a zone.
    assert after.last_run_at.utcoffset() == timedelta(0)
    assert abs(after.last_run_at - slot) < timedelta(milliseconds=1)
    assert after.last_task_id == run.task_id


async def test_pause_resume_and_delete(store: Schedules) -> None:
    schedule = a_schedule()
    await store.add(schedule)
    later = schedule.next_run_at + timedelta(minutes=5)

    paused = await store.set_paused(schedule.schedule_id, True, schedule.next_run_at)
    assert paused is not None
    assert paused.paused
    assert not await store.advance(schedule, later, None)
    resumed = await store.set_paused(schedule.schedule_id, False, later)
    assert resumed is not None
    assert (resumed.paused, resumed.next_run_at) == (False, later)
    assert await store.delete(schedule.schedule_id)
    assert not await store.delete(schedule.schedule_id)
    assert await store.set_paused(schedule.schedule_id, True, later) is None


async def test_a_tenants_schedules_page_in_creation_order_ties_by_id(store: Schedules) -> None:
    # Four in one millisecond (nx-27017 compares dates to the second: the key must not).
    same = utcnow().replace(microsecond=123_000)
    made = [a_schedule(created_at=same + timedelta(milliseconds=n // 4)) for n in range(8)]
    for schedule in made:
        await store.add(schedule)
    await store.add(a_schedule("other"))
    expected = sorted(made, key=lambda s: s.sort_key)

    pages: list[list[Schedule]] = []
    after = None
    while True:
        page = await store.of_tenant("acme", after, 3)
        if not page:
            break
        pages.append(page)
        after = page[-1].sort_key

    assert [len(page) for page in pages] == [3, 3, 2]
    assert [s.schedule_id for page in pages for s in page] == [s.schedule_id for s in expected]
    assert await store.count_of_tenant("acme", 5) == 5
    assert await store.count_of_tenant("acme", 100) == 8
    assert await store.count_of_tenant("nobody", 100) == 0


async def test_run_records_expire_with_the_tasks_retention(settings: SystemSettings) -> None:
    client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    database = f"{settings.mongodb_database}-runs-{uuid.uuid4().hex[:8]}"
    store = MongoSchedules(client, database)
    try:
        kind = await store.ensure_indexes(RETENTION)
        now = utcnow()
        schedule = a_schedule()
        old, recent = (Run(run_key=run_key(schedule.schedule_id, at),
                           schedule_id=schedule.schedule_id, slot=at, run_at=at,
                           task_id=run_task_id(str(at)), claimed_at=at, submitted=True)
                       for at in (now - RETENTION - timedelta(hours=1), now - timedelta(hours=1)))
        for run in (old, recent):
            await store.claim_run(run)

        if kind == "mongod":
            # A real mongod removes them itself, by a TTL index on `claimed_at`.
            indexes = await client[database]["schedule_runs"].index_information()
            assert any(spec.get("expireAfterSeconds") == RETENTION.total_seconds()
                       for spec in indexes.values())
            return
        removed = await store.sweep_expired(now)

        assert removed == 1
        assert (await store.claim_run(old))[1] is True  # gone: its key claims anew
        assert (await store.claim_run(recent))[1] is False  # kept
    finally:
        await client.close()

