"""Helpers of the cluster tier: quorum queues' members and leader, and confirmed publishing that
republishes what RabbitMQ nacks (as a client must while a queue elects a new leader)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import DeliveryError

from devtools import cluster as rabbit_cluster
from devtools.cluster import Node


async def declare_quorum_queue(channel: AbstractChannel, name: str) -> None:
    """A durable quorum queue with a member on each of the three nodes."""
    await channel.declare_queue(name, durable=True, arguments={
        "x-queue-type": "quorum", "x-quorum-initial-group-size": 3})


@dataclass(frozen=True)
class Replicas:
    """Where a quorum queue lives: its leader's node and every member's."""

    leader: str
    members: list[str]


async def queue_info(node: Node, name: str) -> Replicas:
    """The queue's leader and members as `node` sees them."""
    out = await asyncio.to_thread(rabbit_cluster.ctl, node, "list_queues", "-q", "name",
                                  "leader", "members", "--formatter", "json")
    row = next(row for row in json.loads(out) if row["name"] == name)
    return Replicas(leader=row["leader"], members=sorted(row["members"]))


async def publish_until_confirmed(channel: AbstractChannel, queue: str, message_id: object,
                                  *, pause_s: float = 0.05, deadline_s: float = 30.0) -> int:
    """Publish message `message_id` to `queue` until RabbitMQ confirms it; the number of nacks."""
    nacks, deadline = 0, time.monotonic() + deadline_s
    while True:
        message = aio_pika.Message(str(message_id).encode(), message_id=str(message_id),
                                   delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            await channel.default_exchange.publish(message, queue, mandatory=True)
            return nacks
        except DeliveryError:
            nacks += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(pause_s)


async def drain(channel: AbstractChannel, queue: str, *, idle_s: float = 2.0) -> list[str]:
    """Every message id in `queue`, consumed and acked until it has been empty for `idle_s`."""
    ids: list[str] = []
    target = await channel.declare_queue(queue, passive=True)
    async with target.iterator(timeout=idle_s) as messages:
        try:
            async for message in messages:
                ids.append(message.message_id or "")
                await message.ack()
        except TimeoutError:
            pass
    return ids
