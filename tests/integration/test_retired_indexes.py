"""Indexes no query reads any more are dropped from existing stores at start-up: every index is
paid for by every write."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from infra.mongodb import task_queries
from infra.mongodb.task_store import TaskStore

RETIRED = (
    [("status", ASCENDING), ("updated_at", DESCENDING)],
    [("task_type", ASCENDING), ("updated_at", DESCENDING)],
    [("created_at", DESCENDING)],
)


async def test_a_store_made_by_an_earlier_version_loses_the_indexes_nothing_reads(
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    database = f"indexes_{uuid.uuid4().hex[:8]}"
    tasks = client[database]["tasks"]
    try:
        for keys in RETIRED:
            await tasks.create_index(keys)

        await TaskStore(client, database).ensure_indexes(timedelta(days=30))

        # By fields alone: nx-27017 reports every index as ascending.
        kept = [[key for key, _ in spec["key"]]
                for spec in (await tasks.index_information()).values()]
        assert not [keys for keys in RETIRED if [key for key, _ in keys] in kept]
        assert all([key for key, _ in keys] in kept for keys in task_queries.LISTING_INDEXES)
    finally:
        await client.drop_database(database)
