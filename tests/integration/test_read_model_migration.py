"""`taskproc read-model migrate` on the real MongoDB: documents stored before the listing keys
existed are not listed; after the migration they are, in order, with their dates untouched; a
second run changes nothing; a large store is migrated while the scheduler keeps reading its
schedules."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from contracts.messages import StatusEvent
from contracts.statuses import Status
from infra.mongodb.client import mongo_client
from infra.mongodb.read_model_migration import Pace, backfill_listing_keys
from infra.mongodb.schedule_store import MongoSchedules
from infra.mongodb.task_queries import LIST_KEY, UPDATED_KEY, derived_fields
from infra.mongodb.task_store import TaskStore, to_document
from infra.runtime.settings.system import SystemSettings
from scheduler.runtime import run_scheduler
from service.queries import TaskQuery

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TENANT = "migration"
# The store had ~82,000 tasks; the suite migrates 100,000 (TASKPROC_MIGRATION_TASKS sets
# another size). On nx-27017 the module took 116 s on a quiet machine, and 224 s with 2 cores
# shared with other test runs (the bulk fill 76 s, the migration, resting as long as it works,
# 148 s, while 1,857 schedule reads took 5 ms at the median and 601 ms at most).
LARGE_STORE = int(os.environ.get("TASKPROC_MIGRATION_TASKS", "100000"))


class Database:
    def __init__(self, settings: SystemSettings) -> None:
        self.name = f"migration_{uuid.uuid4().hex[:8]}"
        self.client = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
        self.store = TaskStore(self.client, self.name)
        self.tasks = self.client[self.name]["tasks"]
        self.settings = settings

    async def old_style(self, task_id: str, second: int) -> None:
        """A task as a store before the listing keys wrote it: the state, no keys."""
        scratch = TaskStore(self.client, self.name + "_scratch")
        state = await scratch.apply(event(task_id, second))
        document = to_document(state)
        del document[LIST_KEY], document[UPDATED_KEY]
        await self.tasks.insert_one(document)

    async def old_style_bulk(self, count: int) -> None:
        """`count` old-shape tasks, inserted straight in bulk (one apply each would take
        minutes)."""
        scratch = TaskStore(self.client, self.name + "_scratch")
        template = to_document(await scratch.apply(event("template", 0)))
        del template[LIST_KEY], template[UPDATED_KEY]
        # 1,000 a round trip: 5,000 outlasted the driver's 6 s socket timeout on a busy store.
        for start in range(0, count, 1_000):
            await self.tasks.insert_many([
                {**template, "_id": f"bulk-{n:07d}", "created_at": T0 + timedelta(seconds=n),
                 "updated_at": T0 + timedelta(seconds=n)}
                for n in range(start, min(count, start + 1_000))], ordered=False)

    async def listed(self, created_after: datetime | None = None) -> list[str]:
        """Every page of the tenant's listing, one task a page (cursors, as GET /tasks)."""
        listed, query = [], TaskQuery(owners=(TENANT,), limit=1, created_after=created_after)
        while True:
            page = await self.store.find(query)
            listed += [state.task_id for state in page.items]
            if page.next is None:
                return listed
            query = dataclasses.replace(query, after=page.next)

    async def migrate(self, *args: str) -> Result:
        return await asyncio.to_thread(CliRunner().invoke, cli, ["read-model", "migrate", *args],
                                       env={"MONGODB_URL": self.settings.mongodb_url,
                                            "MONGODB_DATABASE": self.name})


def event(task_id: str, second: int) -> StatusEvent:
    return StatusEvent(task_id=task_id, task_type="sleep", status=Status.QUEUED, attempt=0,
                       worker="migration", tenant=TENANT, at=T0 + timedelta(seconds=second))


@pytest.fixture
async def database(settings: SystemSettings) -> AsyncIterator[Database]:
    db = Database(settings)
    await db.store.ensure_indexes(settings.retention)
    yield db
    await db.client.drop_database(db.name)
    await db.client.drop_database(db.name + "_scratch")
    await db.client.close()


async def test_old_documents_are_listed_after_the_migration_and_only_their_keys_change(
    database: Database,
) -> None:
    for second, task_id in enumerate(["old-a", "old-b", "old-c"]):
        await database.old_style(task_id, second)
    await database.store.apply(event("new-d", 3))
    before_listed = await database.listed()
    before_bounded = await database.listed(created_after=T0 - timedelta(hours=1))
    before = {doc["_id"]: doc async for doc in database.tasks.find({})}

    result = await database.migrate("--batch", "2")

    assert before_listed == before_bounded == ["new-d"]
    assert result.exit_code == 0, result.output
    assert "3 task(s) given listing keys" in result.stderr
    assert await database.listed() == ["new-d", "old-c", "old-b", "old-a"]
    assert await database.listed(created_after=T0) == ["new-d", "old-c", "old-b"]
    # The index that found them is gone with them: every index costs every write.
    indexed = [[key for key, _ in spec["key"]]
               for spec in (await database.tasks.index_information()).values()]
    assert [LIST_KEY] not in indexed
    after = {doc["_id"]: doc async for doc in database.tasks.find({})}
    for task_id, document in after.items():
        assert isinstance(document["created_at"], datetime)
        assert document == {**before[task_id], **derived_fields(
            task_id, before[task_id]["created_at"], before[task_id]["updated_at"])}


async def test_a_second_run_finds_nothing_to_do(database: Database) -> None:
    await database.old_style("old-a", 0)
    first = await database.migrate()
    migrated = await database.tasks.find_one({"_id": "old-a"})

    again = await database.migrate()

    assert first.exit_code == again.exit_code == 0, again.output
    assert "nothing to do" in again.stderr
    assert await database.tasks.find_one({"_id": "old-a"}) == migrated


async def test_a_document_the_projector_rewrote_meanwhile_keeps_its_own_keys(
    database: Database,
) -> None:
    # The update matches only documents still without keys: a later write by the store wins.
    await database.old_style("old-a", 0)
    state = await database.store.apply(event("old-a", 0).model_copy(
        update={"status": Status.RUNNING, "attempt": 1, "at": T0 + timedelta(minutes=5)}))
    written: dict[str, Any] | None = await database.tasks.find_one({"_id": "old-a"})

    result = await database.migrate()

    assert result.exit_code == 0, result.output
    assert written is not None
    assert written[UPDATED_KEY] == derived_fields("old-a", state.created_at,
                                                  state.updated_at)[UPDATED_KEY]
    assert await database.tasks.find_one({"_id": "old-a"}) == written


class Interrupted(Exception):
    pass


async def test_a_run_stopped_half_way_is_resumed_by_the_next_one(database: Database) -> None:
    for second in range(5):
        await database.old_style(f"old-{second}", second)

    def stop_after_the_first_batch(done: int) -> None:
        raise Interrupted  # as a timeout or Ctrl-C would, between two batches

    with pytest.raises(Interrupted):
        await backfill_listing_keys(database.tasks, pace=Pace(batch=2, pause_ratio=0),
                                    on_batch=stop_after_the_first_batch)
    listed_between = await database.listed()
    result = await database.migrate()

    assert len(listed_between) == 2
    assert result.exit_code == 0, result.output
    assert "3 task(s) given listing keys" in result.stderr
    assert await database.listed() == [f"old-{second}" for second in reversed(range(5))]


async def test_an_unreadable_document_is_named_and_left_and_the_others_are_migrated(
    database: Database,
) -> None:
    for second, task_id in enumerate(["old-a", "old-b", "old-c"]):
        await database.old_style(task_id, second)
    await database.tasks.update_one({"_id": "old-b"}, {"$set": {"status": "no-such-status"}})

    result = await database.migrate("--batch", "1")

    assert result.exit_code == 1, result.output
    assert "2 task(s) given listing keys" in result.stderr
    assert "unreadable, left as it is: old-b" in result.stderr
    assert await database.listed() == ["old-c", "old-a"]


@pytest.mark.timeout(max(120, LARGE_STORE // 200))
async def test_a_large_store_is_migrated_while_the_scheduler_keeps_reading_its_schedules(
    database: Database, caplog: pytest.LogCaptureFixture,
) -> None:
    await database.old_style_bulk(LARGE_STORE)
    settings = database.settings.model_copy(update={
        "mongodb_database": database.name, "scheduler_max_sleep_s": 0.2})
    stop = asyncio.Event()
    scheduler = asyncio.create_task(run_scheduler(settings, stop=stop))
    # The scheduler's own read, timed from outside while the migration runs.
    schedules = MongoSchedules(database.client, database.name)
    latencies: list[float] = []

    async def read_schedules_until(done: asyncio.Future[Result]) -> None:
        while not done.done():
            started = time.monotonic()
            await schedules.earliest()
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)

    caplog.set_level(logging.WARNING, logger="scheduler")
    started = time.monotonic()
    migration = asyncio.ensure_future(database.migrate())
    await read_schedules_until(migration)
    result = await migration
    took = time.monotonic() - started
    stop.set()
    await asyncio.wait_for(scheduler, timeout=10)

    assert result.exit_code == 0, result.output
    assert f"{LARGE_STORE} task(s) given listing keys" in result.stderr
    assert await database.tasks.find_one({LIST_KEY: {"$exists": False}}) is None
    assert not [record.getMessage() for record in caplog.records
                if "cannot read schedules" in record.getMessage()]
    # Each read well inside the scheduler's timeout (its reads timed out while the old
    # migration counted).
    assert max(latencies) < settings.mongodb_timeout_s / 2, latencies
    print(f"migrated {LARGE_STORE} tasks in {took:.1f}s; schedule reads: {len(latencies)}, "
          f"median {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
