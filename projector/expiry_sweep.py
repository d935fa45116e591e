"""The expiry sweep: removing documents past their retention where the server keeps no TTL index.

nx-27017 pays a full scan per read for a TTL index, so there the index is dropped and the
projector sweeps instead (infra/mongodb/expiry.py says why and how); on a real `mongod` the
sweep finds nothing to remove.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from service.errors import StoreUnavailable

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0


class Expiring(Protocol):
    async def sweep_expired(self, now: datetime) -> int: ...


async def sweep_periodically(expiring: Sequence[Expiring]) -> None:
    """Sweep each store every SWEEP_EVERY_S until cancelled; a store that is away is swept at the
    next turn (nothing expires early by waiting)."""
    while True:
        for store in expiring:
            with contextlib.suppress(StoreUnavailable):
                removed = await store.sweep_expired(datetime.now(UTC))
                if removed:
                    log.info("expired %d document(s) past their retention", removed)
        await asyncio.sleep(SWEEP_EVERY_S)
