"""The one MongoDB client factory, the one place driver errors become StoreUnavailable, and
the one reader of stored times."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from service.errors import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")


# On a replica set: a write is acknowledged (and the projector acks RabbitMQ) only once a
# majority of members hold it, so a failover cannot roll back what RabbitMQ was told is stored;
# reads see only majority-committed data, from the primary, so the gateway's read right after
# its own `queued` write finds it. Retryable writes and reads (PyMongo's defaults, stated so no
# one turns them off by accident) resend an operation once, on the new primary, when a
# failover cuts it (NotPrimaryError, AutoReconnect); what still fails becomes StoreUnavailable,
# which every caller retries or answers as transient. A single server takes the same options
# harmlessly (nx-27017 and a standalone mongod acknowledge `w: majority` as `w: 1`), so they
# apply to every URL. An option the URL itself sets wins: the operator's choice.
REPLICA_SET_OPTIONS: dict[str, Any] = {
    "w": "majority", "readConcernLevel": "majority", "readPreference": "primary",
    "retryWrites": True, "retryReads": True,
}


def mongo_client(url: str, timeout_s: float) -> AsyncMongoClient[dict[str, Any]]:
    """A client whose every operation fails within `timeout_s` instead of hanging, with
    majority write and read concerns unless `url` says otherwise (REPLICA_SET_OPTIONS)."""
    millis = int(timeout_s * 1000)
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=millis, connectTimeoutMS=millis,
        socketTimeoutMS=millis * 2, appname="taskproc", **replica_set_options(url),
    )


def replica_set_options(url: str) -> dict[str, Any]:
    """REPLICA_SET_OPTIONS less those `url` sets itself (option names are case-insensitive)."""
    named = {key.lower() for key, _ in parse_qsl(urlsplit(url).query)}
    return {key: value for key, value in REPLICA_SET_OPTIONS.items()
            if key.lower() not in named}


def stored_time(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (None if there is none). nx-27017 keeps a datetime
    written by `$set` as text without a zone ("2026-12-07T04:22:52.984000", UTC): read as is,
    it would reach the API with no zone."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def store_errors(
    operation: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """An adapter's operation that raises StoreUnavailable where the driver raised: the
    service layer knows nothing of PyMongo."""

    @functools.wraps(operation)
    async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await operation(*args, **kwargs)
        except PyMongoError as error:
            raise StoreUnavailable(f"MongoDB: {error}") from error

    return translated
