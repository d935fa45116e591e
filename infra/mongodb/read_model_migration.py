"""Backfill the listing keys: `list_key` and `updated_key` on task documents stored before the
store wrote them (`GET /tasks` lists only documents that have them).

The keys are computed by the store's own function from the stored state, and only those two
strings are set: a `$set` of a datetime would store it as a string on nx-27017, so the rest of
the document is never rewritten. Each update matches only a document still without `list_key`,
so a task the projector rewrites meanwhile (with its keys) is left as the projector wrote it.

It runs next to the live system, so every round trip is bounded and the store is left to the
others between batches. nx-27017 serves one request at a time and scans for what no index
serves: at 82,000 tasks the old opening `count_documents` took 7.5 s (8.4 s at 100,000) and
timed the scheduler's reads out. So there is no full count (the progress bar is measured
against `estimated_document_count`, 12 ms), and the documents still without keys are found
through a single-field index on `list_key` (`$eq: None` matches a missing field and is served
by it). No `_id` range or sort: either makes nx-27017 scan (1.7 s per batch at 100,000, against
15 ms); the few unreadable documents are passed over with `$nin`. The index exists only
while documents lack keys: made at the start (0.4 s at 100,000), dropped at the end, as every
index costs every write. A run that stops (a timeout, Ctrl-C) is resumed by running it again:
it finds only the documents still without keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from infra.mongodb.client import store_errors
from infra.mongodb.task_queries import LIST_KEY, UPDATED_KEY, derived_fields
from infra.mongodb.task_store import to_state

Document = dict[str, Any]

MISSING = {LIST_KEY: {"$eq": None}}
_FINDER = [(LIST_KEY, ASCENDING)]
# Unreadable documents are skipped by naming them in each query: past this many the store
# wants repairing first, and the run stops.
MAX_UNREADABLE = 1_000


@dataclass(frozen=True, kw_only=True)
class Pace:
    """How hard the migration leans on the store."""

    # Documents read and updated per round trip: on nx-27017 a bulk of 200 updates holds the
    # server 50 ms, one of 500 held it 290 ms.
    batch: int = 200
    # Seconds of rest per second of work after each batch: 1.0 leaves the store to the running
    # system at least half the time, whatever the machine's speed.
    pause_ratio: float = 1.0


@dataclass(frozen=True)
class Backfilled:
    """How one run went: documents given keys, and those whose state could not be read."""

    updated: int
    unreadable: list[str]


@store_errors
async def estimated_tasks(tasks: AsyncCollection[Document]) -> int:
    """The store's task count from its metadata (no scan), for a progress bar."""
    return await tasks.estimated_document_count()


@store_errors
async def backfill_listing_keys(
    tasks: AsyncCollection[Document], *, pace: Pace = Pace(),
    on_batch: Callable[[int], None] = lambda done: None,
) -> Backfilled:
    """Give every document without `list_key` both keys, `pace.batch` documents per round trip,
    resting between batches as `pace` says; `on_batch(n)` after each batch of n. Unreadable
    documents are left as they are (and the run stops after `MAX_UNREADABLE` of them)."""
    await tasks.create_index(_FINDER)
    updated, unreadable = 0, list[Any]()
    while len(unreadable) < MAX_UNREADABLE:
        started = time.monotonic()
        selector = {**MISSING, "_id": {"$nin": unreadable}} if unreadable else MISSING
        documents = await tasks.find(selector).limit(pace.batch).to_list()
        if not documents:
            await _drop_finder(tasks)
            break
        writes: list[UpdateOne] = []
        for document in documents:
            try:
                state = to_state(document)
            except ValueError:
                unreadable.append(document["_id"])
                continue
            keys = derived_fields(state.task_id, state.created_at, state.updated_at)
            writes.append(UpdateOne({"_id": {"$eq": state.task_id}, **MISSING},
                                    {"$set": {LIST_KEY: keys[LIST_KEY],
                                              UPDATED_KEY: keys[UPDATED_KEY]}}))
        if writes:
            result = await tasks.bulk_write(writes, ordered=False)
            updated += result.modified_count
        on_batch(len(documents))
        # Not a wait for an outcome: the rest that lets other clients' requests through.
        await asyncio.sleep((time.monotonic() - started) * pace.pause_ratio)
    return Backfilled(updated, [str(task_id) for task_id in unreadable])


async def _drop_finder(tasks: AsyncCollection[Document]) -> None:
    """Drop the `list_key` index by whatever name the server gave it (nx-27017 ignores the
    names clients choose)."""
    for name, spec in (await tasks.index_information()).items():
        if [key for key, _ in spec["key"]] == [LIST_KEY]:
            await tasks.drop_index(name)
