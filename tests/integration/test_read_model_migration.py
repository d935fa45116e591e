"""`taskproc read-model migrate` on the real MongoDB: documents stored before the listing keys
existed are not listed; after the migration they are, in order, with their dates untouched; a
second run changes nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result

from contracts.messages import StatusEvent
from contracts.statuses import Status
from infra.cli import cli
from infra.mongo import mongo_client
from infra.settings import Settings
from infra.store import TaskStore, to_document
from infra.task_queries import LIST_KEY, UPDATED_KEY, derived_fields
from service.queries import TaskQuery

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TENANT = "migration"


class Database:
    def __init__(self, settings: Settings) -> None:
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
async def database(settings: Settings) -> AsyncIterator[Database]:
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
