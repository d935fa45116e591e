"""`sleep`: waits, for demos and load tests; a sleep of 2 s or more reports progress each second."""

from __future__ import annotations

import asyncio
import time

from consumers.context import TaskContext
from contracts.payloads import SleepPayload

# Shorter sleeps (load tests) publish nothing but their outcome.
REPORT_FROM_S = 2.0


async def sleep(payload: SleepPayload, ctx: TaskContext) -> dict[str, float]:
    if payload.seconds < REPORT_FROM_S:
        await asyncio.sleep(payload.seconds)
        return {"slept_s": payload.seconds}
    # Against the clock, so the reports' small delays do not add up to a longer sleep.
    end = time.monotonic() + payload.seconds
    while (left := end - time.monotonic()) > 0:
        done = payload.seconds - left
        await ctx.progress(done / payload.seconds, f"slept {done:.0f} of {payload.seconds:g} s")
        await asyncio.sleep(min(1.0, left))
    return {"slept_s": payload.seconds}
