"""Expiry of old documents: MongoDB's TTL index on a real `mongod`, a periodic sweep on nx-27017.

nx-27017 purges expired documents before every read when a collection has a TTL index, with a
query no index serves: a full scan per `find_one` (62-84 ms at 10,000 documents against under
1 ms without it). There the TTL index is dropped (existing stores are migrated at start-up) and
a plain index on the same field serves a sweep that the projector runs once a minute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

log = logging.getLogger(__name__)

ServerKind = Literal["mongod", "nx-27017"]

# MongoDB's codes for "an index on these keys exists with other options".
_INDEX_OPTIONS_CONFLICT = (85, 86)


async def server_kind(client: AsyncMongoClient[dict[str, Any]]) -> ServerKind:
    """Which server answers: nx-27017 names itself in `buildInfo`, a real mongod does not."""
    info = await client.admin.command("buildInfo")
    return "nx-27017" if info.get("process") == "nx_27017" else "mongod"


@dataclass(frozen=True)
class Expiry:
    """Documents of `collection` whose `field` is older than `after` are removed."""

    collection: AsyncCollection[dict[str, Any]]
    field: str
    after: timedelta

    async def ensure(self, kind: ServerKind) -> None:
        """A TTL index on a mongod; on nx-27017 a plain index, and no TTL index left behind."""
        if kind == "mongod":
            await self._ensure_ttl_index()
            return
        indexes = await self.collection.index_information()
        for name, spec in indexes.items():
            if spec.get("key") == [(self.field, 1)] and "expireAfterSeconds" in spec:
                await self.collection.drop_index(name)
                log.info("dropped the TTL index on %s.%s: nx-27017 scans on every read with it; "
                         "a periodic sweep expires documents instead",
                         self.collection.name, self.field)
        await self.collection.create_index(self.field)

    async def sweep(self, now: datetime) -> int:
        """Remove what has expired by `now`; how many documents went."""
        cutoff = now - self.after
        result = await self.collection.delete_many({self.field: {"$lt": cutoff}})
        return result.deleted_count

    async def _ensure_ttl_index(self) -> None:
        seconds = int(self.after.total_seconds())
        try:
            await self.collection.create_index(self.field, expireAfterSeconds=seconds)
        except OperationFailure as error:
            if error.code not in _INDEX_OPTIONS_CONFLICT:
                raise
            # A changed retention setting updates the existing index in place.
            await self.collection.database.command(
                "collMod", self.collection.name,
                index={"keyPattern": {self.field: 1}, "expireAfterSeconds": seconds},
            )
            log.info("TTL of %s.%s changed to %ds", self.collection.name, self.field, seconds)
