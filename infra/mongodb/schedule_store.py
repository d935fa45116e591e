"""Schedules on MongoDB: collection `schedules` (one document per schedule, `_id` = schedule
id) and `schedule_runs` (one per claimed due time, `_id` = run key, so only one insert of a run
wins). The adapter behind service.schedules.Schedules.

`next_run_key` holds `next_run_at` as epoch milliseconds, indexed with `paused`: a due query is
a range on a number, which nx-27017 compares exactly (it compares dates to the whole second).
`list_key` (infra.mongodb.task_queries.list_key: creation time and id as one string) pages a
tenant's schedules with the same cursor as `GET /tasks`, for the same reason.

Run records expire `retention` after they were claimed, as finished tasks do
(infra.mongodb.expiry: a TTL index on a mongod, a sweep the scheduler runs on nx-27017). A run
matters only until its schedule has moved past its due time, which takes one tick, not days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from infra.mongodb.client import store_errors, stored_time
from infra.mongodb.expiry import Expiry, ServerKind, server_kind
from infra.mongodb.task_queries import list_key
from service.queries import SortKey
from service.schedules import Run, Schedule

LIST_KEY = "list_key"
# Replaced by (tenant, list_key): dropped so that no write pays for it.
_RETIRED_INDEXES = (("tenant", "created_at"),)


def millis(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


class MongoSchedules:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        self._schedules: AsyncCollection[dict[str, Any]] = client[database]["schedules"]
        self._runs: AsyncCollection[dict[str, Any]] = client[database]["schedule_runs"]
        self._expiry: Expiry | None = None

    @store_errors
    async def ensure_indexes(self, retention: timedelta) -> ServerKind:
        """Indexes, `list_key` on schedules stored before it existed, and the expiry of run
        records after `retention`; which server this is."""
        kind = await server_kind(self._client)
        await self._schedules.create_index([("paused", ASCENDING), ("next_run_key", ASCENDING)])
        await self._schedules.create_index([("tenant", ASCENDING), (LIST_KEY, ASCENDING)])
        for name, spec in (await self._schedules.index_information()).items():
            if tuple(key for key, _ in spec["key"]) in _RETIRED_INDEXES:
                await self._schedules.drop_index(name)
        # Few documents (at most MAX_SCHEDULES_PER_TENANT a tenant), once per upgraded store.
        async for document in self._schedules.find({LIST_KEY: {"$exists": False}},
                                                   {"created_at": 1}):
            await self._schedules.update_one(
                {"_id": {"$eq": document["_id"]}},
                {"$set": {LIST_KEY: list_key(document["created_at"], document["_id"])}})
        await self._runs.create_index([("schedule_id", ASCENDING), ("slot", ASCENDING)])
        expiry = Expiry(self._runs, "claimed_at", retention)
        await expiry.ensure(kind)
        self._expiry = expiry if kind == "nx-27017" else None
        return kind

    @store_errors
    async def sweep_expired(self, now: datetime) -> int:
        """Remove run records past their retention where no TTL index does; how many went."""
        if self._expiry is None:
            return 0
        return await self._expiry.sweep(now)

    @store_errors
    async def add(self, schedule: Schedule) -> None:
        await self._schedules.insert_one(_document(schedule))

    @store_errors
    async def get(self, schedule_id: str) -> Schedule | None:
        found = await self._schedules.find_one({"_id": {"$eq": schedule_id}})
        return None if found is None else _schedule(found)

    @store_errors
    async def of_tenant(self, tenant: str, after: SortKey | None, limit: int) -> list[Schedule]:
        selector: dict[str, Any] = {"tenant": {"$eq": tenant}}
        if after is not None:
            selector[LIST_KEY] = {"$gt": list_key(after.created_at, after.task_id)}
        cursor = self._schedules.find(selector).sort(LIST_KEY, ASCENDING).limit(limit)
        return [_schedule(document) async for document in cursor]

    @store_errors
    async def count_of_tenant(self, tenant: str, at_most: int) -> int:
        # Not count_documents: nx-27017 runs it as a scan of the whole collection.
        cursor = self._schedules.find({"tenant": {"$eq": tenant}}, {"_id": 1}).limit(at_most)
        return len([document async for document in cursor])

    @store_errors
    async def delete(self, schedule_id: str) -> bool:
        result = await self._schedules.delete_one({"_id": {"$eq": schedule_id}})
        return result.deleted_count == 1

    @store_errors
    async def set_paused(self, schedule_id: str, paused: bool,
                         next_run_at: datetime) -> Schedule | None:
        found = await self._schedules.find_one_and_update(
            {"_id": {"$eq": schedule_id}},
            {"$set": {"paused": paused, "next_run_at": next_run_at,
                      "next_run_key": millis(next_run_at)}},
            return_document=ReturnDocument.AFTER)
        return None if found is None else _schedule(found)

    @store_errors
    async def due(self, now: datetime, limit: int) -> list[Schedule]:
        cursor = self._schedules.find(
            {"paused": {"$eq": False}, "next_run_key": {"$lte": millis(now)}}
        ).sort("next_run_key", ASCENDING).limit(limit)
        return [_schedule(document) async for document in cursor]

    @store_errors
    async def earliest(self) -> datetime | None:
        found = await self._schedules.find_one(
            {"paused": {"$eq": False}, "next_run_key": {"$gte": 0}},
            sort=[("next_run_key", ASCENDING)], projection={"next_run_key": True})
        if found is None:
            return None
        return datetime.fromtimestamp(found["next_run_key"] / 1000, UTC)

    @store_errors
    async def advance(self, schedule: Schedule, next_run_at: datetime, run: Run | None) -> bool:
        changes: dict[str, Any] = {"next_run_at": next_run_at,
                                   "next_run_key": millis(next_run_at)}
        if run is not None:
            changes.update(last_run_at=run.run_at or run.slot, last_task_id=run.task_id)
        # Guarded by the due time it was at: of two schedulers, one moves it.
        result = await self._schedules.update_one(
            {"_id": {"$eq": schedule.schedule_id},
             "next_run_key": {"$eq": millis(schedule.next_run_at)},
             "paused": {"$eq": False}},
            {"$set": changes})
        return result.modified_count == 1

    @store_errors
    async def claim_run(self, run: Run) -> tuple[Run, bool]:
        try:
            await self._runs.insert_one(
                {"_id": run.run_key, "schedule_id": run.schedule_id, "slot": run.slot,
                 "run_at": run.run_at, "task_id": run.task_id, "claimed_at": run.claimed_at,
                 "submitted": run.submitted})
        except DuplicateKeyError:
            found = await self._runs.find_one({"_id": {"$eq": run.run_key}})
            if found is None:
                raise  # a run deleted between insert and read: store_errors reports it
            return Run(run_key=found["_id"], schedule_id=found["schedule_id"],
                       slot=found["slot"], run_at=found["run_at"], task_id=found["task_id"],
                       claimed_at=found["claimed_at"], submitted=found["submitted"]), False
        return run, True

    @store_errors
    async def mark_submitted(self, key: str) -> None:
        await self._runs.update_one({"_id": {"$eq": key}}, {"$set": {"submitted": True}})


def _document(schedule: Schedule) -> dict[str, Any]:
    return {"_id": schedule.schedule_id, "tenant": schedule.tenant,
            "task_type": schedule.task_type, "payload": schedule.payload, "cron": schedule.cron,
            "interval_s": schedule.interval_s, "timezone": schedule.timezone,
            "catch_up": schedule.catch_up, "labels": list(schedule.labels),
            "max_attempts": schedule.max_attempts, "timeout_s": schedule.timeout_s,
            "paused": schedule.paused, "next_run_at": schedule.next_run_at,
            "next_run_key": millis(schedule.next_run_at), "created_at": schedule.created_at,
            "last_run_at": schedule.last_run_at, "last_task_id": schedule.last_task_id,
            LIST_KEY: list_key(schedule.created_at, schedule.schedule_id),
            "owner_key": schedule.owner_key, "owner_rate_per_s": schedule.owner_rate_per_s}


def _schedule(document: dict[str, Any]) -> Schedule:
    # Dates come back in milliseconds; next_run_at is read from its exact key; last_run_at,
    # written by `$set`, may come back as text (stored_time).
    return Schedule(schedule_id=document["_id"], tenant=document["tenant"],
                    task_type=document["task_type"], payload=document["payload"],
                    cron=document["cron"], interval_s=document["interval_s"],
                    timezone=document["timezone"], catch_up=document["catch_up"],
                    labels=tuple(document["labels"]), max_attempts=document["max_attempts"],
                    timeout_s=document["timeout_s"], paused=document["paused"],
                    next_run_at=datetime.fromtimestamp(document["next_run_key"] / 1000, UTC),
                    created_at=document["created_at"],
                    last_run_at=stored_time(document["last_run_at"]),
                    last_task_id=document["last_task_id"],
                    owner_key=document.get("owner_key"),
                    owner_rate_per_s=document.get("owner_rate_per_s"))
