"""Settling a workflow step's end before its follow-ups are released (docs/http-api.md, Workflows).

A cancel and a step's success can cross: the gateway keeps the cancellation and records
`cancelled` in the read model, while the worker, whose handler has just returned, has not heard
of it yet. Both sides must agree on which came first, or the cancel answers `cancelled` while
the step's follow-ups run. The read model is the arbiter: its projection keeps the first
terminal status of a run, and its writes are guarded, so of the gateway's `cancelled` and the
worker's `succeeded` exactly one lands first. The gateway answers with the status the read
model ends with; the worker records `succeeded` there itself, before it publishes anything, and
releases the follow-ups only if the read model then says this run succeeded.

Only a task with `then` pays for it (one read and one guarded write, on the worker): a task
with no follow-ups has nothing a cancel could let loose, and its `succeeded` goes the usual way,
through the projector.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from contracts.log_fields import task_fields
from contracts.messages import StatusEvent
from contracts.projection import TaskState
from contracts.statuses import Status
from service.errors import StoreUnavailable

log = logging.getLogger(__name__)

# While the read model is away, a step waits this long, doubling up to the most, before it tries
# again to settle its end; its message stays held meanwhile (a shutdown requeues it).
_STORE_RETRY_FIRST_S = 0.5
_STORE_RETRY_MAX_S = 5.0


class StepOutcomes(Protocol):
    """Where a step's end is settled: the read model (service.ports.TaskReadModel has it)."""

    async def apply(self, event: StatusEvent, *, likely_new: bool = False) -> TaskState: ...


def succeeded_in(state: TaskState, run: int) -> bool:
    """Whether the read model, after the worker's write, says run `run` succeeded: then, and
    only then, the step's follow-ups may be released. `cancelled` first means the cancel won
    (and answered so); a newer run means this delivery is stale, and that run has its own."""
    return state.status is Status.SUCCEEDED and state.run == run


async def record_end(outcomes: StepOutcomes, event: StatusEvent) -> TaskState:
    """Fold `event` into the read model and return the state it keeps, waiting out a store
    outage: the step's end is not settled until then, and a requeue instead would run the
    handler again and count toward the message's delivery limit each time."""
    wait_s = _STORE_RETRY_FIRST_S
    while True:
        try:
            return await outcomes.apply(event)
        except StoreUnavailable as error:
            log.warning("task %s: cannot settle its end in the read model (%s); trying again "
                        "in %.1fs", event.task_id, error, wait_s, extra=task_fields(event.task_id))
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, _STORE_RETRY_MAX_S)
