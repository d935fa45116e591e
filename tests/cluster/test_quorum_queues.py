"""Quorum queues on a three-node cluster: a replica on each node, and no confirmed message lost
when the leader is killed."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import aio_pika

from devtools import cluster as rabbit_cluster
from tests.cluster.conftest import Cluster
from tests.cluster.quorum import declare_quorum_queue, drain, publish_until_confirmed, queue_info

MESSAGES = int(os.environ.get("CLUSTER_TEST_MESSAGES", "5000"))
IN_FLIGHT = 200


async def test_the_cluster_runs_three_nodes(cluster: Cluster) -> None:
    for node in cluster.nodes:
        assert await asyncio.to_thread(rabbit_cluster.running_nodes, node) == cluster.names


async def test_a_quorum_queue_has_a_member_on_each_node(cluster: Cluster) -> None:
    name = f"cluster-test.{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(cluster.nodes[0].url)
    async with connection:
        channel = await connection.channel()
        await declare_quorum_queue(channel, name)
        info = await queue_info(cluster.nodes[1], name)
        await channel.queue_delete(name)
    assert info.members == cluster.names


async def test_killing_the_leader_loses_no_confirmed_message(cluster: Cluster) -> None:
    name = f"cluster-test.{uuid.uuid4().hex[:8]}"
    leader, publisher_node = cluster.nodes[0], cluster.nodes[1]
    async with await aio_pika.connect(leader.url) as connection:
        # Declared through the first node, which leads it (client-local leader placement).
        await declare_quorum_queue(await connection.channel(), name)
    assert (await queue_info(publisher_node, name)).leader == leader.name

    async with await aio_pika.connect(publisher_node.url) as connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        nacks, killed_at, first_confirm_after_kill = 0, 0.0, 0.0
        for start in range(0, MESSAGES, IN_FLIGHT):
            if start >= MESSAGES // 2 and not killed_at:
                # Killed with a batch in flight: those publishes are waiting for confirms.
                batch = asyncio.ensure_future(asyncio.gather(*(
                    publish_until_confirmed(channel, name, number)
                    for number in range(start, start + IN_FLIGHT))))
                await asyncio.sleep(0.01)
                rabbit_cluster.kill_node(leader)
                killed_at = time.monotonic()
                nacks += sum(await batch)
                first_confirm_after_kill = time.monotonic()
                continue
            nacks += sum(await asyncio.gather(*(
                publish_until_confirmed(channel, name, number)
                for number in range(start, min(start + IN_FLIGHT, MESSAGES)))))

        new_leader = (await queue_info(publisher_node, name)).leader
        ids = await drain(await connection.channel(), name)
        await (await connection.channel()).queue_delete(name)

    lost = set(map(str, range(MESSAGES))) - set(ids)
    print(f"\nleader {leader.name} SIGKILLed: new leader {new_leader}; the batch in flight was "
          f"confirmed {first_confirm_after_kill - killed_at:.2f}s after the kill; {nacks} nacks "
          f"republished; lost {len(lost)} of {MESSAGES}; duplicates {len(ids) - len(set(ids))}")
    assert new_leader != leader.name
    assert new_leader in cluster.names
    assert not lost


