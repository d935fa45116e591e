"""The MongoDB read model: collection `tasks`, one document per task, `_id` = task id."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from contracts.messages import StatusEvent
from contracts.projection import TaskState, apply

log = logging.getLogger(__name__)

# Writers race only on the same task, and each lost race means a newer event landed; a handful of
# rounds settles any real contention.
_MAX_ROUNDS = 20


class StoreUnavailable(Exception):
    """MongoDB did not answer in time."""


def mongo_client(url: str, timeout_s: float) -> AsyncMongoClient[dict[str, Any]]:
    """A client whose every operation fails within `timeout_s` instead of hanging."""
    millis = int(timeout_s * 1000)
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=millis, connectTimeoutMS=millis,
        socketTimeoutMS=millis * 2, appname="taskproc",
    )


class TaskStore:
    """Reads task state and folds status events in with a compare-and-set on `position`."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        self._tasks: AsyncCollection[dict[str, Any]] = client[database]["tasks"]

    async def ensure_indexes(self, retention: timedelta) -> None:
        try:
            await self._tasks.create_index([("status", ASCENDING), ("updated_at", DESCENDING)])
            await self._tasks.create_index([("task_type", ASCENDING), ("updated_at", DESCENDING)])
            await self._tasks.create_index([("created_at", DESCENDING)])
            # Finished tasks expire; a task without finished_at is never removed.
            await ensure_ttl_index(self._tasks, "finished_at", retention)
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    async def ping(self) -> None:
        try:
            await self._client.admin.command("ping")
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    async def get(self, task_id: str) -> TaskState | None:
        try:
            document = await self._tasks.find_one({"_id": task_id})
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error
        return None if document is None else _to_state(document)

    async def apply(self, event: StatusEvent, *, likely_new: bool = False) -> TaskState:
        """Fold `event` into the stored state; a stale or repeated event changes nothing.

        `likely_new` (a task id just made up) tries the insert before any read, saving a round
        trip; if the task exists after all, it folds into it as usual.
        """
        try:
            return await self._apply(event, likely_new)
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    async def _apply(self, event: StatusEvent, likely_new: bool) -> TaskState:
        for round_number in range(_MAX_ROUNDS):
            skip_read = likely_new and round_number == 0
            current = None if skip_read else await self.get(event.task_id)
            new = apply(current, event)
            if new is current:
                return new
            if current is None:
                try:
                    await self._tasks.insert_one(_to_document(new))
                    return new
                except DuplicateKeyError:
                    continue  # another writer created it first: fold into theirs
            written = await self._tasks.replace_one(
                {"_id": event.task_id, "position": current.position}, _to_document(new)
            )
            if written.matched_count == 1:
                return new
        raise StoreUnavailable(f"task {event.task_id}: too much write contention")


# MongoDB's codes for "an index on these keys exists with other options".
_INDEX_OPTIONS_CONFLICT = (85, 86)


async def ensure_ttl_index(
    collection: AsyncCollection[dict[str, Any]], field: str, ttl: timedelta
) -> None:
    """A TTL index on `field`; a changed TTL setting updates the existing index in place."""
    seconds = int(ttl.total_seconds())
    try:
        await collection.create_index(field, expireAfterSeconds=seconds)
    except OperationFailure as error:
        if error.code not in _INDEX_OPTIONS_CONFLICT:
            raise
        await collection.database.command(
            "collMod", collection.name,
            index={"keyPattern": {field: 1}, "expireAfterSeconds": seconds},
        )
        log.info("TTL of %s.%s changed to %ds", collection.name, field, seconds)


def _to_document(state: TaskState) -> dict[str, Any]:
    document = state.model_dump(mode="python", exclude={"task_id"})
    document["history"] = list(document["history"])
    return {"_id": state.task_id, **document}


def _to_state(document: dict[str, Any]) -> TaskState:
    fields = {key: value for key, value in document.items() if key != "_id"}
    return TaskState.model_validate({"task_id": document["_id"], **fields})
