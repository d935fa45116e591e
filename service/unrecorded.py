"""Tasks queued but not yet in the read model, kept until a retry records them.

A submission whose `queued` record failed (the store was away) is queued for real: it is held
here, so that a read right after the 202 finds it, and recorded again in the background until
the store is back, so the task shows at once rather than when the projector's own retry comes
round.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from contracts.log_fields import task_fields
from contracts.messages import StatusEvent
from contracts.projection import TaskState, apply
from service.errors import StoreUnavailable
from service.ports import TaskReadModel

log = logging.getLogger(__name__)


class Unrecorded:
    def __init__(
        self, *, retry_for: timedelta = timedelta(minutes=2), first_pause_s: float = 0.2,
        longest_pause_s: float = 2.0,
    ) -> None:
        self._states: dict[str, TaskState] = {}
        self._retries: set[asyncio.Task[None]] = set()
        self._retry_for = retry_for
        self._first_pause_s = first_pause_s
        self._longest_pause_s = longest_pause_s

    def get(self, task_id: str) -> TaskState | None:
        return self._states.get(task_id)

    def hold(self, event: StatusEvent, read_model: TaskReadModel) -> None:
        """Keep `event`'s task readable here and record it into `read_model` once it answers."""
        self._states[event.task_id] = apply(None, event)
        retry = asyncio.create_task(self._record_when_back(event, read_model))
        self._retries.add(retry)
        retry.add_done_callback(self._retries.discard)

    async def close(self) -> None:
        """Stop retrying (the projector records what is left when it reaches the tasks)."""
        for retry in self._retries:
            retry.cancel()
        await asyncio.gather(*self._retries, return_exceptions=True)

    async def _record_when_back(self, event: StatusEvent, read_model: TaskReadModel) -> None:
        # The record just failed: the first try waits a pause too, then each pause doubles.
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=2 * self._first_pause_s, max=self._longest_pause_s),
            retry=retry_if_exception_type(StoreUnavailable),
            stop=stop_after_delay(self._retry_for.total_seconds()), reraise=True,
        )
        try:
            await asyncio.sleep(self._first_pause_s)
            async for attempt in retrying:
                with attempt:
                    await read_model.apply(event)
        except StoreUnavailable:
            log.warning("task %s: gave up recording `queued`; the projector will", event.task_id,
                        extra=task_fields(event.task_id))
        finally:
            self._states.pop(event.task_id, None)
