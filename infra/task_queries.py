"""Listing and counting tasks in MongoDB, in the query forms an index serves on MongoDB and on
nx-27017 alike.

A listing is split into queries that each match one owner and at most one status with `$eq`
(nx-27017 serves neither `$in` nor `$or` from an index, and `{"f": v}` from none), each sorted
by (created_at, _id) and limited to one more than the page; their answers are merged in Python.
A page after a cursor (created_at c, id i) is two such queries per branch: created_at == c with
_id past i, and created_at strictly past c. Labels match with `$all` (nx-27017's `$eq` on an
array field matches nothing; MongoDB serves `$all` from the multikey index).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from contracts.projection import TaskState
from contracts.statuses import Status
from service.queries import SortKey, TaskCount, TaskCounts, TaskPage, TaskQuery

Document = dict[str, Any]

# (tenant, created_at) lists a tenant's tasks; with status or type or labels between, a
# filtered listing; (tenant, idempotency_key) finds a key's task. No index names `_id`:
# nx-27017 refuses every later insert if one does.
LISTING_INDEXES: tuple[list[tuple[str, int]], ...] = (
    [("tenant", ASCENDING), ("created_at", DESCENDING)],
    [("tenant", ASCENDING), ("status", ASCENDING), ("created_at", DESCENDING)],
    [("tenant", ASCENDING), ("task_type", ASCENDING), ("created_at", DESCENDING)],
    [("tenant", ASCENDING), ("labels", ASCENDING), ("created_at", DESCENDING)],
    [("tenant", ASCENDING), ("idempotency_key", ASCENDING)],
)


async def find(
    tasks: AsyncCollection[Document], query: TaskQuery, to_state: Any,
) -> TaskPage:
    """One page of `query` (see the module's docstring for how it is asked)."""
    direction = ASCENDING if query.ascending else DESCENDING
    sort = [("created_at", direction), ("_id", direction)]
    wanted = query.limit + 1
    answers: list[list[TaskState]] = []
    for selector in _selectors(query):
        cursor = tasks.find(selector).sort(sort).limit(wanted)
        answers.append([to_state(document) async for document in cursor])
    merged = heapq.merge(*answers, key=SortKey.of, reverse=not query.ascending)
    found = list(itertools.islice(merged, wanted))
    items = found[:query.limit]
    return TaskPage(items, SortKey.of(items[-1]) if len(found) > query.limit else None)


def _selectors(query: TaskQuery) -> Iterator[Document]:
    common = _common(query)
    for owner in query.owners:
        for status in query.statuses or (None,):
            branch = {**common, "tenant": {"$eq": owner}}
            if status is not None:
                branch["status"] = {"$eq": status.value}
            yield from _after(branch, query)


def _common(query: TaskQuery) -> Document:
    selector: Document = {}
    for field, value in (("task_type", query.task_type), ("source", query.source),
                         ("idempotency_key", query.idempotency_key)):
        if value is not None:
            selector[field] = {"$eq": value}
    if query.labels:
        selector["labels"] = {"$all": list(query.labels)}
    created = _range(query.created_after, query.created_before)
    if created:
        selector["created_at"] = created
    updated = _range(query.updated_after, query.updated_before)
    if updated:
        selector["updated_at"] = updated
    return selector


def _range(after: Any, before: Any) -> Document:
    bounds: Document = {}
    if after is not None:
        bounds["$gt"] = after
    if before is not None:
        bounds["$lt"] = before
    return bounds


def _after(branch: Document, query: TaskQuery) -> Iterator[Document]:
    """`branch` limited to what comes after the cursor: ties on created_at past the id, then
    strictly later (or earlier, newest first) created_at."""
    key = query.after
    if key is None:
        yield branch
        return
    bounds: Document = branch.get("created_at", {})
    if _within(key.created_at, bounds):
        past = "$gt" if query.ascending else "$lt"
        yield {**branch, "created_at": {"$eq": key.created_at}, "_id": {past: key.task_id}}
    yield {**branch, "created_at": _tighter(bounds, query.ascending, key.created_at)}


def _within(value: Any, bounds: Document) -> bool:
    return ("$gt" not in bounds or value > bounds["$gt"]) and (
        "$lt" not in bounds or value < bounds["$lt"])


def _tighter(bounds: Document, ascending: bool, value: Any) -> Document:
    """`bounds` with `value` as a further exclusive bound on the side the listing moves to."""
    if ascending:
        return {**bounds, "$gt": max(bounds.get("$gt", value), value)}
    return {**bounds, "$lt": min(bounds.get("$lt", value), value)}


async def count(
    tasks: AsyncCollection[Document], owners: tuple[str | None, ...], cap: int,
) -> TaskCounts:
    """Per owner and status, the types of at most `cap` + 1 tasks read off the (tenant, status,
    created_at) index: no aggregation (nx-27017 runs `$group` and `count_documents` as scans
    of the whole collection, 2.6 s at 20,000 tasks)."""
    per_status: dict[Status, Counter[str]] = {}
    capped: set[Status] = set()
    for status in Status:
        types: Counter[str] = Counter()
        for owner in owners:
            selector = {"tenant": {"$eq": owner}, "status": {"$eq": status.value}}
            left = cap + 1 - types.total()
            if left <= 0:
                break
            cursor = tasks.find(selector, {"task_type": 1, "_id": 0}).limit(left)
            types.update([document["task_type"] async for document in cursor])
        if types.total() > cap:
            capped.add(status)
        if types:
            per_status[status] = types
    counts = [TaskCount(task_type, status, number)
              for status, types in per_status.items() for task_type, number in types.items()]
    return TaskCounts(sorted(counts, key=lambda c: (c.task_type, c.status)), frozenset(capped))
