"""The stored tasks the figures are measured against: a small store made fresh for each run and
a store of a million, filled once by bulk insert and reused.

The million-task store records its fill in collection `bench_meta`, so a fill cut short is
resumed, and the tasks a run adds are removed afterwards by id so it stays at its size.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from bench.documents import documents

_BATCH = 10_000
_PROGRESS_EVERY = 100_000
_DUPLICATE_KEY = 11000
_MARKER = "fill"

Client = MongoClient[dict[str, Any]]


def _insert(tasks: Collection[dict[str, Any]], batch: list[dict[str, Any]]) -> None:
    try:
        tasks.insert_many(batch, ordered=False)
    except BulkWriteError as error:
        # A resumed fill re-sends the batch that was cut short: its stored part is a duplicate.
        errors = error.details.get("writeErrors", [])
        others = [e for e in errors if e.get("code") != _DUPLICATE_KEY]
        if others:
            raise


def _fill(client: Client, database: str, start: int, stop: int, newest: datetime,
          on_batch: Any = None) -> None:
    """Insert stored tasks `start`..`stop-1` in batches, printing progress with rate and ETA."""
    tasks = client[database]["tasks"]
    began, done, total = time.monotonic(), 0, stop - start
    batch: list[dict[str, Any]] = []
    for document in documents(database, start, stop, newest):
        batch.append(document)
        if len(batch) < _BATCH:
            continue
        _insert(tasks, batch)
        done += len(batch)
        batch = []
        if on_batch is not None:
            on_batch(start + done)
        if done % _PROGRESS_EVERY == 0 or done == total:
            _progress(done, total, time.monotonic() - began)
    if batch:
        _insert(tasks, batch)
        done += len(batch)
        if on_batch is not None:
            on_batch(start + done)
    if total >= _PROGRESS_EVERY:
        _progress(done, total, time.monotonic() - began)


def _progress(done: int, total: int, elapsed: float) -> None:
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else 0.0
    print(f"    stored {done:,}/{total:,} ({rate:,.0f}/s, ETA {eta:,.0f}s)", flush=True)


def fill_fresh(client: Client, database: str, count: int) -> float:
    """Drop `database` and store `count` tasks in it; the seconds that took."""
    began = time.monotonic()
    client.drop_database(database)
    _fill(client, database, 0, count, datetime.now(UTC))
    return time.monotonic() - began


def million_ready(client: Client, database: str, count: int) -> bool:
    marker = client[database]["bench_meta"].find_one({"_id": {"$eq": _MARKER}})
    return marker is not None and marker.get("target") == count and bool(marker.get("complete"))


def ensure_filled(client: Client, database: str, count: int, added_ids: Path) -> None:
    """Make `database` hold `count` tasks: fill, resume a cut fill, remove a past run's tasks,
    or top up what the read model's retention expired."""
    meta = client[database]["bench_meta"]
    tasks = client[database]["tasks"]
    marker = meta.find_one({"_id": {"$eq": _MARKER}})
    if marker is None or marker.get("target") != count:
        print(f"  filling {database} with {count:,} tasks (once; later runs reuse it)",
              flush=True)
        client.drop_database(database)
        marker = {"_id": _MARKER, "target": count, "next": 0, "complete": False,
                  "newest": datetime.now(UTC)}
        meta.insert_one(marker)
    remove_added(client, database, added_ids)

    def record(next_index: int) -> None:
        meta.update_one({"_id": {"$eq": _MARKER}}, {"$set": {"next": next_index}})

    if not marker.get("complete"):
        if marker["next"]:
            print(f"  resuming the fill of {database} at {marker['next']:,}", flush=True)
        _fill(client, database, int(marker["next"]), count, marker["newest"], record)
        meta.update_one({"_id": {"$eq": _MARKER}}, {"$set": {"complete": True, "next": count}})
        marker = meta.find_one({"_id": {"$eq": _MARKER}}) or marker
    stored = tasks.estimated_document_count()
    if stored > count:
        _remove_newer(client, database, marker["newest"], stored - count)
    elif stored < count:
        # The read model's retention expires stored tasks as weeks pass: replace them.
        missing = count - stored
        print(f"  {database} holds {stored:,}: storing {missing:,} more", flush=True)
        newest = datetime.now(UTC)
        start = int(marker["next"])
        meta.update_one({"_id": {"$eq": _MARKER}}, {"$set": {"newest": newest}})
        _fill(client, database, start, start + missing, newest, record)


def restore(client: Client, database: str, count: int, added_ids: Path) -> int:
    """After a run: remove the tasks it added, by id, and any it could not name; the size."""
    remove_added(client, database, added_ids)
    marker = client[database]["bench_meta"].find_one({"_id": {"$eq": _MARKER}})
    stored = stored_count(client, database)
    if marker is not None and stored > count:
        _remove_newer(client, database, marker["newest"], stored - count)
        stored = stored_count(client, database)
    return stored


def _remove_newer(client: Client, database: str, newest: datetime, extra: int) -> None:
    """Tasks submitted after the fill that no id list names (a run killed mid-request)."""
    print(f"  {database} holds {extra:,} tasks too many: removing those newer than the fill",
          flush=True)
    client[database]["tasks"].delete_many({"created_at": {"$gt": newest}})


def remove_added(client: Client, database: str, added_ids: Path) -> int:
    """Delete the tasks whose ids a run wrote to `added_ids`, then empty that file."""
    if not added_ids.exists():
        return 0
    ids = [line.strip() for line in added_ids.read_text().splitlines() if line.strip()]
    removed = 0
    for batch in _chunks(ids, 1000):
        removed += client[database]["tasks"].delete_many({"_id": {"$in": batch}}).deleted_count
    added_ids.unlink()
    return removed


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def stored_count(client: Client, database: str) -> int:
    return client[database]["tasks"].estimated_document_count()
