"""Retrying a MongoDB write through an outage, for as long as the projector runs.

An outage delays the read model and the dead-letter archive but loses nothing: the projector
holds what it was writing (prefetch bounds how much) and tries again until the write is stored
or the projector stops; then the messages go back to RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tenacity import RetryCallState, wait_exponential

from infra.runtime.retrying import failed_try, until_stopped
from service.errors import StoreUnavailable

log = logging.getLogger(__name__)

# Through a MongoDB outage: 0.2 s, 0.4 s, ... up to 5 s between tries.
_BACKOFF = wait_exponential(multiplier=0.2, min=0.2, max=5.0)


async def until_stored(
    stop: asyncio.Event, write: Callable[[], Awaitable[object]], *, holding: str
) -> None:
    """Await `write()` until it succeeds, pausing through StoreUnavailable. Raises Stopped if
    `stop` is set during a pause, or a try's StoreUnavailable if it failed once `stop` was set.

    `holding` names what waits, for the log ("the dead letter of ...").
    """

    def warn(state: RetryCallState) -> None:
        log.warning("MongoDB unavailable, holding %s: %s", holding, failed_try(state))

    async for attempt in until_stopped(stop, retry_on=StoreUnavailable, wait=_BACKOFF,
                                       before_sleep=warn):
        with attempt:
            await write()
