"""The RabbitMQ topology as data, declared idempotently, and exportable as a definitions file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractChannel, ExchangeType

from contracts import names
from contracts.registry import TaskSpec
from infra.rabbitmq.nodes import connect_first

_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
# Quorum queues dead-letter at-least-once only with this pair; the default loses messages if the
# target is briefly unavailable.
_SAFE_DEAD_LETTERING: dict[str, Any] = {
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
_PROJECTOR_DELIVERY_LIMIT = 50


@dataclass(frozen=True)
class Exchange:
    name: str
    type: ExchangeType


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str = "#"


@dataclass(frozen=True)
class Policy:
    """A RabbitMQ policy: `definition` applies to the queues whose names match `pattern`.
    The one with the highest priority wins where several match."""

    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = 10
    apply_to: str = "queues"


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[Exchange, ...]
    queues: tuple[Queue, ...]
    bindings: tuple[Binding, ...]


def build_topology(specs: tuple[TaskSpec, ...]) -> Topology:
    """Every exchange, queue and binding the service needs for these task types."""
    exchanges = [Exchange(names.EVENTS_EXCHANGE, ExchangeType.TOPIC),
                 # Each worker process binds its own exclusive queue to it (consumers/cancels.py).
                 Exchange(names.CONTROL_EXCHANGE, ExchangeType.TOPIC),
                 Exchange(names.QUARANTINE_EXCHANGE, ExchangeType.FANOUT),
                 Exchange(names.FOLLOW_UPS_EXCHANGE, ExchangeType.TOPIC)]
    to_quarantine = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names.QUARANTINE_QUEUE,
        "x-delivery-limit": _PROJECTOR_DELIVERY_LIMIT,
    }
    queues = [
        Queue(names.QUARANTINE_QUEUE, {**_QUORUM}),
        Queue(names.PROJECTOR_EVENTS_QUEUE, {**_QUORUM, **to_quarantine}),
        Queue(names.PROJECTOR_SUBMISSIONS_QUEUE, {**_QUORUM, **to_quarantine}),
        Queue(names.PROJECTOR_DEAD_QUEUE, {**_QUORUM, **to_quarantine}),
    ]
    bindings = [Binding(names.EVENTS_EXCHANGE, names.PROJECTOR_EVENTS_QUEUE),
                Binding(names.QUARANTINE_EXCHANGE, names.QUARANTINE_QUEUE, ""),
                # A follow-up is `queued` at once, as a task published to its exchange is.
                Binding(names.FOLLOW_UPS_EXCHANGE, names.PROJECTOR_SUBMISSIONS_QUEUE)]
    for spec in specs:
        exchanges += [
            Exchange(names.task_exchange(spec.name), ExchangeType.TOPIC),
            Exchange(names.recorded_exchange(spec.name), ExchangeType.FANOUT),
            Exchange(names.dead_exchange(spec.name), ExchangeType.FANOUT),
            Exchange(names.retry_exchange(spec.name), ExchangeType.DIRECT),
        ]
        queues += [
            Queue(names.task_queue(spec.name), {
                **_QUORUM, **_SAFE_DEAD_LETTERING,
                "x-delivery-limit": spec.delivery_limit,
                "x-dead-letter-exchange": names.dead_exchange(spec.name),
            }),
            Queue(names.dead_queue(spec.name), {**_QUORUM}),
        ]
        queues += [
            Queue(names.retry_queue(spec.name, tier), {
                **_QUORUM, **_SAFE_DEAD_LETTERING,
                "x-message-ttl": tier * 1000,
                # Straight back to the task queue, not through the exchange: the projector's
                # submission queue must not see a retry as a new task.
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": names.task_queue(spec.name),
            })
            for tier in names.RETRY_TIERS_S
        ]
        bindings += [
            Binding(names.task_exchange(spec.name), names.task_queue(spec.name)),
            Binding(names.task_exchange(spec.name), names.PROJECTOR_SUBMISSIONS_QUEUE),
            # The service's own submissions, recorded `queued` by their submitter: one message.
            Binding(names.recorded_exchange(spec.name), names.task_queue(spec.name), ""),
            Binding(names.dead_exchange(spec.name), names.dead_queue(spec.name), ""),
            Binding(names.dead_exchange(spec.name), names.PROJECTOR_DEAD_QUEUE, ""),
            Binding(names.FOLLOW_UPS_EXCHANGE, names.task_queue(spec.name),
                    names.follow_up_routing_key("*", spec.name)),
            *(Binding(names.retry_exchange(spec.name), names.retry_queue(spec.name, tier),
                      names.retry_queue(spec.name, tier)) for tier in names.RETRY_TIERS_S),
        ]
    return Topology(tuple(exchanges), tuple(queues), tuple(bindings))


async def declare_topology(
    channel: AbstractChannel, topology: Topology, *, passive: bool = False
) -> None:
    """Declare everything; safe to run from every process at every start. `passive`: only
    check that every exchange and queue exists (needs no configure permission; RabbitMQ closes
    the channel with NOT_FOUND when one is missing)."""
    exchanges = {
        exchange.name: await channel.declare_exchange(exchange.name, exchange.type, durable=True,
                                                      passive=passive)
        for exchange in topology.exchanges
    }
    queues = {
        queue.name: await channel.declare_queue(queue.name, durable=True, passive=passive,
                                                arguments=None if passive else queue.arguments)
        for queue in topology.queues
    }
    if passive:
        return
    for binding in topology.bindings:
        await queues[binding.queue].bind(exchanges[binding.exchange], binding.routing_key)


def definitions(
    topology: Topology, vhost: str = "/", policies: Sequence[Policy] = ()
) -> dict[str, Any]:
    """The topology as a RabbitMQ definitions document (`rabbitmqctl import_definitions`),
    with the queue length limits as policies."""
    return {
        "policies": [
            {"vhost": vhost, "name": p.name, "pattern": p.pattern, "apply-to": p.apply_to,
             "definition": p.definition, "priority": p.priority}
            for p in policies
        ],
        "exchanges": [
            {"name": e.name, "vhost": vhost, "type": e.type.value, "durable": True,
             "auto_delete": False, "internal": False, "arguments": {}}
            for e in topology.exchanges
        ],
        "queues": [
            {"name": q.name, "vhost": vhost, "durable": True, "auto_delete": False,
             "arguments": q.arguments}
            for q in topology.queues
        ],
        "bindings": [
            {"source": b.exchange, "vhost": vhost, "destination": b.queue,
             "destination_type": "queue", "routing_key": b.routing_key, "arguments": {}}
            for b in topology.bindings
        ],
    }


async def declare_on(url: str, topology: Topology) -> None:
    """Open a short-lived connection and declare the topology (for the CLI)."""
    connection = await connect_first(url)
    async with connection:
        await declare_topology(await connection.channel(), topology)
