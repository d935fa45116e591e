"""The queue length limits as data: which queues each policy covers, what the definitions file
holds, and that no queue argument changed (so existing queues still redeclare)."""

from __future__ import annotations

import json
import re

from contracts import names
from contracts.registry import task_types
from infra.rabbitmq.nodes import vhost_of
from infra.rabbitmq.queue_limits import (
    DEAD_QUEUES_POLICY,
    TASK_QUEUES_POLICY,
    queue_policies,
)
from infra.rabbitmq.topology import build_topology, definitions
from infra.runtime.settings.system import SystemSettings

SETTINGS = SystemSettings(queue_max_messages=7, queue_max_bytes=7000, dead_queue_max_messages=3,
                    dead_queue_max_bytes=3000)
POLICIES = {policy.name: policy for policy in queue_policies(task_types(), SETTINGS)}
QUEUES = [queue.name for queue in build_topology(task_types()).queues]


def covered_by(policy_name: str) -> set[str]:
    pattern = re.compile(POLICIES[policy_name].pattern)
    return {name for name in QUEUES if pattern.search(name)}


def test_the_task_policy_covers_every_task_and_delay_queue_and_nothing_else() -> None:
    expected = {names.task_queue(spec.name) for spec in task_types()} | {
        names.retry_queue(spec.name, tier) for spec in task_types() for tier in names.RETRY_TIERS_S}

    assert covered_by(TASK_QUEUES_POLICY) == expected
    assert POLICIES[TASK_QUEUES_POLICY].definition == {
        "max-length": 7, "max-length-bytes": 7000, "overflow": "reject-publish"}


def test_the_dead_letter_policy_covers_dead_letter_and_quarantine_queues() -> None:
    expected = {names.dead_queue(spec.name) for spec in task_types()} | {names.QUARANTINE_QUEUE}

    assert covered_by(DEAD_QUEUES_POLICY) == expected
    assert POLICIES[DEAD_QUEUES_POLICY].definition == {
        "max-length": 3, "max-length-bytes": 3000, "overflow": "reject-publish"}


def test_no_queue_is_bounded_by_an_argument() -> None:
    # A new x- argument would make RabbitMQ refuse to redeclare every existing queue.
    for queue in build_topology(task_types()).queues:
        assert not {"x-max-length", "x-max-length-bytes"} & queue.arguments.keys(), queue.name


def test_the_definitions_file_holds_the_policies() -> None:
    document = json.loads(json.dumps(definitions(
        build_topology(task_types()), vhost="prod", policies=tuple(POLICIES.values()))))

    assert {p["name"] for p in document["policies"]} == set(POLICIES)
    for policy in document["policies"]:
        assert policy["vhost"] == "prod"
        assert policy["apply-to"] == "queues"
        assert {"pattern", "definition", "priority"} <= policy.keys()


def test_the_vhost_comes_from_the_amqp_url() -> None:
    assert vhost_of("amqp://u:p@host:5672/") == "/"
    assert vhost_of("amqp://u:p@host:5672") == "/"
    assert vhost_of("amqp://u:p@host:5672/prod") == "prod"
    assert vhost_of("amqp://u:p@host:5672/%2Fteam") == "/team"
