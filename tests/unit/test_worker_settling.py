"""A workflow step settles its end in the read model before its follow-ups go (consumers.settling):
the cases the integration race cannot set up on demand. In process, on a broker that records and
the in-memory read model, with the read model seeded as the gateway or an earlier delivery left
it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

import pytest

import consumers.settling
from consumers.cancels import CancelWatch
from consumers.decode import ReceivedTask
from consumers.worker import Worker
from contracts.control import CancelRequest
from contracts.messages import StatusEvent
from contracts.projection import TaskState
from contracts.statuses import Status
from infra.rabbitmq.amqp_codec import TenantRules
from infra.rabbitmq.broker import Broker
from service.errors import StoreUnavailable
from taskproc.context import JSON, ReportProgress
from taskproc.tasks.sleep import SLEEP
from tests.fakes.cancellations import MemoryCancellations
from tests.fakes.ports import MemoryReadModel
from tests.support.waiting import eventually
from tests.unit.test_worker_outcomes import Delivery, Journal, RecordingBroker

TENANT = "default"
STEP = {"payload": {"seconds": 0}, "then": [{"task_type": "sleep", "payload": {"seconds": 0}}]}


class CountingReadModel(MemoryReadModel):
    """The in-memory read model, counting the worker's writes; the first `outage` fail."""

    def __init__(self, outage: int = 0) -> None:
        super().__init__()
        self.writes: list[Status] = []
        self.outage = outage

    async def apply(self, event: StatusEvent, *, likely_new: bool = False) -> TaskState:
        if self.outage:
            self.outage -= 1
            raise StoreUnavailable("simulated: MongoDB away")
        self.writes.append(event.status)
        return await super().apply(event, likely_new=likely_new)


async def seed(read_model: MemoryReadModel, *statuses: Status, result: Any = None) -> None:
    """The task's record as the gateway (`queued`, `cancelled`) or an earlier delivery
    (`succeeded`) left it."""
    for status in statuses:
        await MemoryReadModel.apply(read_model, StatusEvent(
            task_id="t-1", task_type=SLEEP.name, status=status, attempt=1, worker="earlier",
            tenant=TENANT, result=result if status is Status.SUCCEEDED else None))


def returning(value: object, ran: list[str]) -> Callable[..., Awaitable[JSON]]:
    async def handler(task: ReceivedTask, progress: ReportProgress) -> JSON:
        ran.append(task.task_id)
        return cast(JSON, value)
    return handler


async def run_step(
    read_model: MemoryReadModel, body: dict[str, Any], *, cancelled: bool = False,
    result: object = None,
) -> tuple[Journal, list[str]]:
    """Deliver one message to a Worker that settles in `read_model`; what it published and
    whether the handler ran."""
    journal = Journal()
    broker = RecordingBroker(journal)
    cancels = CancelWatch(SLEEP.name, MemoryCancellations(), lookback=timedelta(days=1))
    if cancelled:  # heard on task-control before this delivery
        cancels.learn(CancelRequest(task_id="t-1", task_type=SLEEP.name, tenant=TENANT, by="gw"))
    ran: list[str] = []
    worker = Worker(SLEEP, returning(result, ran), cast(Broker, broker),
                    process_name="test/sleep", shutdown_grace_s=5, cancels=cancels,
                    outcomes=read_model,
                    tenants=TenantRules(service_users=frozenset({"worker"}), development=True),
                    running_event_after_ms=0)  # `running` always, as before: not these tests
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))

    async def consuming() -> Any:
        return broker.callback

    callback = await eventually(consuming, timeout_s=5, interval_s=0.01, what="consuming")
    await callback(Delivery(journal, json.dumps(body).encode(), {}, user_id="worker"))

    async def handled() -> bool:
        return bool({"ack", "requeue"} & set(journal))

    await eventually(handled, timeout_s=5, interval_s=0.01, what="an ack or a requeue")
    stop.set()
    await running
    return journal, ran


def follow_ups(journal: Journal) -> list[str]:
    return [entry for entry in journal.publishes() if not entry.startswith("event ")]


async def test_a_step_settled_first_submits_its_follow_ups_before_succeeded() -> None:
    read_model = CountingReadModel()
    await seed(read_model, Status.QUEUED)

    journal, _ = await run_step(read_model, STEP, result={"n": 1})

    assert read_model.writes == [Status.SUCCEEDED]
    assert len(follow_ups(journal)) == 1
    assert journal.publishes()[-1] == "event succeeded"
    assert journal.index(f"confirm {follow_ups(journal)[0]}") < journal.index("ack")
    # The end it settled says when the attempt started, as its `succeeded` event does.
    state = await read_model.get("t-1")
    assert state is not None
    assert state.started_at is not None
    assert [step.status for step in state.history] == [
        Status.QUEUED, Status.RUNNING, Status.SUCCEEDED]


async def test_a_step_whose_cancel_was_recorded_first_submits_no_follow_up() -> None:
    # The gateway kept the cancellation and recorded `cancelled`; its control message has not
    # reached this worker when the handler returns.
    read_model = CountingReadModel()
    await seed(read_model, Status.QUEUED, Status.CANCELLED)

    journal, ran = await run_step(read_model, STEP, result={"n": 1})

    assert ran == ["t-1"]
    assert follow_ups(journal) == []
    assert journal.publishes()[-1] == "event cancelled"
    assert journal[-1] == "ack"
    assert (await read_model.get("t-1")).status is Status.CANCELLED  # type: ignore[union-attr]


async def test_a_redelivered_step_whose_cancel_lost_still_submits_its_follow_ups() -> None:
    # An earlier delivery recorded `succeeded` (so the cancel answered `succeeded`) and died
    # before its follow-ups went out; this delivery finds the task cancelled in memory.
    read_model = CountingReadModel()
    await seed(read_model, Status.QUEUED, Status.SUCCEEDED, result={"n": 7})

    journal, ran = await run_step(read_model, STEP, cancelled=True)

    assert ran == []  # not run again: its end was settled
    assert len(follow_ups(journal)) == 1
    assert journal.publishes()[-1] == "event succeeded"


async def test_a_cancelled_step_never_started_ends_cancelled() -> None:
    read_model = CountingReadModel()
    await seed(read_model, Status.QUEUED, Status.CANCELLED)

    journal, ran = await run_step(read_model, STEP, cancelled=True)

    assert ran == []
    assert journal.publishes() == ["event cancelled"]


async def test_a_task_without_then_costs_no_write() -> None:
    read_model = CountingReadModel()
    await seed(read_model, Status.QUEUED)

    journal, _ = await run_step(read_model, {"payload": {"seconds": 0}}, result={"n": 1})

    assert read_model.writes == []
    assert journal.publishes() == ["event running", "event succeeded"]


async def test_a_store_outage_holds_the_step_instead_of_requeueing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumers.settling, "_STORE_RETRY_FIRST_S", 0.01)
    read_model = CountingReadModel(outage=2)
    await seed(read_model, Status.QUEUED)

    journal, ran = await run_step(read_model, STEP, result={"n": 1})

    assert ran == ["t-1"]  # once: it waited for the store instead of running again
    assert "requeue" not in journal
    assert read_model.writes == [Status.SUCCEEDED]
    assert len(follow_ups(journal)) == 1
