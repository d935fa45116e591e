"""Scoreboard rows 14-18: the whole system on a three-node cluster while nodes die, restart and
are cut off, with 32 clients submitting throughout (tests/cluster/traffic.py).

Every row requires lost 0, status wrong 0, regressions 0, every 202 task `succeeded`, and 503s
only inside a bounded window after each fault; its notes give that window and the time to
recover. Each row runs three times in a row (`ROUNDS`): a failover that works once by luck of
timing fails one of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from aio_pika.abc import AbstractChannel

from contracts import names
from contracts.registry import task_types
from devtools import cluster as rabbit_cluster
from devtools.cluster import Node
from devtools.namespaces import HOST_SIDE_ADDRESS, Host
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from tests.cluster.conftest import Cluster
from tests.cluster.quorum import queue_info
from tests.cluster.traffic import Traffic
from tests.faults.scoreboard import Row
from tests.faults.system import System
from tests.faults.tracking import TrackerFactory, assert_passed
from tests.support.fault_proxy import FaultProxy
from tests.support.services import MONGO_HOST, MONGO_PORT, Backends

NewRow = Callable[[str], Row]
ROUNDS = pytest.mark.parametrize("round_", [1, 2, 3], ids=lambda n: f"round-{n}")
TASK_QUEUE = names.task_queue("sleep")
CONVERGE_TIMEOUT_S = 90.0
# A partition lasts longer than it takes both sides to see it: net_ticktime 10 s, so the majority
# marks the node down (and pause_minority pauses it) within 10-15 s.
PARTITION_S = 20.0


def others(cluster: Cluster, node: Node) -> list[Node]:
    return [other for other in cluster.nodes if other != node]


async def start_on(system: System, cluster: Cluster, *, gateway: Node, worker: Node,
                   projector: Node) -> str:
    """A gateway, a sleep worker and a projector, each first on the node given; the gateway's
    URL."""
    url = await system.start_gateway(RABBITMQ_URL=cluster.url(first=gateway))
    await system.start_worker("sleep", RABBITMQ_URL=cluster.url(first=worker))
    await system.start_projector(RABBITMQ_URL=cluster.url(first=projector))
    return url


async def rejoined(cluster: Cluster, timeout_s: float = 90.0) -> float:
    """Seconds until all three nodes run as one cluster again (stopped ones started first)."""
    started = time.monotonic()
    await asyncio.to_thread(cluster.wait_until_running, timeout_s)
    return time.monotonic() - started


async def finish(row: Row, traffic: Traffic, system: System, converged: bool) -> None:
    for line in traffic.notes():
        row.note(line)
    assert_passed(row, converged, system.logs())


@pytest.mark.timeout(300)
@ROUNDS
async def test_sigkill_of_the_gateways_node(
    round_: int, cluster: Cluster, system: System, tracker_for: TrackerFactory, new_row: NewRow,
) -> None:
    row = new_row(f"14. SIGKILL the node the gateway is on (round {round_})")
    target, (worker_node, projector_node) = cluster.nodes[0], others(cluster, cluster.nodes[0])
    url = await start_on(system, cluster, gateway=target, worker=worker_node,
                         projector=projector_node)
    tracker = tracker_for(row, url)
    async with Traffic(tracker) as traffic:
        await traffic.accepted(100)
        fault = traffic.fault(f"SIGKILL {target.name} (the gateway's)")
        rabbit_cluster.kill_node(target)
        await traffic.recovered(fault)
        # Booting again (~15 s here) while the row goes on, for the next row.
        await asyncio.to_thread(rabbit_cluster.start_node, target)
        await traffic.accepted(100)
    converged = await tracker.converge(timeout_s=CONVERGE_TIMEOUT_S)
    row.note(f"{target.name} restarted, back in the cluster {await rejoined(cluster):.1f} s "
             "after the row")
    await finish(row, traffic, system, converged)


async def lead_from(cluster: Cluster, services: Backends, leader: Node) -> None:
    """Make `leader` lead tasks.sleep and projector.events: both are deleted (empty: the row
    before converged) and declared again from it (quorum leaders start on the declaring node)."""
    broker = Broker(leader.url, build_topology(task_types()), timeout_s=5, name="row-15 setup")
    try:
        async with broker.side_channel() as channel:
            await _delete(channel, TASK_QUEUE)
            await _delete(channel, names.PROJECTOR_EVENTS_QUEUE)
    finally:
        await broker.close()
    broker = Broker(leader.url, build_topology(task_types()), timeout_s=5, name="row-15 setup")
    try:
        await broker.channel()  # declares the topology again, from `leader`
    finally:
        await broker.close()


async def _delete(channel: AbstractChannel, queue: str) -> None:
    await channel.queue_delete(queue, if_unused=False, if_empty=False)


@pytest.mark.timeout(300)
@ROUNDS
async def test_sigkill_of_the_queues_leader_while_workers_run(
    round_: int, cluster: Cluster, system: System, tracker_for: TrackerFactory, new_row: NewRow,
    services: Backends,
) -> None:
    row = new_row(f"15. SIGKILL the leader of tasks.sleep and projector.events (round {round_})")
    leader = cluster.nodes[round_ % len(cluster.nodes)]
    await lead_from(cluster, services, leader)
    first, second = others(cluster, leader)
    assert (await queue_info(first, TASK_QUEUE)).leader == leader.name
    assert (await queue_info(first, names.PROJECTOR_EVENTS_QUEUE)).leader == leader.name
    # No process is on the leader's node: the fault is the queues' alone.
    url = await start_on(system, cluster, gateway=first, worker=second, projector=first)
    tracker = tracker_for(row, url)
    async with Traffic(tracker) as traffic:
        await traffic.accepted(100)
        fault = traffic.fault(f"SIGKILL {leader.name} (the queues' leader)")
        rabbit_cluster.kill_node(leader)
        await traffic.recovered(fault)
        await asyncio.to_thread(rabbit_cluster.start_node, leader)  # as in row 14
        await traffic.accepted(100)
    converged = await tracker.converge(timeout_s=CONVERGE_TIMEOUT_S)
    new_leader = (await queue_info(first, TASK_QUEUE)).leader
    row.note(f"tasks.sleep led by {new_leader} after the kill; {leader.name} restarted, back "
             f"in the cluster {await rejoined(cluster):.1f} s after the row")
    await finish(row, traffic, system, converged)


@pytest.mark.timeout(300)
@ROUNDS
async def test_rolling_restart_of_every_node(
    round_: int, cluster: Cluster, system: System, tracker_for: TrackerFactory, new_row: NewRow,
) -> None:
    row = new_row(f"16. rolling restart of the three nodes, one at a time (round {round_})")
    gateway_node, worker_node, projector_node = cluster.nodes
    url = await start_on(system, cluster, gateway=gateway_node, worker=worker_node,
                         projector=projector_node)
    tracker = tracker_for(row, url)
    async with Traffic(tracker) as traffic:
        await traffic.accepted(100)
        for node in cluster.nodes:
            fault = traffic.fault(f"restart {node.name}")
            await asyncio.to_thread(rabbit_cluster.ctl, node, "stop_app")
            await asyncio.to_thread(rabbit_cluster.ctl, node, "start_app")
            await rejoined(cluster)
            await traffic.recovered(fault)
            await traffic.accepted(50)
    converged = await tracker.converge(timeout_s=CONVERGE_TIMEOUT_S)
    row.note("each node: rabbitmqctl stop_app, start_app, and the next once all three run")
    await finish(row, traffic, system, converged)


@pytest.mark.timeout(300)
@ROUNDS
async def test_a_partition_cuts_one_node_off_and_heals(
    round_: int, cluster: Cluster, system: System, tracker_for: TrackerFactory, new_row: NewRow,
) -> None:
    row = new_row(f"17. partition: one node cut off {PARTITION_S:.0f} s, then healed "
                  f"(pause_minority; round {round_})")
    cut = cluster.nodes[round_ % len(cluster.nodes)]
    worker_node, projector_node = others(cluster, cut)
    url = await start_on(system, cluster, gateway=cut, worker=worker_node,
                         projector=projector_node)
    tracker = tracker_for(row, url)
    async with Traffic(tracker) as traffic:
        await traffic.accepted(100)
        fault = traffic.fault(f"{cut.name}'s link down (the gateway's node)")
        cut.host.set_link(False)
        try:
            await asyncio.sleep(PARTITION_S)
        finally:
            cut.host.set_link(True)
        healed = time.monotonic()
        await traffic.recovered(fault)
        whole = await rejoined(cluster)
        await traffic.accepted(100)
    converged = await tracker.converge(timeout_s=CONVERGE_TIMEOUT_S)
    row.note(f"link down {PARTITION_S:.0f} s; the cluster whole again {whole:.1f} s after the "
             f"link came back ({time.monotonic() - healed:.0f} s ago)")
    await finish(row, traffic, system, converged)


@pytest.mark.timeout(300)
@ROUNDS
async def test_two_projectors_and_two_workers_one_of_each_cut_off(
    round_: int, cluster: Cluster, system: System, tracker_for: TrackerFactory, new_row: NewRow,
    process_host: Host,
) -> None:
    row = new_row(f"18. two projectors and two workers, one of each on a host cut off "
                  f"{PARTITION_S:.0f} s (round {round_})")
    # The cut-off host reaches MongoDB through a relay on the bridge (nx-27017 listens on
    # 127.0.0.1 only), so its link going down cuts that too, as on a real host.
    relay = FaultProxy(MONGO_HOST, MONGO_PORT, host=HOST_SIDE_ADDRESS)
    await relay.start()
    try:
        url = await system.start_gateway()
        away = process_host.command()
        await system.start_worker("sleep", RABBITMQ_URL=cluster.url(first=cluster.nodes[1]))
        await system.start_worker("sleep", launcher=away, MONGODB_URL=relay.url(),
                                  RABBITMQ_URL=cluster.url(first=cluster.nodes[2]))
        await system.start_projector(RABBITMQ_URL=cluster.url(first=cluster.nodes[2]))
        await system.start_projector(launcher=away, MONGODB_URL=relay.url(),
                                     RABBITMQ_URL=cluster.url(first=cluster.nodes[1]))
        tracker = tracker_for(row, url)
        async with Traffic(tracker) as traffic:
            await traffic.accepted(100)
            fault = traffic.fault(f"{process_host.namespace}'s link down (a worker and a "
                                  "projector on it)")
            process_host.set_link(False)
            try:
                await asyncio.sleep(PARTITION_S)
            finally:
                process_host.set_link(True)
            await traffic.recovered(fault)
            await traffic.accepted(100)
        converged = await tracker.converge(timeout_s=CONVERGE_TIMEOUT_S)
    finally:
        await relay.close()
    row.note(f"MongoDB relayed to the cut-off host: {relay.connections} connection(s)")
    await finish(row, traffic, system, converged)

