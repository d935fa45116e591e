"""Regression check: reading or writing one task does not scan the collection.

A read by id must cost the same with 20,000 stored tasks as with 200; a full scan (as nx-27017's
TTL index once caused before every read) makes it ~50 times slower. Measured as a ratio of
medians in one run, so a busy machine slows both sides alike.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from contracts.messages import StatusEvent
from contracts.projection import apply
from contracts.statuses import Status
from infra.settings import Settings
from infra.store import TaskStore, mongo_client, to_document

pytestmark = pytest.mark.integration

SMALL, LARGE = 200, 20_000
SAMPLES = 200
# Indexed lookups grow with log(n); a scan grows with n (x100 here). 3 leaves room for noise.
MAX_RATIO = 3.0


def finished_task(task_id: str) -> dict[str, Any]:
    event = StatusEvent(task_id=task_id, task_type="sleep", status=Status.SUCCEEDED, attempt=1,
                        worker="scaling-test")
    return to_document(apply(None, event))


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    connection = mongo_client(settings.mongodb_url, settings.mongodb_timeout_s)
    yield connection
    await connection.close()


async def filled_store(
    client: AsyncMongoClient[dict[str, Any]], settings: Settings, count: int
) -> tuple[TaskStore, list[str], str]:
    """A store of its own with `count` finished tasks, indexed as the services index it."""
    database = f"scaling_{count}_{uuid.uuid4().hex[:6]}"
    store = TaskStore(client, database)
    await store.ensure_indexes(settings.retention)
    ids = [f"scaling-{uuid.uuid4()}" for _ in range(count)]
    template = finished_task("template")
    for start in range(0, count, 5_000):
        documents = [{**template, "_id": task_id} for task_id in ids[start:start + 5_000]]
        await client[database]["tasks"].insert_many(documents, ordered=False)
    return store, ids, database


async def median_seconds(store: TaskStore, ids: list[str], stride: int) -> tuple[float, float]:
    """Median time of a read by id, and of a guarded write (one event folded in), per task."""
    reads, writes = [], []
    for index in range(SAMPLES):
        task_id = ids[(index * stride) % len(ids)]
        started = time.perf_counter()
        assert await store.get(task_id) is not None
        reads.append(time.perf_counter() - started)
    for index in range(SAMPLES // 4):
        task_id = ids[(index * stride + 1) % len(ids)]
        late = StatusEvent(task_id=task_id, task_type="sleep", status=Status.RUNNING, attempt=1,
                           worker="scaling-test")
        started = time.perf_counter()
        await store.apply(late)
        writes.append(time.perf_counter() - started)
    return statistics.median(reads), statistics.median(writes)


async def test_reads_and_writes_by_id_cost_the_same_at_100_times_the_tasks(
    client: AsyncMongoClient[dict[str, Any]], settings: Settings
) -> None:
    small, small_ids, small_db = await filled_store(client, settings, SMALL)
    large, large_ids, large_db = await filled_store(client, settings, LARGE)
    try:
        # Interleaved, so a burst of noise on the machine hits both sides.
        small_read, small_write = await median_seconds(small, small_ids, 7)
        large_read, large_write = await median_seconds(large, large_ids, 97)
        small_read_2, small_write_2 = await median_seconds(small, small_ids, 11)
    finally:
        await client.drop_database(small_db)
        await client.drop_database(large_db)

    base_read = min(small_read, small_read_2)
    base_write = min(small_write, small_write_2)
    print(f"\nread by id: {base_read * 1000:.2f} ms at {SMALL}, {large_read * 1000:.2f} ms at "
          f"{LARGE}; fold one event: {base_write * 1000:.2f} ms / {large_write * 1000:.2f} ms")
    assert large_read <= base_read * MAX_RATIO, "a read by id scans the collection"
    assert large_write <= base_write * MAX_RATIO, "a write by id scans the collection"
