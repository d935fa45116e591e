"""Readiness: do the broker and the store both answer?"""

from __future__ import annotations

import logging
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
