"""Listing and counting tasks in MongoDB, in the query forms an index serves on MongoDB and on
nx-27017 alike.

Listings sort on `list_key`, a string the store writes into every task document: the creation
time in microseconds since the epoch (17 digits) and the task id, so "after the cursor" and the
creation-time bounds are one exclusive range on one indexed field. Not `created_at` itself:
nx-27017 compares dates to the whole second, so a cursor on it would skip or repeat the tasks of
one second.

A listing is split into queries that each match one owner and at most one status with `$eq`
(nx-27017 serves neither `$in` nor `$or` from an index, and `{"f": v}` from none), each sorted
on `list_key` and limited to one more than the page; their answers are merged in Python.
Labels match with `$all` (nx-27017's `$eq` on an array field matches nothing; MongoDB serves
`$all` from the multikey index, nx-27017 filters the tenant's tasks by it).

A filter no index serves (a type or labels beside a status, labels, source, `updated_*`) is
checked document by document along the index, so a listing that matches little would read the
tenant's whole range (at 20,000 tasks, 30 ms a status on nx-27017; every status at once, 73
ms). Each such query is given a budget: it reads at most `max_examined` / (number of queries)
tasks of its index range, ending at a `stop` key found first off the index itself (the
budget-th key). The page then holds only what every query has read up to, and its `next` is
the furthest point all of them reached: a page may be short, even empty, with a `next`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from contracts.projection import TaskState
from contracts.statuses import Status
from service.queries import SortKey, TaskCount, TaskCounts, TaskPage, TaskQuery

Document = dict[str, Any]

# The tasks one listing request reads at most, over all its queries, past what its indexes
# select (LISTING_MAX_EXAMINED): about 15 ms of nx-27017's time at 1.5 us a task.
MAX_EXAMINED = 10_000

LIST_KEY = "list_key"
# `updated_at` as a string of microseconds, for the same reason: bounds exact on nx-27017 too.
UPDATED_KEY = "updated_key"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Sorts after every character a task id may hold ([A-Za-z0-9._:-]); "|" too, which
# separates the time from the id.
_AFTER_EVERY_ID = "~"

# (tenant, list_key) lists a tenant's tasks; with status or type or labels between, a filtered
# listing; (tenant, idempotency_key) finds a key's task. No index names `_id`: nx-27017 refuses
# every later insert if one does.
LISTING_INDEXES: tuple[list[tuple[str, int]], ...] = (
    [("tenant", ASCENDING), (LIST_KEY, DESCENDING)],
    [("tenant", ASCENDING), ("status", ASCENDING), (LIST_KEY, DESCENDING)],
    [("tenant", ASCENDING), ("task_type", ASCENDING), (LIST_KEY, DESCENDING)],
    [("tenant", ASCENDING), ("labels", ASCENDING), (LIST_KEY, DESCENDING)],
    [("tenant", ASCENDING), ("idempotency_key", ASCENDING)],
)


def _micros(at: datetime) -> str:
    return f"{max(0, (at - _EPOCH) // timedelta(microseconds=1)):017d}"


def _millis(at: datetime) -> datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def derived_fields(task_id: str, created_at: datetime, updated_at: datetime) -> Document:
    """What the store writes besides a task's state, for listings (dropped when read back).
    To the millisecond, as MongoDB keeps dates: a cursor made from a stored task then names
    its own key."""
    return {LIST_KEY: list_key(created_at, task_id), UPDATED_KEY: _micros(_millis(updated_at))}


def list_key(created_at: datetime, task_id: str) -> str:
    """Where a task sorts in a listing, as one string (SortKey's order), to the millisecond."""
    return f"{_micros(_millis(created_at))}|{task_id}"


async def find(
    tasks: AsyncCollection[Document], query: TaskQuery,
    to_state: Callable[[Document], TaskState], *, max_examined: int = MAX_EXAMINED,
) -> TaskPage:
    """One page of `query` (see the module's docstring for how it is asked and bounded)."""
    descending = not query.ascending
    sort = [(LIST_KEY, DESCENDING if descending else ASCENDING)]
    wanted = query.limit + 1
    selectors = list(_selectors(query))
    budget = max(1, max_examined // len(selectors))
    answers: list[list[TaskState]] = []
    stops: list[str] = []
    for selector in selectors:
        stop = await _stop_key(tasks, selector, sort, budget, query)
        if stop is not None:
            stops.append(stop)
            selector = {**selector, LIST_KEY: {**selector.get(LIST_KEY, {}),
                                               "$gte" if descending else "$lte": stop}}
        cursor = tasks.find(selector).sort(sort).limit(wanted)
        answers.append([to_state(document) async for document in cursor])
    merged: Iterator[TaskState] = heapq.merge(*answers, key=SortKey.of, reverse=descending)
    # The point every query has read up to: the least far of those that stopped early.
    frontier = (max(stops) if descending else min(stops)) if stops else None
    if frontier is not None:
        merged = itertools.takewhile(
            lambda state: _reached(list_key(state.created_at, state.task_id), frontier,
                                   descending), merged)
    found = list(itertools.islice(merged, wanted))
    items = found[:query.limit]
    if len(found) > query.limit:
        return TaskPage(items, SortKey.of(items[-1]))
    return TaskPage(items, None if frontier is None else _sort_key(frontier))


def _reached(key: str, frontier: str, descending: bool) -> bool:
    return key >= frontier if descending else key <= frontier


async def _stop_key(tasks: AsyncCollection[Document], selector: Document,
                    sort: list[tuple[str, int]], budget: int, query: TaskQuery) -> str | None:
    """Where a query with a filter no index serves must stop to read at most `budget` tasks:
    the budget-th key of its index range, read off the index. None: no stop needed (every
    filter is served, or the range holds fewer tasks than the budget)."""
    served = _index_served(selector, query)
    if served == selector:
        return None
    cursor = tasks.find(served, {LIST_KEY: 1, "_id": 0}).sort(sort).skip(budget - 1).limit(1)
    found = [document[LIST_KEY] async for document in cursor]
    return found[0] if found else None


def _index_served(selector: Document, query: TaskQuery) -> Document:
    """The part of `selector` its index answers: the tenant, then a status, else a type, and
    the `list_key` range. An idempotency key is left whole: (tenant, idempotency_key) finds
    its few tasks at once."""
    if query.idempotency_key is not None:
        return selector
    lead = "status" if "status" in selector else "task_type" if "task_type" in selector else None
    return {field: value for field, value in selector.items()
            if field in ("tenant", LIST_KEY) or field == lead}


def _sort_key(key: str) -> SortKey:
    """The SortKey a `list_key` string holds."""
    micros, task_id = key.split("|", 1)
    return SortKey(_EPOCH + timedelta(microseconds=int(micros)), task_id)


def _selectors(query: TaskQuery) -> Iterator[Document]:
    common = _common(query)
    for owner in query.owners:
        for status in query.statuses or (None,):
            branch = {**common, "tenant": {"$eq": owner}}
            if status is not None:
                branch["status"] = {"$eq": status.value}
            yield branch


def _common(query: TaskQuery) -> Document:
    selector: Document = {}
    for field, value in (("task_type", query.task_type), ("source", query.source),
                         ("idempotency_key", query.idempotency_key)):
        if value is not None:
            selector[field] = {"$eq": value}
    if query.labels:
        selector["labels"] = {"$all": list(query.labels)}
    keys = _key_range(query)
    if keys:
        selector[LIST_KEY] = keys
    updated: Document = {}
    if query.updated_after is not None:
        updated["$gt"] = _micros(query.updated_after)
    if query.updated_before is not None:
        updated["$lt"] = _micros(query.updated_before)
    if updated:
        selector[UPDATED_KEY] = updated
    return selector


def _key_range(query: TaskQuery) -> Document:
    """The creation-time bounds and the cursor as exclusive bounds on `list_key`."""
    lower: list[str] = []
    upper: list[str] = []
    if query.created_after is not None:
        lower.append(_micros(query.created_after) + "|" + _AFTER_EVERY_ID)
    if query.created_before is not None:
        upper.append(_micros(query.created_before) + "|")
    if query.after is not None:
        cursor = list_key(query.after.created_at, query.after.task_id)
        (lower if query.ascending else upper).append(cursor)
    bounds: Document = {}
    if lower:
        bounds["$gt"] = max(lower)
    if upper:
        bounds["$lt"] = min(upper)
    return bounds


async def count(
    tasks: AsyncCollection[Document], owners: tuple[str | None, ...], cap: int,
) -> TaskCounts:
    """Per owner and status, the types of the newest `cap` + 1 tasks read off the (tenant,
    status, list_key) index, newest first: no aggregation (nx-27017 runs `$group` and
    `count_documents` as scans of the whole collection, 2.6 s at 20,000 tasks). A status with
    more than `cap` is counted over its newest `cap` (see TaskCounts)."""
    counts: list[TaskCount] = []
    capped: set[Status] = set()
    since: dict[Status, datetime] = {}
    for status in Status:
        newest: list[tuple[str, str]] = []  # (list_key, task_type)
        for owner in owners:
            selector = {"tenant": {"$eq": owner}, "status": {"$eq": status.value}}
            cursor = tasks.find(selector, {"task_type": 1, LIST_KEY: 1, "_id": 0}).sort(
                LIST_KEY, DESCENDING).limit(cap + 1)
            # A document from before the listing keys has none: it sorts oldest.
            newest += [(document.get(LIST_KEY) or "", document["task_type"])
                       async for document in cursor]
        newest.sort(reverse=True)
        if len(newest) > cap:
            capped.add(status)
            newest = newest[:cap]
            if newest and newest[-1][0]:
                since[status] = created_of(newest[-1][0])
        counts += [TaskCount(task_type, status, number)
                   for task_type, number in Counter(task_type for _, task_type in newest).items()]
    return TaskCounts(sorted(counts, key=lambda c: (c.task_type, c.status)), frozenset(capped),
                      since)


def created_of(key: str) -> datetime:
    """The creation time a `list_key` holds (to the millisecond)."""
    return _EPOCH + timedelta(microseconds=int(key.split("|", 1)[0]))
