"""`sleep`: waits, for demos and load tests; a sleep of 2 s or more reports progress each second."""

from __future__ import annotations

import asyncio
import time

from pydantic import ConfigDict, Field

from contracts.payloads import Payload
from taskproc.context import TaskContext
from taskproc.registration import task_type


class SleepPayload(Payload):
    """Waits the given number of seconds: for demos and load tests."""

    # Shown in the gateway's /docs (gateway/http_models.py takes a payload model's examples).
    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra={"examples": [{"seconds": 2}]})

    seconds: float = Field(ge=0, le=300)


# Shorter sleeps (load tests) publish nothing but their outcome.
REPORT_FROM_S = 2.0


# A sleep task may ask for 300 s, so its attempts need a little more.
@task_type("sleep", timeout_s=310.0, prefetch=64, timeout_cap_s=600.0)
async def sleep(payload: SleepPayload, ctx: TaskContext) -> dict[str, float]:
    if payload.seconds < REPORT_FROM_S:
        await asyncio.sleep(payload.seconds)
        return _result(payload, ctx)
    # Against the clock, so the reports' small delays do not add up to a longer sleep. One report
    # at each whole second (counted, not measured: a wake-up a hair early or late still names
    # its second), the last one too however little of the sleep is left after it.
    start = time.monotonic()
    second = 0
    while second < payload.seconds:
        await ctx.progress(second / payload.seconds, f"slept {second} of {payload.seconds:g} s")
        second += 1
        await asyncio.sleep(max(0.0, start + min(second, payload.seconds) - time.monotonic()))
    return _result(payload, ctx)


def _result(payload: SleepPayload, ctx: TaskContext) -> dict[str, float]:
    """In a workflow, also how long the chain has slept so far, counting the step before this
    one's `total_slept_s` (or `slept_s`): it shows each step saw the previous result."""
    if not isinstance(ctx.previous_result, dict):
        return {"slept_s": payload.seconds}
    before = ctx.previous_result.get("total_slept_s", ctx.previous_result.get("slept_s", 0))
    total = payload.seconds + (before if isinstance(before, int | float) else 0)
    return {"slept_s": payload.seconds, "total_slept_s": total}


SLEEP = sleep.spec
