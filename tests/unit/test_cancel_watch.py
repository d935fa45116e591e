"""A worker's memory of cancellations: learnt once each, of its own type, within the lookback."""

from __future__ import annotations

from datetime import timedelta

from consumers.cancels import CancelWatch
from contracts.control import CancelRequest
from contracts.messages import utcnow
from tests.support.memory_cancels import MemoryCancellations


def request(task_id: str, *, task_type: str = "sleep", days_ago: float = 0) -> CancelRequest:
    return CancelRequest(task_id=task_id, task_type=task_type, by="gateway",
                         at=utcnow() - timedelta(days=days_ago))


async def test_a_reload_learns_the_types_recent_cancellations_and_tells_each_once() -> None:
    store = MemoryCancellations()
    for each in (request("t-1"), request("t-2", task_type="webhook"),
                 request("t-3", days_ago=40)):
        await store.add(each)
    watch = CancelWatch("sleep", store, lookback=timedelta(days=30))
    told: list[str] = []
    watch.on_cancel = told.append

    await watch.reload()
    watch.learn(request("t-1"))  # the same cancellation, heard on the control queue
    await store.add(request("t-4"))
    await watch.reload()

    assert told == ["t-1", "t-4"]
    assert watch.is_cancelled("t-1")
    assert watch.is_cancelled("t-4")
    assert not watch.is_cancelled("t-2")  # another type's
    assert not watch.is_cancelled("t-3")  # older than any task is kept


async def test_a_control_message_of_another_type_is_ignored() -> None:
    watch = CancelWatch("sleep", MemoryCancellations(), lookback=timedelta(days=30))

    watch.learn(request("t-1", task_type="webhook"))

    assert not watch.is_cancelled("t-1")
