"""Queues no registered task type owns, as an operator removing a type finds them: listed with
their depth, and deleted one at a time, by name, only when empty.

Nothing deletes them by itself: a type missing from one process's registry may be a rolling
deploy, not a removal, and its queue may hold tasks that are waiting for a worker.

Empty is checked by RabbitMQ where it can: a classic queue is deleted with `if-empty`. Quorum
queues refuse `if-empty` (RabbitMQ 3.10: NOT_IMPLEMENTED, closing the connection), so one is first
closed to new messages by a policy of its own (`max-length` 0, `reject-publish`: a publisher gets a
nack, nothing accepted is dropped, what is in the queue stays), then checked (no consumer, no
message) and deleted; the policy goes with it. A work queue is not deleted while its delay queues
hold retries: they would come back to a queue that is gone.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import ChannelClosed, ChannelNotFoundEntity

from contracts import names
from infra.rabbitmq.management import Management, management
from infra.rabbitmq.nodes import connect_first, vhost_of
from infra.runtime.settings.connections import QueueLimitSettings

# Above the queue length policies (priority 10): only one policy applies to a queue.
_CLOSING_PRIORITY = 1000
_CLOSING_POLICY_PREFIX = "taskproc-closing-"


@dataclass(frozen=True)
class QueueSeen:
    """A queue on the vhost. `messages` is None where it could not be read now (a queue
    exclusive to a running worker: RabbitMQ shows its depth to that worker alone)."""

    name: str
    task_type: str | None
    kind: str
    messages: int | None
    consumers: int
    exclusive: bool


class DeleteRefused(Exception):
    """The queue was not deleted; the message says why."""


def is_orphan(queue: str, registered: Collection[str]) -> bool:
    """Whether `queue` is a name the service makes that neither the service nor a registered
    type owns (a removed type's queues; a delay tier no longer in use)."""
    if not names.in_service_namespace(queue) or queue in names.SERVICE_QUEUES:
        return False
    task_type = names.task_type_of_queue(queue)
    return task_type is None or task_type not in registered


def refusal(queue: str, registered: Collection[str]) -> str | None:
    """Why `queue` may not be deleted as an orphan, by its name alone; None if it may be."""
    if not names.in_service_namespace(queue):
        return f"{queue} is not a queue taskproc makes: it is not taskproc's to delete"
    if queue in names.SERVICE_QUEUES:
        return f"{queue} is the service's own queue, whatever types are registered"
    task_type = names.task_type_of_queue(queue)
    if task_type is not None and task_type in registered:
        return f"{queue} belongs to the registered task type {task_type}"
    return None


async def orphan_queues(settings: QueueLimitSettings,
                        registered: Collection[str]) -> list[QueueSeen]:
    """The vhost's orphan queues (RABBITMQ_URL's vhost), by name, with their depth now."""
    vhost = vhost_of(settings.rabbitmq_url)
    async with _management(settings) as api:
        listed = await api.queues(vhost)
    found = []
    async with _connection(settings) as connection:
        for queue in sorted(listed, key=lambda queue: str(queue["name"])):
            name = str(queue["name"])
            if not is_orphan(name, registered):
                continue
            exclusive = bool(queue.get("exclusive"))
            messages = None if exclusive else await _depth(connection, name)
            found.append(QueueSeen(name, names.task_type_of_queue(name),
                                   str(queue.get("type", "classic")), messages,
                                   int(queue.get("consumers") or 0), exclusive))
    return found


async def delete_orphan(settings: QueueLimitSettings, queue: str,
                        registered: Collection[str]) -> None:
    """Delete the orphan queue `queue` if it is empty and nothing consumes it; DeleteRefused
    otherwise (nothing is changed then)."""
    reason = refusal(queue, registered)
    if reason is not None:
        raise DeleteRefused(reason)
    vhost = vhost_of(settings.rabbitmq_url)
    async with _management(settings) as api:
        seen = {str(found["name"]): found for found in await api.queues(vhost)}
        if queue not in seen:
            raise DeleteRefused(f"{queue}: no such queue on vhost {vhost}")
        if seen[queue].get("exclusive"):
            raise DeleteRefused(f"{queue} belongs to a running worker (exclusive): it goes "
                                "away when that worker stops")
        async with _connection(settings) as connection:
            await _refuse_waiting_retries(connection, queue, seen)
            if seen[queue].get("type") != "quorum":
                await _delete_classic(connection, queue)
                return
            policy = _CLOSING_POLICY_PREFIX + queue
            await api.put_policy(vhost, policy, {
                "pattern": f"^{re.escape(queue)}$", "apply-to": "queues",
                "priority": _CLOSING_PRIORITY,
                "definition": {"max-length": 0, "overflow": "reject-publish"}})
            try:
                await _delete_closed(connection, queue)
            finally:
                await api.delete_policy(vhost, policy)


async def _refuse_waiting_retries(connection: AbstractConnection, queue: str,
                                  seen: Collection[str]) -> None:
    task_type = names.task_type_of_queue(queue)
    if task_type is None or queue != names.task_queue(task_type):
        return
    for tier in names.RETRY_TIERS_S:
        retries = names.retry_queue(task_type, tier)
        waiting = await _depth(connection, retries) if retries in seen else 0
        if waiting:
            raise DeleteRefused(f"{queue}: {retries} holds {waiting} retry(ies) that come back "
                                f"to it; empty or delete {retries} first")


async def _delete_classic(connection: AbstractConnection, queue: str) -> None:
    channel = await connection.channel()
    try:
        # Both, as the quorum path checks: a consumer may still be draining it.
        await channel.queue_delete(queue, if_empty=True, if_unused=True)
    except ChannelClosed as error:
        raise DeleteRefused(f"{queue} was not deleted: {error}") from error


async def _delete_closed(connection: AbstractConnection, queue: str) -> None:
    """Delete a queue closed to new messages, if it holds none and has no consumer."""
    channel = await connection.channel()
    declared = (await channel.declare_queue(queue, passive=True)).declaration_result
    if declared.consumer_count:
        raise DeleteRefused(f"{queue} has {declared.consumer_count} consumer(s): stop them "
                            "first")
    if declared.message_count:
        raise DeleteRefused(f"{queue} holds {declared.message_count} message(s): move, replay "
                            "or drain them first; it was not deleted")
    await channel.queue_delete(queue)


async def _depth(connection: AbstractConnection, queue: str) -> int | None:
    """Messages ready in `queue` now (a passive declare); None if it is gone."""
    async with await connection.channel() as channel:
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except ChannelNotFoundEntity:
            return None
        return declared.declaration_result.message_count or 0


@asynccontextmanager
async def _connection(settings: QueueLimitSettings) -> AsyncIterator[AbstractConnection]:
    connection = await connect_first(settings.rabbitmq_url)
    async with connection:
        yield connection


def _management(settings: QueueLimitSettings) -> AbstractAsyncContextManager[Management]:
    return management(settings.rabbitmq_management_url, settings.rabbitmq_url,
                      ca_file=settings.rabbitmq_management_ca_file)
