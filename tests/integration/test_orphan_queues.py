"""Removing a task type: its queues stay until an operator deletes them, one at a time and only
when empty (`taskproc topology orphans`, `taskproc topology delete-orphan QUEUE`). Each test
has a vhost of its own: it declares the built-in types' topology plus that of a type, `retired`,
that is not registered any more."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import aio_pika
import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from contracts import names
from contracts.registry import get_spec, task_type_names, task_types
from infra.rabbitmq.management import management
from infra.rabbitmq.nodes import vhost_of
from infra.rabbitmq.orphan_queues import DeleteRefused, QueueSeen, delete_orphan, orphan_queues
from infra.rabbitmq.topology import build_topology, declare_on
from infra.runtime.settings.cli import BrokerAdminSettings
from tests.support.services import Backends, local_vhost

RETIRED = "retired"
RETIRED_QUEUES = {names.task_queue(RETIRED), names.dead_queue(RETIRED),
                  *(names.retry_queue(RETIRED, tier) for tier in names.RETRY_TIERS_S)}


@pytest.fixture
def own_vhost(services: Backends) -> Iterator[str]:
    if not services.local_broker:
        pytest.skip("needs rabbitmqctl on the local broker for a vhost of the test's own")
    with local_vhost() as (url, _):
        yield url


@pytest.fixture
async def admin(own_vhost: str) -> BrokerAdminSettings:
    """The topology of the registered types and of `retired` on the vhost, and settings for
    it."""
    retired = dataclasses.replace(get_spec("sleep"), name=RETIRED)
    await declare_on(own_vhost, build_topology((*task_types(), retired)))
    return BrokerAdminSettings(rabbitmq_url=own_vhost, taskproc_env="development")


async def publish(url: str, exchange: str, routing_key: str = "") -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = (channel.default_exchange if not exchange
                  else await channel.get_exchange(exchange, ensure=False))
        await target.publish(aio_pika.Message(b'{"payload": {"seconds": 0}}',
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                             routing_key=routing_key)


async def depth(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


def by_name(found: list[QueueSeen]) -> dict[str, QueueSeen]:
    return {queue.name: queue for queue in found}


async def taskproc(settings: BrokerAdminSettings, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, ["topology", *args],
                                   env={"RABBITMQ_URL": settings.rabbitmq_url,
                                        "TASKPROC_ENV": "development"})


async def test_orphans_are_the_retired_types_queues_with_their_depth(
    admin: BrokerAdminSettings,
) -> None:
    await publish(admin.rabbitmq_url, names.task_exchange(RETIRED))

    found = by_name(await orphan_queues(admin, task_type_names()))

    assert set(found) == RETIRED_QUEUES
    assert found[names.task_queue(RETIRED)].messages == 1
    assert found[names.dead_queue(RETIRED)].messages == 0
    assert {queue.task_type for queue in found.values()} == {RETIRED}
    listed = await taskproc(admin, "orphans")
    assert listed.exit_code == 0, listed.output
    line = next(row for row in listed.stdout.splitlines()
                if row.startswith(names.task_queue(RETIRED) + " "))
    assert line.split() == [names.task_queue(RETIRED), RETIRED, "1", "0"]
    assert "7 queue(s)" in listed.stderr


async def test_a_queue_with_messages_is_refused_and_keeps_them(
    admin: BrokerAdminSettings,
) -> None:
    await publish(admin.rabbitmq_url, names.task_exchange(RETIRED))

    with pytest.raises(DeleteRefused, match="holds 1 message"):
        await delete_orphan(admin, names.task_queue(RETIRED), task_type_names())

    assert await depth(admin.rabbitmq_url, names.task_queue(RETIRED)) == 1
    async with management(admin.rabbitmq_management_url, admin.rabbitmq_url) as api:
        # The policy that closed it for the check is gone with the refusal.
        policies = await api.policies(vhost_of(admin.rabbitmq_url))
    assert not [policy for policy in policies if policy["name"].startswith("taskproc-closing-")]
    refused = await taskproc(admin, "delete-orphan", names.task_queue(RETIRED))
    assert refused.exit_code == 1
    assert "holds 1 message" in refused.output


@pytest.mark.parametrize("queue", [names.task_queue("sleep"), names.dead_queue("webhook"),
                                   names.PROJECTOR_EVENTS_QUEUE, names.QUARANTINE_QUEUE,
                                   "billing.task-outcomes"])
async def test_a_queue_the_service_or_a_registered_type_owns_is_refused(
    admin: BrokerAdminSettings, queue: str,
) -> None:
    with pytest.raises(DeleteRefused):
        await delete_orphan(admin, queue, task_type_names())

    if queue != "billing.task-outcomes":
        assert await depth(admin.rabbitmq_url, queue) == 0  # still there


async def test_an_empty_orphan_is_deleted(admin: BrokerAdminSettings) -> None:
    deleted = await taskproc(admin, "delete-orphan", names.dead_queue(RETIRED))

    assert deleted.exit_code == 0, deleted.output
    assert set(by_name(await orphan_queues(admin, task_type_names()))) == (
        RETIRED_QUEUES - {names.dead_queue(RETIRED)})


async def test_a_work_queue_whose_retries_wait_is_refused(admin: BrokerAdminSettings) -> None:
    await publish(admin.rabbitmq_url, "", names.retry_queue(RETIRED, 600))

    with pytest.raises(DeleteRefused, match=r"retry\.600s holds 1"):
        await delete_orphan(admin, names.task_queue(RETIRED), task_type_names())

    assert names.task_queue(RETIRED) in by_name(await orphan_queues(admin, task_type_names()))


async def test_an_empty_classic_orphan_is_deleted_and_a_full_one_refused(
    admin: BrokerAdminSettings,
) -> None:
    connection = await aio_pika.connect(admin.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        for queue in ("tasks.retired.retry.7s", "tasks.retired.retry.9s"):
            await channel.declare_queue(queue, durable=True)
    await publish(admin.rabbitmq_url, "", "tasks.retired.retry.9s")

    await delete_orphan(admin, "tasks.retired.retry.7s", task_type_names())
    with pytest.raises(DeleteRefused):
        await delete_orphan(admin, "tasks.retired.retry.9s", task_type_names())

    found = by_name(await orphan_queues(admin, task_type_names()))
    assert "tasks.retired.retry.7s" not in found
    assert found["tasks.retired.retry.9s"].messages == 1
