"""The RabbitMQ topology as data, and its export as a definitions file."""

from __future__ import annotations

import json

import pytest
from aio_pika.abc import ExchangeType

from contracts import names
from contracts.registry import TaskSpec, task_type_names, task_types
from infra.rabbitmq.topology import Queue, Topology, build_topology, definitions


@pytest.fixture(scope="module")
def topology() -> Topology:
    return build_topology(task_types())


def queue(topology: Topology, name: str) -> Queue:
    (found,) = [q for q in topology.queues if q.name == name]
    return found


def bound(topology: Topology, exchange: str, queue_name: str) -> list[str]:
    """Routing keys of the bindings from `exchange` to `queue_name`."""
    return [b.routing_key for b in topology.bindings
            if b.exchange == exchange and b.queue == queue_name]


@pytest.mark.parametrize(
    ("delay_s", "tier"),
    [(0, 1), (0.2, 1), (1, 1), (1.01, 5), (5, 5), (29.9, 30), (30, 30), (31, 120),
     (600, 600), (601, 600), (86_400, 600)],
)
def test_retry_tier_rounds_up_and_caps_at_the_longest(delay_s: float, tier: int) -> None:
    assert names.retry_tier(delay_s) == tier


def test_retry_tier_never_waits_less_than_asked_below_the_cap() -> None:
    wanted = [n / 10 for n in range(0, 6001)]

    tiers = [names.retry_tier(delay) for delay in wanted]

    assert all(tier >= delay and tier in names.RETRY_TIERS_S
               for delay, tier in zip(wanted, tiers, strict=True))


@pytest.mark.parametrize("task_type", task_type_names())
def test_each_type_has_a_topic_exchange_and_a_limited_quorum_queue(
    topology: Topology, task_type: str
) -> None:
    exchanges = {e.name: e.type for e in topology.exchanges}
    spec = next(s for s in task_types() if s.name == task_type)

    main = queue(topology, f"tasks.{task_type}")

    assert exchanges[f"tasks.{task_type}"] is ExchangeType.TOPIC
    assert main.arguments["x-queue-type"] == "quorum"
    assert main.arguments["x-delivery-limit"] == spec.delivery_limit
    assert main.arguments["x-dead-letter-exchange"] == f"tasks.{task_type}.dead"
    assert bound(topology, f"tasks.{task_type}", f"tasks.{task_type}") == ["#"]


@pytest.mark.parametrize("task_type", task_type_names())
def test_each_tier_has_a_retry_queue_back_to_the_task_queue(
    topology: Topology, task_type: str
) -> None:
    retry_queues = [queue(topology, f"tasks.{task_type}.retry.{tier}s")
                    for tier in names.RETRY_TIERS_S]

    for tier, retry in zip(names.RETRY_TIERS_S, retry_queues, strict=True):
        assert retry.arguments["x-message-ttl"] == tier * 1000
        assert retry.arguments["x-dead-letter-exchange"] == ""
        assert retry.arguments["x-dead-letter-routing-key"] == f"tasks.{task_type}"
        # Reached by name through the type's retry exchange, never the default exchange.
        assert [(b.exchange, b.routing_key) for b in topology.bindings
                if b.queue == retry.name] == [(f"tasks.{task_type}.retry", retry.name)]


@pytest.mark.parametrize("task_type", task_type_names())
def test_dead_letters_reach_the_dead_queue_and_the_projector(
    topology: Topology, task_type: str
) -> None:
    exchanges = {e.name: e.type for e in topology.exchanges}
    dead = f"tasks.{task_type}.dead"

    dead_queue = queue(topology, dead)

    assert dead in exchanges
    assert dead_queue.arguments["x-queue-type"] == "quorum"
    assert bound(topology, dead, dead) != []
    assert bound(topology, dead, names.PROJECTOR_DEAD_QUEUE) != []


def test_the_projector_sees_every_submission_and_every_event(topology: Topology) -> None:
    exchanges = {e.name: e.type for e in topology.exchanges}

    submissions = {b.exchange for b in topology.bindings
                   if b.queue == names.PROJECTOR_SUBMISSIONS_QUEUE}
    events = {b.exchange for b in topology.bindings if b.queue == names.PROJECTOR_EVENTS_QUEUE}

    assert submissions == {f"tasks.{t}" for t in task_type_names()} | {"task-follow-ups"}
    assert events == {"task-events"}
    assert exchanges["task-events"] is ExchangeType.TOPIC
    assert bound(topology, "task-events", names.PROJECTOR_EVENTS_QUEUE) == ["#"]


def test_what_the_service_submits_reaches_only_its_task_queue(topology: Topology) -> None:
    exchanges = {e.name: e.type for e in topology.exchanges}

    for task_type in task_type_names():
        recorded = names.recorded_exchange(task_type)
        assert exchanges[recorded] is ExchangeType.FANOUT
        assert [b.queue for b in topology.bindings if b.exchange == recorded] == [
            names.task_queue(task_type)]


def test_every_queue_is_quorum_and_every_name_is_unique(topology: Topology) -> None:
    queue_names = [q.name for q in topology.queues]
    exchange_names = [e.name for e in topology.exchanges]

    assert all(q.arguments.get("x-queue-type") == "quorum" for q in topology.queues)
    assert len(set(queue_names)) == len(queue_names)
    assert len(set(exchange_names)) == len(exchange_names)
    assert names.QUARANTINE_QUEUE in queue_names


def test_the_topology_grows_with_the_registry() -> None:
    extra = TaskSpec(name="probe", payload=task_types()[0].payload, delivery_limit=3)

    grown = build_topology((*task_types(), extra))

    assert queue(grown, "tasks.probe").arguments["x-delivery-limit"] == 3
    assert bound(grown, "tasks.probe", names.PROJECTOR_SUBMISSIONS_QUEUE) == ["#"]


def test_definitions_have_the_fields_import_definitions_expects(topology: Topology) -> None:
    exported = definitions(topology, vhost="taskproc")

    document = json.loads(json.dumps(exported))

    assert {e["name"] for e in document["exchanges"]} == {e.name for e in topology.exchanges}
    assert {q["name"] for q in document["queues"]} == {q.name for q in topology.queues}
    for exchange in document["exchanges"]:
        assert {"name", "vhost", "type", "durable", "arguments"} <= exchange.keys()
        assert exchange["type"] in {"topic", "fanout", "direct", "headers"}
        assert (exchange["vhost"], exchange["durable"]) == ("taskproc", True)
    for declared in document["queues"]:
        assert {"name", "vhost", "durable", "arguments"} <= declared.keys()
        assert declared["arguments"]["x-queue-type"] == "quorum"
        assert (declared["vhost"], declared["durable"]) == ("taskproc", True)
    for binding in document["bindings"]:
        assert {"source", "vhost", "destination", "destination_type", "routing_key",
                "arguments"} <= binding.keys()
        assert binding["destination_type"] == "queue"


def test_every_exported_binding_refers_to_a_declared_exchange_and_queue(
    topology: Topology,
) -> None:
    document = definitions(topology)

    exchanges = {e["name"] for e in document["exchanges"]}
    queues = {q["name"] for q in document["queues"]}

    assert len(document["bindings"]) == len(topology.bindings)
    assert all(b["source"] in exchanges and b["destination"] in queues
               for b in document["bindings"])


@pytest.mark.parametrize("task_type", task_type_names())
def test_follow_ups_reach_their_task_queue_by_type(topology: Topology, task_type: str) -> None:
    assert bound(topology, "task-follow-ups", f"tasks.{task_type}") == [f"*.{task_type}"]


def test_quarantine_copies_go_through_an_exchange_of_their_own(topology: Topology) -> None:
    assert bound(topology, "tasks.quarantine", names.QUARANTINE_QUEUE) == [""]
