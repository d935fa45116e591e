"""The dead-letter archive in MongoDB: collection `dead_letters`,
`_id` = "<tenant>/<task_id>/<run>".

The projector keeps every dead letter here (body, properties, headers, reason), so a replay
finds its own letter by key instead of scanning the broker's queue. Dead letters are rare: one
plain write each. A replay claims a letter with a conditional update on `replay_token`.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from infra.mongodb.client import stored_time
from service.auth import DEFAULT_TENANT
from service.dead_letters import DeadLetter, ReplayClaim, letter_id
from service.errors import StoreUnavailable

# BSON documents stop at 16 MiB; a larger body is left in the queue alone.
MAX_KEPT_BODY = 8 * 1024 * 1024
_INT64 = (-(2**63), 2**63 - 1)


class MongoDeadLetterArchive:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], database: str) -> None:
        self._letters: AsyncCollection[dict[str, Any]] = client[database]["dead_letters"]

    async def keep(self, letter: DeadLetter) -> None:
        try:
            await self._letters.insert_one(to_document(letter))
        except DuplicateKeyError:
            pass  # a redelivery, or a replay archived it first: the first letter of a run stays
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    async def find(self, tenant: str, task_id: str, run: int) -> DeadLetter | None:
        try:
            document = await self._letters.find_one(
                {"_id": {"$eq": letter_id(tenant, task_id, run)}})
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error
        return None if document is None else to_letter(document)

    async def find_many(self, letter_ids: Sequence[str]) -> dict[str, DeadLetter]:
        try:
            cursor = self._letters.find({"_id": {"$in": list(letter_ids)}})
            return {document["_id"]: to_letter(document) async for document in cursor}
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    async def claim(self, letter: DeadLetter, claim: ReplayClaim) -> bool:
        expected = letter.replay.token if letter.replay is not None else None
        try:
            result = await self._letters.update_one(
                {"_id": {"$eq": letter.letter_id}, "replay_token": {"$eq": expected}},
                {"$set": _claim_fields(claim)})
            if result.matched_count == 1:
                return True
            if expected is not None:
                return False
            # Not archived (it predates the archive), or claimed meanwhile: an insert tells.
            await self._letters.insert_one({**to_document(letter), **_claim_fields(claim)})
            return True
        except DuplicateKeyError:
            return False
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    async def release(self, letter: DeadLetter, claim: ReplayClaim) -> None:
        try:
            await self._letters.update_one(
                {"_id": {"$eq": letter.letter_id}, "replay_token": {"$eq": claim.token}},
                {"$set": {"replay_token": None, "replayed_at": None}})
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error


def _claim_fields(claim: ReplayClaim) -> dict[str, Any]:
    return {"replay_token": claim.token, "replayed_at": claim.at}


def to_document(letter: DeadLetter) -> dict[str, Any]:
    body = letter.body if letter.body is not None and len(letter.body) <= MAX_KEPT_BODY else None
    return {
        "_id": letter.letter_id,
        "task_id": letter.task_id,
        "tenant": letter.tenant,
        "task_type": letter.task_type,
        "run": letter.run,
        "attempt": letter.attempt,
        "reason": letter.reason,
        "last_error": letter.last_error,
        "dead_at": letter.dead_at,
        "body": body,
        "properties": {name: _storable(value) for name, value in letter.properties.items()},
        # Pairs, not a sub-document: a header name may hold "." or start with "$".
        "headers": [[name, _storable(value)] for name, value in letter.headers.items()],
        "replay_token": letter.replay.token if letter.replay is not None else None,
        "replayed_at": letter.replay.at if letter.replay is not None else None,
    }


def to_letter(document: Mapping[str, Any]) -> DeadLetter:
    token, replayed_at = document.get("replay_token"), stored_time(document.get("replayed_at"))
    claim = ReplayClaim(token, replayed_at) if isinstance(token, str) and replayed_at else None
    return DeadLetter(
        task_id=document["task_id"],
        tenant=document.get("tenant") or DEFAULT_TENANT,
        task_type=document["task_type"],
        run=document["run"],
        attempt=document["attempt"],
        reason=document["reason"],
        last_error=document.get("last_error"),
        dead_at=stored_time(document.get("dead_at")),
        body=document.get("body"),
        properties=dict(document.get("properties") or {}),
        headers={name: value for name, value in document.get("headers") or []},
        replay=claim,
    )


def _storable(value: Any) -> Any:
    """An AMQP header value as BSON can hold it (AMQP decimals become text)."""
    if isinstance(value, dict):
        return {str(key): _storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(item) for item in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        return str(value)  # BSON integers stop at 64 bits
    if value is None or isinstance(value, str | bytes | bool | int | float | datetime):
        return value
    return str(value)
