"""Backfill the listing keys: `list_key` and `updated_key` on task documents stored before the
store wrote them (`GET /tasks` lists only documents that have them).

The keys are computed by the store's own function from the stored state, and only those two
strings are set: a `$set` of a datetime would store it as a string on nx-27017, so the rest of
the document is never rewritten. Each update matches only a document still without `list_key`,
so a task the projector rewrites meanwhile (with its keys) is left as the projector wrote it, and
a second run finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from infra.mongo import store_errors
from infra.store import to_state
from infra.task_queries import LIST_KEY, UPDATED_KEY, derived_fields

Document = dict[str, Any]

MISSING = {LIST_KEY: {"$exists": False}}


@dataclass(frozen=True)
class Backfilled:
    """How one run went: documents given keys, and those whose state could not be read."""

    updated: int
    unreadable: list[str]


@store_errors
async def count_missing(tasks: AsyncCollection[Document]) -> int:
    """How many task documents lack the listing keys."""
    return await tasks.count_documents(MISSING)


@store_errors
async def backfill_listing_keys(
    tasks: AsyncCollection[Document], *, batch: int = 500,
    on_batch: Callable[[int], None] = lambda done: None,
) -> Backfilled:
    """Give every document without `list_key` both keys, `batch` documents per round trip, in
    `_id` order (so an unreadable document is passed over, not met again); `on_batch(n)` after
    each batch of n."""
    updated, unreadable = 0, list[str]()
    after: str | None = None
    while True:
        selector = MISSING if after is None else {**MISSING, "_id": {"$gt": after}}
        documents = await tasks.find(selector).sort("_id", ASCENDING).limit(batch).to_list()
        if not documents:
            return Backfilled(updated, unreadable)
        after = documents[-1]["_id"]
        writes: list[UpdateOne] = []
        for document in documents:
            try:
                state = to_state(document)
            except ValueError:
                unreadable.append(str(document["_id"]))
                continue
            keys = derived_fields(state.task_id, state.created_at, state.updated_at)
            writes.append(UpdateOne({"_id": {"$eq": state.task_id}, **MISSING},
                                    {"$set": {LIST_KEY: keys[LIST_KEY],
                                              UPDATED_KEY: keys[UPDATED_KEY]}}))
        if writes:
            result = await tasks.bulk_write(writes, ordered=False)
            updated += result.modified_count
        on_batch(len(documents))
