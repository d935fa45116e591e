"""Idempotency keys in MongoDB (service.ports.IdempotencyKeys): one document per key, `_id` =
key.

A key is claimed (`pending`) before the task is published and marked `queued` once RabbitMQ has
confirmed it; a failed publish releases the claim. The unique `_id` makes concurrent requests
with one key agree on a single task id.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from contracts.messages import utcnow
from infra.mongodb.client import store_errors
from infra.mongodb.expiry import Expiry, server_kind
from service.ports import Claim


class MongoIdempotencyKeys:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        self._keys = client[database]["idempotency_keys"]
        self._expiry: Expiry | None = None

    @store_errors
    async def ensure_indexes(self, ttl: timedelta) -> None:
        kind = await server_kind(self._client)
        expiry = Expiry(self._keys, "claimed_at", ttl)
        await expiry.ensure(kind)
        self._expiry = expiry if kind == "nx-27017" else None

    @store_errors
    async def sweep_expired(self, now: datetime) -> int:
        """Forget keys past their time where no TTL index does; how many went."""
        if self._expiry is None:
            return 0
        return await self._expiry.sweep(now)

    @store_errors
    async def claim(self, key: str, fingerprint: str, task_id: str) -> Claim:
        """Claim `key` for `task_id`, or return the claim that already holds it."""
        while True:
            now = utcnow()
            try:
                await self._keys.insert_one({"_id": key, "request_hash": fingerprint,
                                             "task_id": task_id, "state": "pending",
                                             "claimed_at": now})
                return Claim(task_id, fingerprint, "pending", now, is_new=True)
            except DuplicateKeyError:
                document = await self._keys.find_one({"_id": {"$eq": key}})
            if document is not None:
                return _claim(document)
            # Released between our insert and our read: claim again.

    @store_errors
    async def get(self, key: str) -> Claim | None:
        document = await self._keys.find_one({"_id": {"$eq": key}})
        return None if document is None else _claim(document)

    @store_errors
    async def mark_queued(self, key: str, task_id: str) -> None:
        await self._keys.update_one({"_id": {"$eq": key}, "task_id": {"$eq": task_id}},
                                    {"$set": {"state": "queued"}})

    @store_errors
    async def release(self, key: str, task_id: str) -> None:
        """Give the key back after a failed publish, so a retry of the request can succeed."""
        await self._keys.delete_one({"_id": {"$eq": key}, "task_id": {"$eq": task_id},
                                     "state": {"$eq": "pending"}})


def _claim(document: dict[str, Any]) -> Claim:
    return Claim(document["task_id"], document["request_hash"], document["state"],
                 document["claimed_at"], is_new=False)
