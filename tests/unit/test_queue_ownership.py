"""Reading a queue or exchange name back to its task type, and which queues are orphans: the
names the topology makes are read back to their type whether or not it is registered."""

from __future__ import annotations

import dataclasses

import pytest

from contracts import names
from contracts.registry import get_spec, task_type_names, task_types
from infra.rabbitmq.orphan_queues import is_orphan, refusal
from infra.rabbitmq.topology import build_topology


def test_every_queue_of_the_topology_is_owned_and_read_back_to_its_type() -> None:
    topology = build_topology(task_types())

    assert not [q.name for q in topology.queues if is_orphan(q.name, task_type_names())]
    for spec in task_types():
        own = [q.name for q in topology.queues if names.task_type_of_queue(q.name) == spec.name]
        assert len(own) == 2 + len(names.RETRY_TIERS_S)


def test_a_removed_types_queues_are_orphans_and_the_others_are_not() -> None:
    retired = dataclasses.replace(get_spec("sleep"), name="retired")
    topology = build_topology((*task_types(), retired))

    orphans = {q.name for q in topology.queues if is_orphan(q.name, task_type_names())}

    assert orphans == {q.name for q in topology.queues
                       if names.task_type_of_queue(q.name) == "retired"}
    assert all(refusal(name, task_type_names()) is None for name in orphans)


@pytest.mark.parametrize(("queue", "task_type", "orphan"), [
    ("tasks.sleep", "sleep", False),
    ("tasks.sleep.retry.5s", "sleep", False),
    ("tasks.sleep.retry.7s", None, True),  # a delay tier no longer in use
    ("tasks.thumbnail.dead", "thumbnail", True),
    ("task-control.thumbnail.host.12.ab12", "thumbnail", True),
    ("task-control.sleep.host.12.ab12", "sleep", False),
    ("tasks.quarantine", None, False),
    ("projector.events", None, False),
    ("tasks.not-a-type", None, True),
    ("billing.task-outcomes", None, False),  # another application's, not the service's
])
def test_names_read_back(queue: str, task_type: str | None, orphan: bool) -> None:
    assert names.task_type_of_queue(queue) == task_type
    assert is_orphan(queue, task_type_names()) is orphan


@pytest.mark.parametrize(("exchange", "suffix", "task_type"), [
    ("tasks.thumbnail", "", "thumbnail"),
    ("tasks.thumbnail.dead", ".dead", "thumbnail"),
    ("tasks.thumbnail.dead", "", None),
    ("tasks.thumbnail.retry", "", None),
    ("tasks.quarantine", "", None),
    ("task-follow-ups", "", None),
    ("", "", None),
    (None, "", None),
])
def test_exchange_names_read_back(exchange: str | None, suffix: str,
                                  task_type: str | None) -> None:
    assert names.task_type_of_exchange(exchange, suffix=suffix) == task_type
