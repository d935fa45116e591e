"""One round trip on the real processes: a gateway, a `sleep` worker and the projector on a
vhost of their own, RabbitMQ and MongoDB for real, the key from a fixture. The tenant travels
with the message and its events; a revoked key is refused within the cache window."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from cli.keys import keys_revoke
from contracts import names
from infra.runtime.settings.system import SystemSettings
from service.auth import key_id_of
from tests.e2e.conftest import assert_clean_exits, stop_all, system_env
from tests.support import processes
from tests.support.keys import TEST_TENANT, bearer, issue_key, keys_verb_settings
from tests.support.receivers import SmtpSink
from tests.support.services import Backends, free_port, local_vhost, missing
from tests.support.waiting import eventually

SLEEP = {"task_type": "sleep", "payload": {"seconds": 0}}


@dataclass(frozen=True)
class Running:
    url: str
    rabbitmq_url: str
    settings: SystemSettings


@pytest.fixture(scope="module")
async def running(
    services: Backends, smtp_sink: SmtpSink, log_dir: Path, settings: SystemSettings,
) -> AsyncIterator[Running]:
    if not services.local_broker:
        missing("a local RabbitMQ that rabbitmqctl controls")
    folder = log_dir / "security-round-trip"
    folder.mkdir(exist_ok=True)
    with local_vhost() as (url, _):
        env = system_env(services, smtp_sink, RABBITMQ_URL=url)
        started = [processes.projector(env, folder), processes.worker("sleep", env, folder)]
        try:
            port = free_port()
            started.append(processes.gateway(env, folder, port))
            yield Running(f"http://127.0.0.1:{port}", url, settings)
        finally:
            codes = stop_all(started)
        assert_clean_exits(codes, folder)


async def wait_status(client: httpx.AsyncClient, task_id: str, status: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        answer = await client.get(f"/tasks/{task_id}")
        view: dict[str, Any] = answer.json()
        return view if answer.status_code == 200 and view["status"] == status else None

    return await eventually(probe, timeout_s=30, what=f"task {task_id} {status}")


async def events_of(queue: aio_pika.abc.AbstractQueue, task_id: str) -> list[dict[str, Any]]:
    found = []
    while (message := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
        event = json.loads(message.body)
        if event["task_id"] == task_id:
            found.append(event)
    return found


async def test_a_task_is_its_tenants_from_submission_to_success(running: Running) -> None:
    database = running.settings.mongodb_url, running.settings.mongodb_database
    own_key = await issue_key(*database, tenant=TEST_TENANT)
    other_key = await issue_key(*database, tenant="someone-else")
    connection = await aio_pika.connect(running.rabbitmq_url)
    channel = await connection.channel()
    # As another service listening for outcomes would: every status event of the vhost.
    tap = await channel.declare_queue(exclusive=True)
    await tap.bind(names.EVENTS_EXCHANGE, "#")
    async with connection, httpx.AsyncClient(base_url=running.url, timeout=10) as anonymous, \
            httpx.AsyncClient(base_url=running.url, timeout=10,
                              headers=bearer(own_key)) as owner, \
            httpx.AsyncClient(base_url=running.url, timeout=10,
                              headers=bearer(other_key)) as stranger:
        refused = await anonymous.post("/tasks", json=SLEEP)
        accepted = await owner.post("/tasks", json=SLEEP)
        task_id = accepted.json()["task_id"]
        done = await wait_status(owner, task_id, "succeeded")
        hidden = await stranger.get(f"/tasks/{task_id}")
        missing_answer = await stranger.get("/tasks/no-such-task")
        health = await anonymous.get("/health/ready")
        events = await events_of(tap, task_id)

    assert (refused.status_code, refused.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert accepted.status_code == 202
    assert [step["status"] for step in done["history"]] == ["queued", "running", "succeeded"]
    assert hidden.status_code == missing_answer.status_code == 404
    assert hidden.json() == {"detail": f"no task {task_id!r}"}
    assert health.status_code == 200
    # The worker's events name the tenant too (from the message's x-tenant header): its
    # `succeeded`, and a `running` if the attempt lasted long enough to publish one.
    assert [e["status"] for e in events if e["status"] != "running"] == ["succeeded"]
    assert {e.get("tenant") for e in events} == {TEST_TENANT}


async def test_a_task_published_straight_to_rabbitmq_is_the_default_tenants(
    running: Running,
) -> None:
    database = running.settings.mongodb_url, running.settings.mongodb_database
    default_key = await issue_key(*database, tenant=running.settings.default_tenant)
    tests_key = await issue_key(*database, tenant=TEST_TENANT)
    task_id = f"direct-{uuid.uuid4()}"
    connection = await aio_pika.connect(running.rabbitmq_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(names.task_exchange("sleep"), ensure=False)
        await exchange.publish(aio_pika.Message(json.dumps({"payload": {"seconds": 0}}).encode(),
                                                message_id=task_id), routing_key="")
    async with httpx.AsyncClient(base_url=running.url, timeout=10,
                                 headers=bearer(default_key)) as default, \
            httpx.AsyncClient(base_url=running.url, timeout=10,
                              headers=bearer(tests_key)) as tests_tenant:
        await wait_status(default, task_id, "succeeded")
        hidden = await tests_tenant.get(f"/tasks/{task_id}")

    assert running.settings.default_tenant != TEST_TENANT
    assert hidden.status_code == 404


async def test_a_revoked_key_is_refused_by_a_running_gateway_within_seconds(
    running: Running,
) -> None:
    key = await issue_key(running.settings.mongodb_url, running.settings.mongodb_database)
    key_id = key_id_of(key)
    assert key_id is not None
    async with httpx.AsyncClient(base_url=running.url, timeout=10,
                                 headers=bearer(key)) as client:
        assert (await client.get("/tasks/no-such-task")).status_code == 404  # now cached
        assert await keys_revoke(keys_verb_settings(running.settings), key_id,
                                 out=io.StringIO())
        revoked_at = time.monotonic()

        async def refused() -> bool:
            return (await client.get("/tasks/no-such-task")).status_code == 401

        await eventually(refused, timeout_s=10, interval_s=0.1,
                         what="the revoked key to be refused")
        took = time.monotonic() - revoked_at

    assert took <= running.settings.api_key_cache_s + 1.5, f"refused after {took:.1f}s"
