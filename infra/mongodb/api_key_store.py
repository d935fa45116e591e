"""API keys in MongoDB (service.ports.ApiKeys): collection `api_keys`, `_id` = key id.

A document holds the SHA-256 of the key, never the key: reading the collection gives nobody a
key that works.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from infra.mongodb.client import store_errors, stored_time
from service.auth import ApiKey
from service.errors import StoreUnavailable


class MongoApiKeys:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._keys = client[database]["api_keys"]

    @store_errors
    async def ensure_indexes(self) -> None:
        await self._keys.create_index([("created_at", ASCENDING)])

    @store_errors
    async def add(self, key: ApiKey) -> None:
        try:
            await self._keys.insert_one(to_document(key))
        except DuplicateKeyError as error:
            raise StoreUnavailable(f"API key id {key.key_id} exists already") from error

    @store_errors
    async def get(self, key_id: str) -> ApiKey | None:
        document = await self._keys.find_one({"_id": {"$eq": key_id}})
        return None if document is None else to_key(document)

    @store_errors
    async def all(self) -> list[ApiKey]:
        cursor = self._keys.find({}).sort("created_at", ASCENDING)
        return [to_key(document) async for document in cursor]

    @store_errors
    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        # Guarded: revoking twice keeps the first time.
        await self._keys.update_one({"_id": {"$eq": key_id}, "revoked": {"$eq": False}},
                                    {"$set": {"revoked": True, "revoked_at": at}})
        return await self.get(key_id)


def to_document(key: ApiKey) -> dict[str, Any]:
    return {"_id": key.key_id, "tenant": key.tenant, "scopes": sorted(key.scopes),
            "key_sha256": key.key_sha256, "created_at": key.created_at,
            "rate_per_s": key.rate_per_s, "revoked": key.revoked_at is not None,
            "revoked_at": key.revoked_at}


def to_key(document: dict[str, Any]) -> ApiKey:
    return ApiKey(key_id=document["_id"], tenant=document["tenant"],
                  scopes=frozenset(document["scopes"]), key_sha256=document["key_sha256"],
                  created_at=stored_time(document["created_at"]) or datetime.fromtimestamp(0, UTC),
                  rate_per_s=float(document["rate_per_s"]),
                  revoked_at=stored_time(document.get("revoked_at")))
