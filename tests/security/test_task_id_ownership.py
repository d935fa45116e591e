"""A task id belongs to one tenant, on real servers: two outside publishers, each a RabbitMQ user
of its own mapped to its tenant (RABBITMQ_TENANTS), publish under the same ids. Whatever one of
them sends, the other's task keeps its tenant, status, run and result; the intruder's message is
quarantined as `rejected` with the reason, never run under the owner's id."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from contracts import names
from contracts.projection import TaskState
from contracts.statuses import Status
from contracts.workflows import workflow_label
from infra.mongodb.task_store import TaskStore
from infra.runtime.settings.system import SystemSettings
from service.queries import TaskQuery
from taskproc.tasks.sleep import SLEEP
from tests.support.amqp import take_matching
from tests.support.runtime import Runtime, worker_and_projector
from tests.support.services import Backends, rabbitmqctl
from tests.support.waiting import eventually


@dataclass(frozen=True)
class Publishers:
    """The AMQP URLs of tenant A's and tenant B's outside publishers."""

    a: str
    b: str


@pytest.fixture(scope="module")
def publishers(services: Backends) -> Iterator[Publishers]:
    """Two RabbitMQ users that may only write to the `tasks.*` exchanges of the session's vhost."""
    if not services.local_broker:
        pytest.skip("needs rabbitmqctl on the local broker to add users")
    suffix = uuid.uuid4().hex[:8]
    # Hex: a urlsafe password may start with "-", which rabbitmqctl takes for an option.
    users = {f"owner-a-{suffix}": secrets.token_hex(12),
             f"owner-b-{suffix}": secrets.token_hex(12)}
    for user, password in users.items():
        rabbitmqctl("add_user", user, password)
        rabbitmqctl("set_permissions", "-p", services.vhost, user, "^$", r"^tasks\..*", "^$")
    parts = urlsplit(services.rabbitmq_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    urls = [urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password)}@{host}"))
            for user, password in users.items()]
    try:
        yield Publishers(*urls)
    finally:
        for user in users:
            rabbitmqctl("delete_user", user)


def user_of(url: str) -> str:
    return urlsplit(url).username or ""


@pytest.fixture(scope="module")
async def runtime(settings: SystemSettings, publishers: Publishers) -> AsyncIterator[Runtime]:
    # The production rules: a message whose user_id is neither a service user (guest, here) nor
    # a mapped publisher is refused.
    mapped = settings.model_copy(update={"taskproc_env": "production", "rabbitmq_tenants": {
        user_of(publishers.a): "tenant-a", user_of(publishers.b): "tenant-b"}})
    async with worker_and_projector(mapped, SLEEP, name="ownership") as running:
        yield running


async def publish(url: str, task_id: str, body: dict[str, Any] | bytes,
                  headers: dict[str, Any] | None = None, *, named: bool = True) -> None:
    """Publish as an outside service does: its own user, named in `user_id` (unless not
    `named`), confirmed."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(names.task_exchange("sleep"), ensure=False)
        await exchange.publish(aio_pika.Message(
            raw, message_id=task_id, user_id=user_of(url) if named else None,
            headers=headers or {},
            content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ), routing_key="sleep")


def later() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


async def state_with(store: TaskStore, task_id: str, status: Status) -> TaskState | None:
    state = await store.get(task_id)
    return state if state is not None and state.status is status else None


async def quarantined(settings: SystemSettings, task_id: str) -> AbstractIncomingMessage | None:
    """Take this task id's message out of `tasks.quarantine`; put every other one back."""
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        found = await take_matching(await connection.channel(), names.QUARANTINE_QUEUE,
                                    lambda message: message.message_id == task_id)
        return found[0] if found else None


def reason_of(message: AbstractIncomingMessage) -> str:
    reason = message.headers.get(names.HEADER_QUARANTINE_REASON)
    return reason.decode() if isinstance(reason, bytes) else str(reason)


async def test_claim_first_the_later_tenants_message_is_refused_not_run_in_the_claim(
    runtime: Runtime, settings: SystemSettings, publishers: Publishers,
) -> None:
    task_id = f"invoice-{uuid.uuid4().hex[:8]}"
    await publish(publishers.a, task_id, {"payload": {"seconds": 0}, "not_before": later()})
    await eventually(lambda: state_with(runtime.store, task_id, Status.QUEUED), timeout_s=30,
                     what="A's claim recorded")

    await publish(publishers.b, task_id, {"payload": {"seconds": 0.01}})

    refused = await eventually(lambda: quarantined(settings, task_id), timeout_s=30,
                               what="B's message quarantined")
    assert "belongs to another tenant" in reason_of(refused)
    state = await runtime.store.get(task_id)
    assert state is not None
    assert (state.tenant, state.status, state.result) == ("tenant-a", Status.QUEUED, None)


async def test_another_tenant_cannot_overwrite_a_finished_task_with_a_later_run(
    runtime: Runtime, settings: SystemSettings, publishers: Publishers,
) -> None:
    task_id = f"order-{uuid.uuid4().hex[:8]}"
    await publish(publishers.b, task_id, {"payload": {"seconds": 0.01}})
    done = await eventually(lambda: state_with(runtime.store, task_id, Status.SUCCEEDED),
                            timeout_s=30, what="B's task succeeded")

    await publish(publishers.a, task_id, {"payload": {"seconds": 0}},
                  headers={names.HEADER_RUN: 2, names.HEADER_ATTEMPT: 1})

    await eventually(lambda: quarantined(settings, task_id), timeout_s=30,
                     what="A's message quarantined")
    after = await runtime.store.get(task_id)
    assert after is not None
    assert (after.tenant, after.run, after.status, after.result) == (
        "tenant-b", 1, Status.SUCCEEDED, done.result)


@pytest.mark.parametrize("body", [
    b'{"payload": {"seconds": "not a number"}}',
    b"{not json",
], ids=["invalid-payload", "not-json"])
async def test_another_tenants_invalid_message_does_not_reject_a_waiting_task(
    body: bytes, runtime: Runtime, settings: SystemSettings, publishers: Publishers,
) -> None:
    task_id = f"waiting-{uuid.uuid4().hex[:8]}"
    await publish(publishers.b, task_id, {"payload": {"seconds": 0}, "not_before": later()})
    await eventually(lambda: state_with(runtime.store, task_id, Status.QUEUED), timeout_s=30,
                     what="B's task waiting")

    await publish(publishers.a, task_id, body)

    await eventually(lambda: quarantined(settings, task_id), timeout_s=30,
                     what="A's message quarantined")
    state = await runtime.store.get(task_id)
    assert state is not None
    assert (state.tenant, state.status, state.error) == ("tenant-b", Status.QUEUED, None)


async def test_an_outside_publishers_run_and_attempt_headers_are_ignored(
    runtime: Runtime, publishers: Publishers,
) -> None:
    task_id = f"headers-{uuid.uuid4().hex[:8]}"

    await publish(publishers.b, task_id, {"payload": {"seconds": 0}},
                  headers={names.HEADER_RUN: 7, names.HEADER_ATTEMPT: 3,
                           names.HEADER_SOURCE: "http"})

    done = await eventually(lambda: state_with(runtime.store, task_id, Status.SUCCEEDED),
                            timeout_s=30, what="the task succeeded")
    assert (done.run, done.attempt, done.source, done.tenant) == (1, 1, "amqp", "tenant-b")


async def test_an_unknown_publishers_message_does_not_reject_a_waiting_task(
    runtime: Runtime, settings: SystemSettings, publishers: Publishers,
) -> None:
    task_id = f"waiting-{uuid.uuid4().hex[:8]}"
    await publish(publishers.b, task_id, {"payload": {"seconds": 0}, "not_before": later()})
    await eventually(lambda: state_with(runtime.store, task_id, Status.QUEUED), timeout_s=30,
                     what="B's task waiting")

    # A valid body, but no user_id: no tenant mapping at all.
    await publish(publishers.a, task_id, {"payload": {"seconds": 0}}, named=False)

    refused = await eventually(lambda: quarantined(settings, task_id), timeout_s=30,
                               what="the unknown publisher's message quarantined")
    assert "publisher not authenticated" in reason_of(refused)
    state = await runtime.store.get(task_id)
    assert state is not None
    assert (state.tenant, state.status, state.error) == ("tenant-b", Status.QUEUED, None)


async def test_a_workflows_next_step_cannot_be_claimed_from_its_parents_id(
    runtime: Runtime, publishers: Publishers,
) -> None:
    # A webhook step hands its id to a third party (X-Task-Id). Follow-up ids used to be
    # uuid5(namespace, "<parent>/then/<n>"): the third party could claim the next step first.
    parent = f"step-{uuid.uuid4().hex[:8]}"
    predicted = str(uuid.uuid5(uuid.UUID("0b6f2c44-93d1-4e0a-8f5e-7a1c2d3e4f50"),
                               f"{parent}/then/0"))
    await publish(publishers.a, predicted, {"payload": {"seconds": 0}, "not_before": later()})
    await eventually(lambda: state_with(runtime.store, predicted, Status.QUEUED), timeout_s=30,
                     what="A's claim of the predicted id")

    await publish(publishers.b, parent, {"payload": {"seconds": 0},
                                         "then": [{"task_type": "sleep",
                                                   "payload": {"seconds": 0}}]})

    async def next_step_done() -> list[TaskState] | None:
        # A direct publish's first step carries no label; its follow-ups carry workflow=<it>.
        page = await runtime.store.find(TaskQuery(owners=("tenant-b",),
                                                  labels=(workflow_label(parent),)))
        done = [state for state in page.items if state.status is Status.SUCCEEDED]
        return done or None

    [step] = await eventually(next_step_done, timeout_s=30, what="B's next step succeeded")
    assert step.task_id != predicted
    claim = await runtime.store.get(predicted)
    assert claim is not None
    assert (claim.tenant, claim.status, claim.result) == ("tenant-a", Status.QUEUED, None)
