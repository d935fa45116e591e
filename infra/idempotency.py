"""Idempotency keys in MongoDB: one document per key, `_id` = key.

A key is claimed (`pending`) before the task is published and marked `queued` once RabbitMQ has
confirmed it; a failed publish releases the claim. The unique `_id` makes concurrent requests
with one key agree on a single task id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from contracts.messages import utcnow
from infra.expiry import Expiry, server_kind
from infra.store import StoreUnavailable


@dataclass(frozen=True)
class Claim:
    task_id: str
    request_hash: str
    state: Literal["pending", "queued"]
    claimed_at: datetime
    is_new: bool


def request_hash(request: dict[str, Any]) -> str:
    """A fingerprint of a submission, independent of key order and whitespace."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        self._keys = client[database]["idempotency_keys"]
        self._expiry: Expiry | None = None

    async def ensure_indexes(self, ttl: timedelta) -> None:
        try:
            kind = await server_kind(self._client)
            expiry = Expiry(self._keys, "claimed_at", ttl)
            await expiry.ensure(kind)
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error
        self._expiry = expiry if kind == "nx-27017" else None

    async def sweep_expired(self, now: datetime) -> int:
        """Forget keys past their time where no TTL index does; how many went."""
        if self._expiry is None:
            return 0
        try:
            return await self._expiry.sweep(now)
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    async def claim(self, key: str, fingerprint: str, task_id: str) -> Claim:
        """Claim `key` for `task_id`, or return the claim that already holds it."""
        now = utcnow()
        try:
            try:
                await self._keys.insert_one({"_id": key, "request_hash": fingerprint,
                                             "task_id": task_id, "state": "pending",
                                             "claimed_at": now})
                return Claim(task_id, fingerprint, "pending", now, is_new=True)
            except DuplicateKeyError:
                document = await self._keys.find_one({"_id": {"$eq": key}})
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error
        if document is None:  # released between our insert and read: claim again
            return await self.claim(key, fingerprint, task_id)
        return Claim(document["task_id"], document["request_hash"], document["state"],
                     document["claimed_at"], is_new=False)

    async def get(self, key: str) -> Claim | None:
        try:
            document = await self._keys.find_one({"_id": {"$eq": key}})
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error
        if document is None:
            return None
        return Claim(document["task_id"], document["request_hash"], document["state"],
                     document["claimed_at"], is_new=False)

    async def mark_queued(self, key: str, task_id: str) -> None:
        try:
            await self._keys.update_one({"_id": {"$eq": key}, "task_id": {"$eq": task_id}},
                                        {"$set": {"state": "queued"}})
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    async def release(self, key: str, task_id: str) -> None:
        """Give the key back after a failed publish, so a retry of the request can succeed."""
        try:
            await self._keys.delete_one({"_id": {"$eq": key}, "task_id": {"$eq": task_id},
                                        "state": {"$eq": "pending"}})
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error
