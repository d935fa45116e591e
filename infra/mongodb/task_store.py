"""The MongoDB read model: collection `tasks`, one document per task, `_id` = task id.

Every round trip to the store is the expensive part of a task's life, so events are folded many
tasks at a time: one read of the tasks concerned, one unordered bulk write of their new states.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, InsertOne, ReadPreference, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError
from pymongo.read_concern import ReadConcern

from contracts.messages import ProgressEvent, StatusEvent
from contracts.projection import TaskState, apply
from infra.mongodb import task_queries
from infra.mongodb.client import store_errors
from infra.mongodb.expiry import Expiry, ServerKind, server_kind
from service.errors import StoreUnavailable
from service.queries import TaskCounts, TaskPage, TaskQuery

log = logging.getLogger(__name__)

# Writers race only on the same task, and each lost race means a newer event landed; a handful of
# rounds settles any real contention.
_MAX_ROUNDS = 20
_DUPLICATE_KEY = 11000
# The fields of indexes earlier versions made that no query reads any more (listing uses the
# tenant's own). By fields alone: nx-27017 reports every index as ascending.
_RETIRED_INDEXES = (("status", "updated_at"), ("task_type", "updated_at"), ("created_at",))


class TaskStore:
    """The read model (service.ports.TaskReadModel) in MongoDB: reads task state and folds
    status events in, many tasks per round trip.

    Every write is guarded: a stored task is updated only if its `position` and the length of
    its history are still those the new state was folded from, and a task believed new is
    inserted, which fails if it exists. A guard that misses raises duplicate key (the guarded
    update is an upsert), which means "another writer got there first": only those tasks are
    read again and folded anew.
    """

    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], database: str, *, remember: int = 0,
        max_examined: int = task_queries.MAX_EXAMINED,
    ) -> None:
        """`remember`: how many tasks' last known states to keep, so that folding a later
        event into one of them needs no read (the guard catches a state that went stale).
        `max_examined`: the tasks one listing reads at most (infra/mongodb/task_queries.py)."""
        self._max_examined = max_examined
        self._client = client
        self._tasks: AsyncCollection[dict[str, Any]] = client[database]["tasks"]
        # Read your writes on a replica set: one task's state from the primary, majority
        # committed, whatever read preference the URL names for the rest (listings).
        self._primary = self._tasks.with_options(read_preference=ReadPreference.PRIMARY,
                                                 read_concern=ReadConcern("majority"))
        self._expiry: Expiry | None = None
        self._known: OrderedDict[str, TaskState] = OrderedDict()
        self._remember = remember

    @store_errors
    async def ensure_indexes(self, retention: timedelta) -> ServerKind:
        """Indexes for listing and for expiry; which server this is, for the caller to log."""
        kind = await server_kind(self._client)
        await self._drop_unused_indexes()
        for keys in task_queries.LISTING_INDEXES:
            await self._tasks.create_index(keys)
        # Finished tasks expire; a task without finished_at is never removed.
        expiry = Expiry(self._tasks, "finished_at", retention)
        await expiry.ensure(kind)
        self._expiry = expiry if kind == "nx-27017" else None
        return kind

    async def _drop_unused_indexes(self) -> None:
        """Drop the indexes no query reads any more (listing reads the tenant's ones): each
        one costs every write (on nx-27017, a replace took 0.23 ms with them, 0.19 without)."""
        for name, spec in (await self._tasks.index_information()).items():
            if tuple(key for key, _ in spec["key"]) in _RETIRED_INDEXES:
                await self._tasks.drop_index(name)
                log.info("dropped index %s of tasks: no query uses it", name)

    @store_errors
    async def sweep_expired(self, now: datetime) -> int:
        """Remove finished tasks past their retention where no TTL index does; how many."""
        if self._expiry is None:
            return 0
        return await self._expiry.sweep(now)

    @store_errors
    async def ping(self) -> None:
        await self._client.admin.command("ping")

    @store_errors
    async def get(self, task_id: str) -> TaskState | None:
        document = await self._primary.find_one({"_id": {"$eq": task_id}})
        return None if document is None else to_state(document)

    @store_errors
    async def find(self, query: TaskQuery) -> TaskPage:
        """One page of a listing (infra/mongodb/task_queries.py says how it is asked)."""
        return await task_queries.find(self._tasks, query, to_state,
                                       max_examined=self._max_examined)

    @store_errors
    async def count(self, owners: tuple[str | None, ...], cap: int) -> TaskCounts:
        return await task_queries.count(self._tasks, owners, cap)

    async def apply(self, event: StatusEvent, *, likely_new: bool = False) -> TaskState:
        """Fold `event` into the stored state; a stale or repeated event changes nothing."""
        states = await self.apply_many([event], likely_new=likely_new)
        return states[event.task_id]

    @store_errors
    async def apply_many(
        self, events: Sequence[StatusEvent | ProgressEvent], *, likely_new: bool = False
    ) -> dict[str, TaskState]:
        """Fold `events` (of any tasks, in the order they arrived) into the stored states; each
        task's resulting state, by id (none for a task known only from progress events).

        `likely_new` (task ids just made up) skips the first read: the inserts fail for any task
        that exists after all, and those are read and folded as usual.
        """
        by_task: dict[str, list[StatusEvent | ProgressEvent]] = defaultdict(list)
        for event in events:
            by_task[event.task_id].append(event)
        return await self._apply_many(by_task, likely_new)

    async def _apply_many(
        self, by_task: dict[str, list[StatusEvent | ProgressEvent]], likely_new: bool
    ) -> dict[str, TaskState]:
        results: dict[str, TaskState] = {}
        pending = list(by_task)
        current = {} if likely_new else await self._current(pending)
        for _ in range(_MAX_ROUNDS):
            writes: list[_Write] = []
            for task_id in pending:
                before = current.get(task_id)
                after = fold(before, by_task[task_id])
                if after is None:
                    continue  # progress of a task the read model does not have: nothing to do
                results[task_id] = after
                if after is not before:
                    writes.append(_Write(before, after))
            missed = await self._write(writes)
            stored = set(results).intersection(pending).difference(missed)
            self._keep(results[task_id] for task_id in stored)
            if not missed:
                return results
            pending = missed
            current = await self._read(pending)
        raise StoreUnavailable(f"task {pending[0]}: too much write contention")

    async def _current(self, task_ids: list[str]) -> dict[str, TaskState]:
        """The states to fold into: remembered ones as they are, the others read."""
        known = {task_id: self._known[task_id] for task_id in task_ids if task_id in self._known}
        unknown = [task_id for task_id in task_ids if task_id not in known]
        return {**known, **(await self._read(unknown) if unknown else {})}

    async def _read(self, task_ids: list[str]) -> dict[str, TaskState]:
        cursor = self._primary.find({"_id": {"$in": task_ids}})
        return {document["_id"]: to_state(document) async for document in cursor}

    def _keep(self, states: Iterable[TaskState]) -> None:
        if not self._remember:
            return
        for state in states:
            self._known[state.task_id] = state
            self._known.move_to_end(state.task_id)
        while len(self._known) > self._remember:
            self._known.popitem(last=False)

    async def _write(self, writes: list[_Write]) -> list[str]:
        """Carry out the guarded writes; the ids of the tasks whose guard missed."""
        if not writes:
            return []
        try:
            await self._tasks.bulk_write([write.operation() for write in writes], ordered=False)
        except BulkWriteError as error:
            failures = error.details.get("writeErrors", [])
            unexpected = [f for f in failures if f.get("code") != _DUPLICATE_KEY]
            # A write concern error (no majority in time, or a failover under way) means the
            # writes may yet be rolled back: raise, so the batch is written again (the guards
            # make that harmless) and nothing is acked before a majority holds it.
            if unexpected or error.details.get("writeConcernErrors"):
                raise
            return [writes[failure["index"]].after.task_id for failure in failures]
        return []


def fold(
    state: TaskState | None, events: Sequence[StatusEvent | ProgressEvent]
) -> TaskState | None:
    """`apply` each event in turn; `state` itself when none of them changes anything."""
    for event in events:
        state = apply(state, event)
    return state


@dataclass(frozen=True)
class _Write:
    before: TaskState | None
    after: TaskState

    def operation(self) -> InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]]:
        document = to_document(self.after)
        if self.before is None:
            return InsertOne(document)
        # An upsert of a document that carries its `_id`, so that a missed guard fails loudly
        # (duplicate key) instead of matching nothing in silence: a bulk result counts matches
        # but does not say which operation missed.
        # A late event adds to the history without moving the position: the history's length
        # is in the guard, so two writers that each add one cannot lose the other's.
        guard = {"_id": {"$eq": self.after.task_id}, "position": {"$eq": self.before.position},
                 "history": {"$size": len(self.before.history)}}
        return ReplaceOne(guard, document, upsert=True)


_NOT_STATE = frozenset({"_id", task_queries.LIST_KEY, task_queries.UPDATED_KEY})


def to_document(state: TaskState) -> dict[str, Any]:
    document = state.model_dump(mode="python", exclude={"task_id"})
    document["history"] = list(document["history"])
    return {"_id": state.task_id, **document, **task_queries.derived_fields(
        state.task_id, state.created_at, state.updated_at)}


def to_state(document: dict[str, Any]) -> TaskState:
    fields = {key: value for key, value in document.items()
              if key not in _NOT_STATE}
    return TaskState.model_validate({"task_id": document["_id"], **fields})
