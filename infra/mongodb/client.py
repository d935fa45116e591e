"""The one MongoDB client factory, the one place driver errors become StoreUnavailable, and
the one reader of stored times."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from service.errors import StoreUnavailable

P = ParamSpec("P")
R = TypeVar("R")


def mongo_client(url: str, timeout_s: float) -> AsyncMongoClient[dict[str, Any]]:
    """A client whose every operation fails within `timeout_s` instead of hanging."""
    millis = int(timeout_s * 1000)
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=millis, connectTimeoutMS=millis,
        socketTimeoutMS=millis * 2, appname="taskproc",
    )


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
