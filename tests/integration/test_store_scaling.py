"""Regression check: reading or writing one task does not scan the collection.

A read by id must cost the same with 20,000 stored tasks as with 200; a full scan (as nx-27017's
TTL index once caused before every read) makes it ~50 times slower. Measured as a ratio of
medians in one run, so a busy machine slows both sides alike.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from pymongo import AsyncMongoClient

from contracts.messages import StatusEvent
from contracts.projection import apply
from contracts.statuses import Status
from infra.mongodb.task_store import TaskStore, to_document
from infra.runtime.settings.system import SystemSettings

SMALL, LARGE = 200, 20_000
SAMPLES = 200
# Indexed lookups grow with log(n); a scan grows with n (x100 here). 3 leaves room for noise.
MAX_RATIO = 3.0


def finished_task(task_id: str) -> dict[str, Any]:
    event = StatusEvent(task_id=task_id, task_type="sleep", status=Status.SUCCEEDED, attempt=1,
                        worker="scaling-test")
    return to_document(apply(None, event))


async def filled_store(
    client: AsyncMongoClient[dict[str, Any]], settings: SystemSettings, count: int
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


async def timed(operation: Awaitable[object]) -> float:
    started = time.perf_counter()
    await operation
    return time.perf_counter() - started


async def read_and_write_times(
    stores: dict[str, tuple[TaskStore, list[str]]],
) -> dict[str, tuple[float, float]]:
    """Median time of a read by id, and of folding one event into a stored task, per store.

    The stores take turns sample by sample, so a burst of noise on the machine hits both."""
    reads: dict[str, list[float]] = {name: [] for name in stores}
    writes: dict[str, list[float]] = {name: [] for name in stores}
    for index in range(SAMPLES):
        for name, (store, ids) in stores.items():
            task_id = ids[(index * 97) % len(ids)]
            reads[name].append(await timed(store.get(task_id)))
            late = StatusEvent(task_id=task_id, task_type="sleep", status=Status.RUNNING,
                               attempt=1, worker="scaling-test")
            writes[name].append(await timed(store.apply(late)))
    return {name: (statistics.median(reads[name]), statistics.median(writes[name]))
            for name in stores}


async def test_reads_and_writes_by_id_cost_the_same_at_100_times_the_tasks(
    client: AsyncMongoClient[dict[str, Any]], settings: SystemSettings
) -> None:
    small, small_ids, small_db = await filled_store(client, settings, SMALL)
    large, large_ids, large_db = await filled_store(client, settings, LARGE)
    try:
        times = await read_and_write_times({"small": (small, small_ids),
                                            "large": (large, large_ids)})
    finally:
        await client.drop_database(small_db)
        await client.drop_database(large_db)

    (small_read, small_write), (large_read, large_write) = times["small"], times["large"]
    print(f"\nread by id: {small_read * 1000:.2f} ms at {SMALL}, {large_read * 1000:.2f} ms at "
          f"{LARGE}; fold one event: {small_write * 1000:.2f} ms / {large_write * 1000:.2f} ms")
    assert large_read <= small_read * MAX_RATIO, "a read by id scans the collection"
    assert large_write <= small_write * MAX_RATIO, "a write by id scans the collection"
