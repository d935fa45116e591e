"""A process given every node of the cluster moves to another node when its own is killed, and
its publishes fail fast (503 at the gateway) only for a short window, never hang, and never
confirm a task that is not in its queue."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from contracts import names
from contracts.messages import TaskEnvelope
from contracts.registry import task_types
from devtools import cluster as rabbit_cluster
from infra.rabbitmq.broker import Broker, PublishError, persistent_message
from infra.rabbitmq.publishing import publish_task
from infra.rabbitmq.topology import build_topology
from infra.runtime.retrying import connect
from tests.cluster.conftest import Cluster
from tests.cluster.quorum import (
    declare_quorum_queue,
    drain,
    publish_until_confirmed,
    queue_info,
)

CLIENTS = 16
PUBLISH_TIMEOUT_S = 5.0
QUEUE = names.task_queue("sleep")
ROBUST_PAUSE_S = 5.5


@dataclass
class Outcomes:
    """What the clients saw: confirmed task ids, when each failure came, the slowest answer."""

    confirmed: list[str] = field(default_factory=list)
    confirmed_at: list[float] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0


async def submit_until(stop: asyncio.Event, broker: Broker, seen: Outcomes) -> None:
    """One client: publish tasks one after another, as the gateway does for each request."""
    while not stop.is_set():
        envelope = TaskEnvelope(task_id=f"failover-{uuid.uuid4()}", task_type="sleep",
                                payload={"seconds": 0}, submitted_at=datetime.now(UTC))
        started = time.monotonic()
        try:
            await publish_task(broker, envelope, app_id="cluster-tests", source="http")
            seen.confirmed.append(envelope.task_id)
            seen.confirmed_at.append(time.monotonic())
        except PublishError as error:
            seen.failed_at.append(time.monotonic())
            seen.errors[f"{type(error).__name__}: {error}"[:200]] += 1
            await asyncio.sleep(0.05)  # what a client does after a 503
        seen.slowest_s = max(seen.slowest_s, time.monotonic() - started)


async def test_a_publisher_whose_node_is_killed_moves_on_and_keeps_accepting(
        cluster: Cluster) -> None:
    first, survivor = cluster.nodes[0], cluster.nodes[1]
    broker = Broker(",".join(node.url for node in cluster.nodes), build_topology(task_types()),
                    timeout_s=PUBLISH_TIMEOUT_S, name="cluster-tests")
    await broker.channel()
    assert broker.node == f"{first.host.address}:5672"
    assert (await queue_info(survivor, QUEUE)).members == cluster.names
    async with broker.side_channel() as channel:
        await (await channel.declare_queue(QUEUE, passive=True)).purge()

    seen, stop = Outcomes(), asyncio.Event()
    clients = [asyncio.create_task(submit_until(stop, broker, seen)) for _ in range(CLIENTS)]
    try:
        # aio-pika's reconnect loop pauses `reconnect_interval` (5 s) after every try, the first
        # successful one included: a process that connected under 5 s ago reconnects only then.
        # The kill comes later, as it would for a process that has been up a while.
        await asyncio.sleep(ROBUST_PAUSE_S)
        before = len(seen.confirmed)
        rabbit_cluster.kill_node(first)
        killed = time.monotonic()
        deadline = killed + 30
        while not [at for at in seen.confirmed_at if at > killed + 1.0]:
            assert time.monotonic() < deadline, "no publish confirmed in 30 s after the kill"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*clients)
        print("\npublish errors:", *seen.errors.most_common(5), sep="\n  ")
    on = broker.node
    await broker.close()

    async with await aio_pika.connect(survivor.url) as connection:
        queued = set(await drain(await connection.channel(), QUEUE))
    failures = [at - killed for at in seen.failed_at if at >= killed]
    window = max(failures, default=0.0)
    first_after = min(at for at in seen.confirmed_at if at > killed) - killed
    print(f"\nnode {first.name} SIGKILLed under {CLIENTS} publishing clients: moved to {on}; "
          f"{len(failures)} publishes failed (503) within {window:.2f}s after the kill; first "
          f"confirm after the kill at {first_after:.2f}s; slowest answer {seen.slowest_s:.2f}s; "
          f"{before} confirmed before the kill, {len(seen.confirmed)} in all; "
          f"lost {len(set(seen.confirmed) - queued)}")
    assert on != f"{first.host.address}:5672"
    assert not set(seen.confirmed) - queued, "a confirmed task is not in its queue"
    assert window < PUBLISH_TIMEOUT_S + 1
    assert seen.slowest_s < PUBLISH_TIMEOUT_S + 1


async def test_a_consumer_whose_node_is_killed_consumes_on_another(cluster: Cluster) -> None:
    first, survivor = cluster.nodes[0], cluster.nodes[1]
    broker = Broker(",".join(node.url for node in cluster.nodes), build_topology(task_types()),
                    timeout_s=PUBLISH_TIMEOUT_S, name="cluster-tests-consumer")
    received: set[str] = set()

    async def on_message(message: AbstractIncomingMessage) -> None:
        received.add(message.message_id or "")
        await message.ack()

    queue = await broker.queue(QUEUE)
    await queue.purge()
    await queue.consume(on_message)
    await asyncio.sleep(ROBUST_PAUSE_S)  # see the test above
    rabbit_cluster.kill_node(first)

    async with await aio_pika.connect(survivor.url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        sent = {f"after-kill-{number}" for number in range(100)}
        for task_id in sorted(sent):
            await publish_until_confirmed(channel, QUEUE, task_id)
        deadline = time.monotonic() + 30
        while received < sent:
            assert time.monotonic() < deadline, f"{len(sent - received)} of 100 not consumed"
            await asyncio.sleep(0.1)
    on = broker.node
    await broker.close()

    print(f"\nconsumer moved from {first.name} to {on}: consumed all 100 published after the kill")
    assert on != f"{first.host.address}:5672"


async def test_a_publisher_is_not_left_nacked_after_its_queues_leader_dies(
        cluster: Cluster) -> None:
    # On RabbitMQ 3.10 a channel whose first publish to a quorum queue comes while the queue
    # elects a new leader is nacked for good (publishes on it never reach that queue again).
    leader, publisher_node = cluster.nodes[0], cluster.nodes[1]
    name = f"cluster-test.{uuid.uuid4().hex[:8]}"
    async with await aio_pika.connect(leader.url) as connection:
        await declare_quorum_queue(await connection.channel(), name)
    urls = [publisher_node.url, *(node.url for node in cluster.nodes if node != publisher_node)]
    broker = Broker(",".join(urls), build_topology(task_types()),
                    timeout_s=PUBLISH_TIMEOUT_S, name="cluster-tests-election")
    await broker.channel()

    rabbit_cluster.kill_node(leader)
    killed, refused = time.monotonic(), 0
    while True:  # from the moment of the kill: the first publish lands in the election
        try:
            await broker.publish("", name, persistent_message(b"{}", message_id="probe"))
            break
        except PublishError:
            refused += 1
            assert time.monotonic() < killed + 15, "still nacked 15 s after the election"
            await asyncio.sleep(0.05)
    confirmed_after = time.monotonic() - killed
    for number in range(20):  # and it stays confirmed
        await broker.publish("", name, persistent_message(b"{}", message_id=str(number)))
    await broker.close()

    print(f"\npublisher on {publisher_node.name}, leader {leader.name} killed: {refused} publishes "
          f"refused, confirmed again {confirmed_after:.2f}s after the kill")


async def test_a_process_started_while_its_first_node_is_down_connects_to_the_next(
        cluster: Cluster) -> None:
    down, survivor = cluster.nodes[0], cluster.nodes[1]
    rabbit_cluster.kill_node(down)
    broker = Broker(",".join(node.url for node in cluster.nodes), build_topology(task_types()),
                    timeout_s=PUBLISH_TIMEOUT_S, name="cluster-tests-start")
    started = time.monotonic()
    try:
        assert await connect(broker, asyncio.Event())
        connected_s = time.monotonic() - started
        on = broker.node
        envelope = TaskEnvelope(task_id=f"start-{uuid.uuid4()}", task_type="sleep",
                                payload={"seconds": 0}, submitted_at=datetime.now(UTC))
        await publish_task(broker, envelope, app_id="cluster-tests", source="http")
    finally:
        await broker.close()

    print(f"\nstarted with {down.name} down: on {on} after {connected_s:.2f}s")
    assert on == f"{survivor.host.address}:5672"
