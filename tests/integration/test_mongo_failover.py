"""A MongoDB failover, as a client sees one: every connection cut while the projector's bulk
writes and the gateway's `queued` inserts are under way (tests/support/fault_proxy.py, in front
of the session's MongoDB-protocol server). nx-27017 is a single server, so this proves what the
clients do about the cut (retry, hold, fall back), not a real replica set's election.

Each cut happens at a known point: the next write of a kind, before the server sees it or after
it answered (the answer lost). Nothing may be lost, quarantined or regressed.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from contracts import names
from contracts.messages import StatusEvent
from contracts.registry import task_types
from contracts.statuses import Status
from infra.composition import connected_task_service
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.publishing import publish_event
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.system import SystemSettings
from projector.bootstrap import run_projector
from service.commands import SubmitTask
from service.dependencies import Dependencies
from service.submit import submit
from service.tasks import get_task
from tests.support.amqp import Queues
from tests.support.fault_proxy import FaultProxy
from tests.support.services import MONGO_HOST, MONGO_PORT
from tests.support.waiting import eventually

TASKS = 200
WAVE = 60
CUT_WAIT_S = 20


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    cutter = FaultProxy(MONGO_HOST, MONGO_PORT)
    await cutter.start()
    yield cutter
    await cutter.close()


async def statuses(client: AsyncMongoClient[dict[str, Any]], settings: SystemSettings,
                   task_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored tasks among `task_ids`, read straight from the server (not through the proxy)."""
    tasks = client[settings.mongodb_database]["tasks"]
    return {document["_id"]: document
            async for document in tasks.find({"_id": {"$in": task_ids}})}


async def all_at(client: AsyncMongoClient[dict[str, Any]], settings: SystemSettings,
                 task_ids: list[str], status: Status) -> None:
    async def there() -> bool:
        stored = await statuses(client, settings, task_ids)
        return len(stored) == len(task_ids) and all(
            document["status"] == status.value for document in stored.values())

    await eventually(there, timeout_s=30, what=f"{len(task_ids)} tasks {status.value}")


async def test_a_cut_during_the_projectors_bulk_writes_loses_and_regresses_nothing(
    settings: SystemSettings, proxy: FaultProxy, queues: Queues,
    client: AsyncMongoClient[dict[str, Any]],
) -> None:
    run = uuid.uuid4().hex[:8]
    task_ids = [f"failover-{run}-{n}" for n in range(TASKS)]
    via_proxy = settings.model_copy(update={"mongodb_url": proxy.url(),
                                            "projector_batch_size": 50})
    broker = Broker(settings.rabbitmq_url, build_topology(task_types()),
                    timeout_s=settings.publish_timeout_s, name="failover events")
    await broker.channel()  # declares the topology
    quarantined_before = await queues.depth(names.QUARANTINE_QUEUE)
    stop = asyncio.Event()
    projector = asyncio.create_task(run_projector(via_proxy, stop=stop))

    async def wave(status: Status, attempt: int) -> None:
        await asyncio.gather(*(publish_event(broker, StatusEvent(
            task_id=task_id, task_type="sleep", status=status, attempt=attempt, worker="test",
            source="amqp", tenant=settings.default_tenant)) for task_id in task_ids))

    try:
        # 1. New tasks: the first bulk insert lands, its answer is lost; the retry finds them.
        cut = proxy.cut_at("insert", reply_lost=True)
        await wave(Status.QUEUED, 0)
        await asyncio.wait_for(cut.wait(), CUT_WAIT_S)
        await all_at(client, settings, task_ids, Status.QUEUED)
        # 2. Guarded replaces: one cut before the server sees the write, then its retry's
        # answer lost.
        cuts = [proxy.cut_at("update", reply_lost=False), proxy.cut_at("update", reply_lost=True)]
        await wave(Status.RUNNING, 1)
        await asyncio.wait_for(asyncio.gather(*(each.wait() for each in cuts)), CUT_WAIT_S)
        await all_at(client, settings, task_ids, Status.RUNNING)
        # 3. The outcomes: the read before the write cut, then the write's answer lost and
        # new connections refused for a second after, as during an election.
        cuts = [proxy.cut_at("find", reply_lost=False),
                proxy.cut_at("update", reply_lost=True, refuse_s=1.0)]
        await wave(Status.SUCCEEDED, 1)
        await asyncio.wait_for(asyncio.gather(*(each.wait() for each in cuts)), CUT_WAIT_S)
        await all_at(client, settings, task_ids, Status.SUCCEEDED)
        # 4. Old events again (a redelivery after a cut): none may move a task back. A task
        # published after them is stored once they are: the batches are written in order.
        await wave(Status.RUNNING, 1)
        await wave(Status.QUEUED, 0)
        marker = [f"failover-{run}-marker"]
        await publish_event(broker, StatusEvent(task_id=marker[0], task_type="sleep",
                                                status=Status.QUEUED, attempt=0, worker="test"))
        await all_at(client, settings, marker, Status.QUEUED)
        stored = await statuses(client, settings, task_ids)
    finally:
        stop.set()
        await projector
        await broker.close()

    print(f"\nprojector through cuts: {TASKS} tasks, {5 * TASKS} events, "
          f"{proxy.cuts} connections cut, {proxy.refused} refused, "
          f"requests seen {dict(proxy.requests)}")
    assert proxy.cuts >= 5
    assert proxy.refused >= 1
    wrong = {task_id: document["status"] for task_id, document in stored.items()
             if document["status"] != Status.SUCCEEDED.value or document["attempt"] != 1}
    assert len(stored) == TASKS
    assert not wrong
    # Each status once in each task's history: no write counted twice.
    assert all([entry["status"] for entry in document["history"]]
               == ["queued", "running", "succeeded"] for document in stored.values())
    assert await queues.depth(names.QUARANTINE_QUEUE) == quarantined_before
    assert await queues.depth(names.PROJECTOR_EVENTS_QUEUE) == 0


async def test_a_cut_during_the_gateways_queued_inserts_loses_no_accepted_task(
    settings: SystemSettings, proxy: FaultProxy, queues: Queues,
    client: AsyncMongoClient[dict[str, Any]], caplog: pytest.LogCaptureFixture,
) -> None:
    via_proxy = settings.model_copy(update={"mongodb_url": proxy.url()})
    stop = asyncio.Event()
    # The projector (on the server itself) records the `queued` events of the fallback.
    projector = asyncio.create_task(run_projector(settings, stop=stop))
    accepted: list[str] = []
    caplog.set_level(logging.WARNING, logger="service.submit")
    try:
        async with connected_task_service(via_proxy, name="failover gateway") as gateway:
            async def submit_wave() -> list[str]:
                return list(await asyncio.gather(*(submit(
                    gateway.deps, SubmitTask(task_type="sleep", payload={"seconds": 0}),
                    source="http") for _ in range(WAVE))))

            # An insert that lands with its answer lost; one the server never sees; and every
            # connection cut while idle, found dead by the next inserts.
            for cut in (proxy.cut_at("insert", reply_lost=True),
                        proxy.cut_at("insert", reply_lost=False)):
                accepted += await submit_wave()
                await asyncio.wait_for(cut.wait(), CUT_WAIT_S)
            proxy.cut_all()
            accepted += await submit_wave()
            readable = [task_id for task_id in accepted
                        if await gateway_reads(gateway.deps, task_id)]
        await all_at(client, settings, accepted, Status.QUEUED)
    finally:
        stop.set()
        await projector
        # No worker runs here: leave no task for a later test's worker to find.
        await queues.purge(names.task_queue("sleep"))

    fell_back = sum("not yet in the read model" in record.getMessage()
                    for record in caplog.records)
    print(f"\ngateway through cuts: {len(accepted)} accepted, {len(readable)} readable at "
          f"once, {fell_back} recorded by the fallback, {proxy.cuts} connections cut")
    assert len(set(accepted)) == 3 * WAVE
    assert len(readable) == len(accepted)
    assert fell_back >= 1  # the cuts did hit the inserts


async def gateway_reads(deps: Dependencies, task_id: str) -> bool:
    """The gateway's own read right after the 202 (the read model, else the tasks it holds)."""
    state = await get_task(deps, task_id)
    return state.task_id == task_id
