"""A `queued` record that failed is held readable and recorded once the store is back."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from contracts.messages import StatusEvent
from contracts.statuses import Status
from service.unrecorded import Unrecorded
from tests.fakes.ports import MemoryReadModel
from tests.support.waiting import eventually


def queued(task_id: str) -> StatusEvent:
    return StatusEvent(task_id=task_id, task_type="sleep", status=Status.QUEUED, attempt=0,
                       worker="unit")


async def test_the_task_is_recorded_once_the_store_is_back() -> None:
    read_model = MemoryReadModel()
    read_model.down = True
    unrecorded = Unrecorded(first_pause_s=0.01, longest_pause_s=0.02)

    unrecorded.hold(queued("t-1"), read_model)
    await asyncio.sleep(0.05)  # the outage lasts several tries
    held = unrecorded.get("t-1")
    read_model.down = False

    assert held is not None
    assert held.status is Status.QUEUED

    async def recorded() -> bool:
        return "t-1" in read_model.states and unrecorded.get("t-1") is None

    await eventually(recorded, timeout_s=5, interval_s=0.01, what="the task recorded")
    await unrecorded.close()


async def test_it_gives_up_after_its_time_and_lets_the_task_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    read_model = MemoryReadModel()
    read_model.down = True
    unrecorded = Unrecorded(retry_for=timedelta(milliseconds=50), first_pause_s=0.01,
                            longest_pause_s=0.02)

    unrecorded.hold(queued("t-2"), read_model)

    async def let_go() -> bool:
        return unrecorded.get("t-2") is None

    await eventually(let_go, timeout_s=5, interval_s=0.01, what="the task let go")
    assert "t-2" not in read_model.states
    assert "gave up recording `queued`" in caplog.text
    await unrecorded.close()
