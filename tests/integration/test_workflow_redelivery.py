"""A workflow step redelivered after its follow-ups were published but before its ack, against
real RabbitMQ and MongoDB: the worker and the projector run on this event loop, and the first
`succeeded` of the parent is made to fail as a broker outage would, so the worker requeues the
parent after it had confirmed its follow-up. The follow-up is published again under the same id
(at-least-once) and the read model keeps one record of it."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel

import consumers.worker
from consumers.bootstrap import run_worker
from contracts import names
from contracts.messages import StatusEvent
from contracts.statuses import Status
from contracts.workflows import workflow_label
from infra.composition import connected_task_service
from infra.rabbitmq.broker import Broker, BrokerUnavailable
from infra.rabbitmq.publishing import publish_event as real_publish_event
from infra.runtime.settings.system import SystemSettings
from projector.bootstrap import run_projector
from service.commands import SubmitTask
from service.queries import TaskQuery
from service.submit import submit
from taskproc.context import TaskContext
from taskproc.handler import TaskHandler
from taskproc.tasks.sleep import SLEEP, SleepPayload
from tests.support.amqp import Queues
from tests.support.waiting import eventually


async def test_a_redelivered_parent_does_not_duplicate_its_follow_up(
    settings: SystemSettings, amqp_channel: AbstractChannel, monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings.model_copy(update={"process_name": "workflow", "metrics_port": 0})
    ran: Counter[str] = Counter()
    seen: list[Any] = []

    async def handle(payload: SleepPayload, ctx: TaskContext) -> dict[str, Any]:
        ran[ctx.task_id] += 1
        seen.append(ctx.previous_result)
        return {"slept_s": payload.seconds}

    failed: list[str] = []

    async def first_success_lost(broker: Broker, event: StatusEvent, **kw: Any) -> None:
        if event.status is Status.SUCCEEDED and not failed:
            failed.append(event.task_id)
            raise BrokerUnavailable("simulated: the broker went away before `succeeded`")
        await real_publish_event(broker, event, **kw)

    monkeypatch.setattr(consumers.worker, "publish_event", first_success_lost)
    stop = asyncio.Event()
    async with connected_task_service(settings, name="workflow gateway") as gateway:
        await gateway.deps.publisher.ping()  # declares the topology the tap binds to
        tap = await amqp_channel.declare_queue(exclusive=True)
        await tap.bind(names.recorded_exchange("sleep"), "")  # where the gateway submits
        await tap.bind(names.FOLLOW_UPS_EXCHANGE, "#")  # where a step publishes its follow-ups
        # The first `succeeded` lost must be the parent's: no earlier test's task goes first.
        await Queues(amqp_channel).purge(names.task_queue("sleep"))
        worker = asyncio.create_task(run_worker(settings, "sleep", stop=stop,
                                                handler=TaskHandler(SLEEP, handle)))
        projector = asyncio.create_task(run_projector(settings, stop=stop))
        try:
            parent = await submit(gateway.deps, SubmitTask(
                task_type="sleep", payload={"seconds": 0},
                then=({"task_type": "sleep", "payload": {"seconds": 0.5}},)), source="http")

            async def both_succeeded() -> list[Any] | None:
                page = await gateway.deps.read_model.find(TaskQuery(
                    owners=(settings.default_tenant, None), labels=(workflow_label(parent),)))
                done = all(state.status is Status.SUCCEEDED for state in page.items)
                return page.items if done and len(page.items) == 2 else None

            states = await eventually(both_succeeded, timeout_s=30, what="both steps done")
            published: Counter[str] = Counter()
            while (message := await tap.get(fail=False, timeout=5)) is not None:
                await message.ack()
                published[str(message.message_id)] += 1
        finally:
            stop.set()
            await asyncio.gather(worker, projector)

    # The follow-up's id derives from the workflow's secret key: read it off the read model.
    [child] = [state.task_id for state in states if state.task_id != parent]
    assert failed == [parent]
    assert ran[parent] == 2  # redelivered after its follow-up was confirmed
    assert published[child] == 2  # ... so the follow-up was published twice, with one id
    assert sorted(state.task_id for state in states) == sorted([parent, child])
    assert ran[child] >= 1
    assert {"slept_s": 0} in seen  # the follow-up saw its parent's result
