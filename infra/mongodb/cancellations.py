"""Cancellations on MongoDB (collection `cancellations`): the adapter behind
service.ports.Cancellations; infra.rabbitmq.control_publisher tells the workers."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from contracts.control import CancelRequest
from contracts.messages import utcnow
from infra.mongodb.client import store_errors
from infra.mongodb.expiry import Expiry, ServerKind, server_kind

log = logging.getLogger(__name__)

# On nx-27017 (no TTL index) the gateway sweeps expired cancellations at most this often.
_SWEEP_EVERY_S = 600.0


class MongoCancellations:
    """One document per cancelled task, `_id` = "<tenant>/<task id>" (a tenant name holds no
    '/'; documents written before tenants were recorded have `_id` = task id and no tenant);
    expires `retention` after `at`."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._client = client
        self._collection: AsyncCollection[dict[str, Any]] = client[database]["cancellations"]
        self._expiry: Expiry | None = None
        self._swept_at = 0.0

    @store_errors
    async def ensure_indexes(self, retention: timedelta) -> ServerKind:
        kind = await server_kind(self._client)
        await self._collection.create_index([("task_type", ASCENDING), ("at", ASCENDING)])
        expiry = Expiry(self._collection, "at", retention)
        await expiry.ensure(kind)
        self._expiry = expiry if kind == "nx-27017" else None
        return kind

    @store_errors
    async def add(self, request: CancelRequest) -> None:
        # $setOnInsert: a second cancel of one task keeps the first one's time.
        await self._collection.update_one(
            {"_id": {"$eq": f"{request.tenant}/{request.task_id}"}},
            {"$setOnInsert": {"task_id": request.task_id, "tenant": request.tenant,
                              "task_type": request.task_type, "at": request.at,
                              "by": request.by}},
            upsert=True)
        await self._sweep_now_and_then()

    @store_errors
    async def since(
        self, task_type: str, after: datetime, *, limit: int
    ) -> list[CancelRequest]:
        cursor = self._collection.find(
            {"task_type": {"$eq": task_type}, "at": {"$gte": after}}
        ).sort("at", DESCENDING).limit(limit)
        newest_first = [CancelRequest(task_id=document.get("task_id") or document["_id"],
                                      tenant=document.get("tenant"),
                                      task_type=document["task_type"], at=document["at"],
                                      by=document["by"])
                        async for document in cursor]
        return newest_first[::-1]

    async def _sweep_now_and_then(self) -> None:
        if self._expiry is None or time.monotonic() - self._swept_at < _SWEEP_EVERY_S:
            return
        self._swept_at = time.monotonic()
        removed = await self._expiry.sweep(utcnow())
        if removed:
            log.info("expired %d cancellation(s) past their retention", removed)
