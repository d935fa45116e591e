"""`sleep`: waits, for demos and load tests."""

from __future__ import annotations

import asyncio

from consumers.context import TaskContext
from contracts.payloads import SleepPayload


async def sleep(payload: SleepPayload, ctx: TaskContext) -> dict[str, float]:
    await asyncio.sleep(payload.seconds)
    return {"slept_s": payload.seconds}
