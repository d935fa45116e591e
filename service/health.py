"""Readiness: do the broker and the store both answer?"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.dependencies import Dependencies
from service.errors import PublishFailed, StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    broker: str  # "ok", "reconnecting" or "unreachable"
    store: str  # "ok" or "unreachable"

    @property
    def is_ready(self) -> bool:
        return self.broker == self.store == "ok"


async def readiness(deps: Dependencies) -> Readiness:
    broker = store = "ok"
    try:
        broker = await deps.publisher.ping()
    except PublishFailed as error:
        # The driver's text names internal hosts: it goes to the log, not to the caller.
        log.warning("readiness: %s", error)
        broker = "unreachable"
    try:
        await deps.read_model.ping()
    except StoreUnavailable as error:
        log.warning("readiness: %s", error)
        store = "unreachable"
    return Readiness(broker=broker, store=store)


class ReadinessProbe:
    """Readiness for an endpoint anyone may call, unauthenticated and outside the gateway's
    concurrency bound: callers that arrive while a check runs share it, and a result is reused
    for `max_age_s`, so a flood of probes costs the broker and the store one check at a time and
    at most one per `max_age_s`."""

    def __init__(self, deps: Dependencies, *, max_age_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._deps = deps
        self._max_age_s = max_age_s
        self._clock = clock
        self._last: tuple[float, Readiness] | None = None
        self._running: asyncio.Future[Readiness] | None = None

    async def check(self) -> Readiness:
        """The latest readiness, checked now unless a check is running or is recent enough."""
        if self._last is not None and self._clock() - self._last[0] < self._max_age_s:
            return self._last[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._refresh())
        # Shielded: one caller going away must not cancel the check the others wait for.
        return await asyncio.shield(self._running)

    async def _refresh(self) -> Readiness:
        try:
            found = await readiness(self._deps)
            self._last = (self._clock(), found)
            return found
        finally:
            self._running = None
