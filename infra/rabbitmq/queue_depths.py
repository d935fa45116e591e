"""Queue depths by passive declares: what RabbitMQ holds in each task type's queues."""

from __future__ import annotations

import asyncio

from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from contracts import names
from contracts.registry import task_type_names
from infra.rabbitmq.broker import Broker, BrokerUnavailable
from service.errors import PublishFailed
from service.queries import QueueDepth


def task_queue_names() -> list[str]:
    """Per task type: its queue, its retry delay queues (shortest first), its dead letters."""
    found: list[str] = []
    for task_type in task_type_names():
        found.append(names.task_queue(task_type))
        found += [names.retry_queue(task_type, tier) for tier in names.RETRY_TIERS_S]
        found.append(names.dead_queue(task_type))
    return found


class BrokerQueueDepths:
    """service.ports.QueueDepths over one short-lived channel per call (a passive declare of a
    missing queue closes its channel)."""

    def __init__(self, broker: Broker, timeout_s: float) -> None:
        self._broker = broker
        self._timeout_s = timeout_s

    async def depths(self) -> list[QueueDepth]:
        try:
            async with asyncio.timeout(self._timeout_s), self._broker.side_channel() as channel:
                found = []
                for name in task_queue_names():
                    queue = await channel.declare_queue(name, passive=True)
                    result = queue.declaration_result
                    found.append(QueueDepth(name, result.message_count or 0,
                                            result.consumer_count or 0))
                return found
        except (TimeoutError, OSError, AMQPError, ChannelInvalidStateError,
                BrokerUnavailable) as error:
            raise PublishFailed(f"queue depths: RabbitMQ did not answer: {error!r}") from error
