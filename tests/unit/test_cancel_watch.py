"""A worker's memory of cancellations: learnt once each, of its own type and tenant, within the
lookback, and never more than it may hold."""

from __future__ import annotations

from datetime import timedelta

from consumers.cancels import CancelWatch
from contracts.control import CancelRequest
from contracts.messages import utcnow
from tests.fakes.cancellations import MemoryCancellations


def request(task_id: str, *, task_type: str = "sleep", days_ago: float = 0,
            tenant: str | None = "acme") -> CancelRequest:
    return CancelRequest(task_id=task_id, task_type=task_type, tenant=tenant, by="gateway",
                         at=utcnow() - timedelta(days=days_ago))


async def test_a_reload_learns_the_types_recent_cancellations_and_tells_each_once() -> None:
    store = MemoryCancellations()
    for each in (request("t-1"), request("t-2", task_type="webhook"),
                 request("t-3", days_ago=40)):
        await store.add(each)
    watch = CancelWatch("sleep", store, lookback=timedelta(days=30))
    told: list[str] = []
    watch.on_cancel = lambda learnt: told.append(learnt.task_id)

    await watch.reload()
    watch.learn(request("t-1"))  # the same cancellation, heard on the control queue
    await store.add(request("t-4"))
    await watch.reload()

    assert told == ["t-1", "t-4"]
    assert watch.is_cancelled("acme", "t-1")
    assert watch.is_cancelled("acme", "t-4")
    assert not watch.is_cancelled("acme", "t-2")  # another type's
    assert not watch.is_cancelled("acme", "t-3")  # older than any task is kept


async def test_a_control_message_of_another_type_is_ignored() -> None:
    watch = CancelWatch("sleep", MemoryCancellations(), lookback=timedelta(days=30))

    watch.learn(request("t-1", task_type="webhook"))

    assert not watch.is_cancelled("acme", "t-1")


def test_a_cancellation_stops_its_tenants_task_only() -> None:
    # Task ids are chosen by publishers: another tenant's task may carry the same id.
    watch = CancelWatch("sleep", MemoryCancellations(), lookback=timedelta(days=30))

    watch.learn(request("invoice-1002", tenant="tenant-a"))

    assert watch.is_cancelled("tenant-a", "invoice-1002")
    assert not watch.is_cancelled("tenant-b", "invoice-1002")


def test_a_cancellation_made_before_tenants_were_recorded_stops_the_id() -> None:
    watch = CancelWatch("sleep", MemoryCancellations(), lookback=timedelta(days=30))

    watch.learn(request("t-1", tenant=None))

    assert watch.is_cancelled("anyone", "t-1")


async def test_a_worker_holds_at_most_its_bound_the_newest_first() -> None:
    store = MemoryCancellations()
    for index in range(10):
        await store.add(request(f"t-{index}", days_ago=(10 - index) / 100))
    watch = CancelWatch("sleep", store, lookback=timedelta(days=30), held=4)

    await watch.reload()
    watch.learn(request("t-new"))

    assert len(watch) == 4
    assert [f"t-{index}" for index in range(10)
            if watch.is_cancelled("acme", f"t-{index}")] == ["t-7", "t-8", "t-9"]
    assert watch.is_cancelled("acme", "t-new")
