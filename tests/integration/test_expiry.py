"""Expiry of finished tasks: a TTL index on a real mongod, a sweep on nx-27017 (whose TTL index
scans the whole collection before every read), and migration of stores made with the TTL index."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from contracts.messages import StatusEvent
from contracts.statuses import Status
from infra.mongodb.expiry import server_kind
from infra.mongodb.task_store import TaskStore

RETENTION = timedelta(days=30)


@pytest.fixture
async def database(client: AsyncMongoClient[dict[str, Any]]) -> AsyncIterator[str]:
    """A database of the test's own, so its indexes are the test's to shape."""
    name = f"expiry_{uuid.uuid4().hex[:8]}"
    yield name
    await client.drop_database(name)


def finished(task_id: str, at: datetime) -> StatusEvent:
    return StatusEvent(task_id=task_id, task_type="sleep", status=Status.SUCCEEDED, attempt=1,
                       at=at, worker="expiry-tests")


def ttl_indexes(indexes: Mapping[str, Any]) -> list[str]:
    return [name for name, spec in indexes.items() if "expireAfterSeconds" in spec]


async def test_a_store_made_with_a_ttl_index_is_migrated_on_nx_27017(
    client: AsyncMongoClient[dict[str, Any]], database: str
) -> None:
    if await server_kind(client) != "nx-27017":
        pytest.skip("a real mongod keeps its TTL index")
    tasks = client[database]["tasks"]
    await tasks.create_index("finished_at", expireAfterSeconds=3600)

    kind = await TaskStore(client, database).ensure_indexes(RETENTION)

    indexes = await tasks.index_information()
    assert kind == "nx-27017"
    assert ttl_indexes(indexes) == []
    assert any(spec["key"] == [("finished_at", 1)] for spec in indexes.values())


async def test_a_real_mongod_expires_by_ttl_index(
    client: AsyncMongoClient[dict[str, Any]], database: str
) -> None:
    if await server_kind(client) != "mongod":
        pytest.skip("nx-27017 expires by sweep")
    store = TaskStore(client, database)

    await store.ensure_indexes(RETENTION)

    assert ttl_indexes(await client[database]["tasks"].index_information())
    assert await store.sweep_expired(datetime.now(UTC)) == 0


async def test_the_sweep_removes_finished_tasks_past_retention_and_keeps_the_rest(
    client: AsyncMongoClient[dict[str, Any]], database: str
) -> None:
    store = TaskStore(client, database)
    if await store.ensure_indexes(RETENTION) != "nx-27017":
        pytest.skip("a real mongod expires by TTL index")
    now = datetime.now(UTC)
    old, recent, unfinished = "old", "recent", "unfinished"
    await store.apply(finished(old, now - RETENTION - timedelta(minutes=1)))
    await store.apply(finished(recent, now - RETENTION + timedelta(minutes=1)))
    await store.apply(StatusEvent(task_id=unfinished, task_type="sleep", status=Status.RUNNING,
                                  attempt=1, at=now - RETENTION * 2, worker="expiry-tests"))

    removed = await store.sweep_expired(now)

    assert removed == 1
    assert await store.get(old) is None
    assert await store.get(recent) is not None
    assert await store.get(unfinished) is not None
