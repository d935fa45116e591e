"""RabbitMQ users and tenants on the real broker: `taskproc rabbitmq setup` makes a vhost and one
user per role; the system runs in production as those users; an outside publisher's tasks are
its tenant's, whatever header it sends; RabbitMQ refuses a forged user_id; a task without one is
rejected; guest is refused outside development.

Users are global to a broker: each run makes them under a prefix of its own and deletes them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aiormq.exceptions import ChannelAccessRefused, ChannelClosed

from contracts import names
from contracts.registry import task_type_names
from infra.rabbitmq.layout import gateway_user, parse_publisher, projector_user, worker_user
from infra.rabbitmq.management import management
from infra.rabbitmq.setup import EVERYTHING, SetupReport, process_environment, setup, url_for
from infra.runtime.settings.system import SystemSettings
from tests.e2e.conftest import assert_clean_exits, stop_all, system_env
from tests.support import processes
from tests.support.amqp import take_matching
from tests.support.keys import bearer, issue_key
from tests.support.processes import PROJECTOR_QUEUES, ServiceProcess
from tests.support.rabbitmq_admin import delete_layout
from tests.support.readiness import wait_for_consumers, wait_for_http
from tests.support.receivers import SmtpSink
from tests.support.services import Backends, free_port, missing
from tests.support.waiting import eventually

TYPES = task_type_names()
SLEEP_BODY = json.dumps({"payload": {"seconds": 0}}).encode()


@dataclass(frozen=True)
class Layout:
    vhost: str
    prefix: str
    publisher: str
    admin_url: str
    urls: dict[str, str]  # user -> its AMQP URL, from the credentials file
    first: SetupReport
    settings: SystemSettings

    def url(self, user: str) -> str:
        return self.urls[user]


def _read_credentials(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


@pytest.fixture(scope="module")
async def layout(services: Backends, tmp_path_factory: pytest.TempPathFactory
                 ) -> AsyncIterator[Layout]:
    if not services.local_broker:
        missing("a local RabbitMQ with its management API")
    run = uuid.uuid4().hex[:8]
    vhost, prefix, publisher = f"taskproc-sec-{run}", f"t{run}-", f"billing-{run}"
    admin = SystemSettings(rabbitmq_url=services.rabbitmq_url, taskproc_env="development")
    credentials = tmp_path_factory.mktemp("rabbitmq") / "credentials.env"
    chosen = [parse_publisher(f"{publisher}=billing:sleep", TYPES, prefix)]
    users = [gateway_user(prefix), projector_user(prefix), publisher,
             *(worker_user(t, prefix) for t in TYPES)]
    try:
        first = await setup(admin, vhost=vhost, publishers=chosen, credentials_file=credentials,
                            user_prefix=prefix)
        await watch_as_guest(admin, vhost)
        yield Layout(vhost, prefix, publisher,
                     url_for(services.rabbitmq_url, "guest", "guest", vhost),
                     _read_credentials(credentials), first, admin)
    finally:
        await delete_layout(admin, users, vhost)


async def watch_as_guest(admin: SystemSettings, vhost: str) -> None:
    """Setup leaves guest nothing on the vhost (test_production_recipe.py checks it); these tests
    watch it as guest (taps on task-events, consumer counts), as an operator would after
    granting themselves read."""
    async with management(admin.rabbitmq_management_url, admin.rabbitmq_url) as api:
        await api.put_permissions(vhost, "guest", EVERYTHING)


# --- setup ---------------------------------------------------------------------------------

async def test_setup_writes_the_credentials_once_readable_by_its_owner_only(
    layout: Layout, tmp_path: Path,
) -> None:
    assert sorted(layout.first.created) == sorted(layout.urls)
    # gateway, projector, scheduler, one worker per type, the publisher
    assert len(layout.urls) == 3 + len(TYPES) + 1
    passwords = {url.split(":")[2].split("@")[0] for url in layout.urls.values()}
    assert len(passwords) == len(layout.urls)  # each its own
    assert "password" not in json.dumps(layout.first.definitions).replace("password_hash", "")


async def test_a_second_setup_changes_nothing(layout: Layout, tmp_path: Path) -> None:
    credentials = tmp_path / "again.env"
    again = await setup(
        layout.settings, vhost=layout.vhost, credentials_file=credentials,
        publishers=[parse_publisher(f"{layout.publisher}=billing:sleep", TYPES, layout.prefix)],
        user_prefix=layout.prefix)
    await watch_as_guest(layout.settings, layout.vhost)  # setup took it back again

    assert (again.created, again.changed_permissions) == ([], [])
    assert again.definitions == layout.first.definitions  # same hashes: same passwords
    assert not credentials.exists()
    connection = await aio_pika.connect(layout.url(layout.publisher))  # old password still works
    await connection.close()


async def publish(url: str, exchange: str, body: bytes = SLEEP_BODY, **properties: Any) -> None:
    """Publish with confirms; raises what RabbitMQ answers (ChannelAccessRefused, ...)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = (channel.default_exchange if exchange == ""
                  else await channel.get_exchange(exchange, ensure=False))
        await target.publish(aio_pika.Message(body, **properties), routing_key="x", timeout=10)


async def consume_one(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        found = await channel.declare_queue(queue, passive=True)
        await found.get(fail=False, no_ack=False, timeout=10)


async def test_an_outside_publisher_writes_only_to_its_task_exchanges(layout: Layout) -> None:
    url = layout.url(layout.publisher)

    await publish(url, names.task_exchange("sleep"), message_id=f"ok-{uuid.uuid4()}",
                  user_id=layout.publisher)
    for forbidden in (names.EVENTS_EXCHANGE, names.task_exchange("webhook"), ""):
        with pytest.raises(ChannelAccessRefused):
            await publish(url, forbidden)
    for queue in (names.task_queue("sleep"), names.QUARANTINE_QUEUE,
                  names.PROJECTOR_SUBMISSIONS_QUEUE):
        with pytest.raises(ChannelAccessRefused):
            await consume_one(url, queue)


async def test_a_worker_consumes_only_its_own_queue(layout: Layout) -> None:
    url = layout.url(worker_user("sleep", layout.prefix))

    await consume_one(url, names.task_queue("sleep"))
    for queue in (names.task_queue("webhook"), names.PROJECTOR_EVENTS_QUEUE,
                  names.dead_queue("sleep")):
        with pytest.raises(ChannelAccessRefused):
            await consume_one(url, queue)
    with pytest.raises(ChannelAccessRefused):  # no configure: it cannot declare or delete
        await declare_queue(url, f"mine-{uuid.uuid4()}")


async def declare_queue(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        await (await connection.channel()).declare_queue(queue)


async def test_rabbitmq_refuses_a_user_id_that_is_not_the_connections(layout: Layout) -> None:
    with pytest.raises(ChannelClosed, match="user_id property set to"):
        await publish(layout.url(layout.publisher), names.task_exchange("sleep"),
                      user_id=gateway_user(layout.prefix))


# --- the system in production as these users ------------------------------------------------

@dataclass(frozen=True)
class System:
    url: str
    settings: SystemSettings


def _start(process: ServiceProcess, admin_url: str, queues: dict[str, int]) -> ServiceProcess:
    try:
        wait_for_consumers(process, admin_url, queues)
    except BaseException:
        process.kill()
        raise
    return process


@pytest.fixture(scope="module")
async def system(layout: Layout, services: Backends, smtp_sink: SmtpSink, log_dir: Path,
                 settings: SystemSettings) -> AsyncIterator[System]:
    folder = log_dir / "security-rabbitmq-users"
    folder.mkdir(exist_ok=True)
    chosen = [parse_publisher(f"{layout.publisher}=billing:sleep", TYPES, layout.prefix)]
    production = process_environment(chosen, TYPES, layout.prefix)

    def env(user: str) -> dict[str, str]:
        return system_env(services, smtp_sink, RABBITMQ_URL=layout.url(user), **production)

    started: list[ServiceProcess] = []
    try:
        started.append(_start(ServiceProcess(
            "projector", ["-m", "projector"], env(projector_user(layout.prefix)), folder).start(),
            layout.admin_url, dict.fromkeys(PROJECTOR_QUEUES, 1)))
        started.append(_start(ServiceProcess(
            "sleep-worker", ["-m", "consumers", "worker", "sleep"],
            env(worker_user("sleep", layout.prefix)), folder).start(),
            layout.admin_url, {names.task_queue("sleep"): 1}))
        port = free_port()
        gateway = ServiceProcess("gateway", ["-m", "gateway"],
                                 {**env(gateway_user(layout.prefix)), "GATEWAY_PORT": str(port)},
                                 folder).start()
        started.append(gateway)
        wait_for_http(gateway, f"http://127.0.0.1:{port}", "/health/ready")
        yield System(f"http://127.0.0.1:{port}", settings)
    finally:
        codes = stop_all(started)
    assert_clean_exits(codes, folder)


async def view(system: System, key: str, task_id: str, status: str | None = None
               ) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=system.url, timeout=10, headers=bearer(key)) as client:
        async def probe() -> dict[str, Any] | None:
            answer = await client.get(f"/tasks/{task_id}")
            if answer.status_code != 200:
                return None
            found: dict[str, Any] = answer.json()
            return found if status is None or found["status"] == status else None

        return await eventually(probe, timeout_s=30, what=f"task {task_id} {status}")


async def keys(system: System, *tenants: str) -> list[str]:
    database = system.settings.mongodb_url, system.settings.mongodb_database
    return [await issue_key(*database, tenant=tenant) for tenant in tenants]


async def test_a_mapped_publishers_task_is_its_tenants_whatever_header_it_sends(
    layout: Layout, system: System,
) -> None:
    billing, other = await keys(system, "billing", "someone-else")
    plain, forged = f"plain-{uuid.uuid4()}", f"forged-{uuid.uuid4()}"

    await publish(layout.url(layout.publisher), names.task_exchange("sleep"),
                  message_id=plain, user_id=layout.publisher)
    await publish(layout.url(layout.publisher), names.task_exchange("sleep"),
                  message_id=forged, user_id=layout.publisher,
                  headers={names.HEADER_TENANT: "someone-else"})
    done = [await view(system, billing, task_id, "succeeded") for task_id in (plain, forged)]
    async with httpx.AsyncClient(base_url=system.url, timeout=10, headers=bearer(other)) as c:
        hidden = [(await c.get(f"/tasks/{task_id}")).status_code for task_id in (plain, forged)]

    assert [task["source"] for task in done] == ["amqp", "amqp"]
    assert hidden == [404, 404]


async def test_a_publishers_task_keeps_its_tenant_through_retries_and_its_dead_letter(
    layout: Layout, system: System,
) -> None:
    (billing,) = await keys(system, "billing")
    task_id = f"retried-{uuid.uuid4()}"
    connection = await aio_pika.connect(layout.admin_url)
    async with connection:
        tap = await (await connection.channel()).declare_queue(exclusive=True)
        await tap.bind(names.EVENTS_EXCHANGE, "sleep.#")
        # Each attempt times out: retried once (as the worker's user), then failed and
        # dead-lettered; every copy must still be billing's.
        await publish(layout.url(layout.publisher), names.task_exchange("sleep"),
                      json.dumps({"payload": {"seconds": 3}, "timeout_s": 0.2,
                                  "max_attempts": 2, "retry_base_s": 0.5}).encode(),
                      message_id=task_id, user_id=layout.publisher)
        failed = await view(system, billing, task_id, "failed")
        events = []
        while (message := await tap.get(no_ack=True, fail=False, timeout=5)) is not None:
            event = json.loads(message.body)
            # Status events only: progress events share the exchange.
            if event["task_id"] == task_id and "status" in event:
                events.append((event["status"], event["attempt"], event.get("tenant")))

    assert [step["status"] for step in failed["history"]] == [
        "queued", "running", "retrying", "running", "failed"]
    assert events == [("running", 1, "billing"), ("retrying", 1, "billing"),
                      ("running", 2, "billing"), ("failed", 2, "billing")]


async def test_in_production_a_task_without_user_id_is_rejected(
    layout: Layout, system: System,
) -> None:
    (default,) = await keys(system, system.settings.default_tenant)
    task_id = f"anonymous-{uuid.uuid4()}"

    await publish(layout.url(layout.publisher), names.task_exchange("sleep"), message_id=task_id)
    rejected = await view(system, default, task_id, "rejected")

    assert "publisher not authenticated" in rejected["error"]["message"]
    assert "no user_id" in rejected["error"]["message"]


async def test_a_task_submitted_over_http_is_its_keys_tenant(system: System) -> None:
    acme, other = await keys(system, "acme", "someone-else")
    async with httpx.AsyncClient(base_url=system.url, timeout=10, headers=bearer(acme)) as c:
        accepted = await c.post("/tasks", json={"task_type": "sleep",
                                                "payload": {"seconds": 0}})
    task_id = accepted.json()["task_id"]
    await view(system, acme, task_id, "succeeded")
    async with httpx.AsyncClient(base_url=system.url, timeout=10, headers=bearer(other)) as c:
        hidden = await c.get(f"/tasks/{task_id}")

    assert accepted.status_code == 202
    assert hidden.status_code == 404


# --- guest ----------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [["consumers", "worker", "sleep"], ["projector"], ["gateway"]])
def test_guest_is_refused_outside_development(services: Backends, module: list[str]) -> None:
    env = {**processes.process_env(services), "TASKPROC_ENV": "production",
           "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/"}

    done = subprocess.run([sys.executable, "-m", *module], env=env, capture_output=True,
                          text=True, timeout=60, check=False)

    assert done.returncode != 0
    assert "RABBITMQ_URL uses RabbitMQ's guest/guest account" in done.stderr
    assert "TASKPROC_ENV=development" in done.stderr


# --- least privilege: what a publisher's workflow and a worker's user may do ----------------

async def test_a_publishers_workflow_is_held_to_its_task_types(
    layout: Layout, system: System,
) -> None:
    # billing may publish sleep only: nor may a workflow it starts make a send_email task.
    (billing,) = await keys(system, "billing")
    task_id = f"escape-{uuid.uuid4()}"
    body = {"payload": {"seconds": 0}, "then": [
        {"task_type": "send_email", "payload": {"to": "a@example.com", "subject": "s",
                                                "body": "b"}}]}

    await publish(layout.url(layout.publisher), names.task_exchange("sleep"),
                  json.dumps(body).encode(), message_id=task_id, user_id=layout.publisher)
    rejected = await view(system, billing, task_id, "rejected")

    assert "are not among those its publisher may submit (sleep)" in rejected["error"]["message"]
    connection = await aio_pika.connect(layout.admin_url)
    async with connection:
        queue = await (await connection.channel()).declare_queue(
            names.task_queue("send_email"), passive=True)
        assert queue.declaration_result.message_count == 0


async def test_a_worker_reports_only_its_own_types_events(layout: Layout) -> None:
    url = layout.url(worker_user("sleep", layout.prefix))
    forged = json.dumps({"task_id": "someone-elses", "task_type": "webhook", "status": "succeeded",
                         "attempt": 1, "worker": "forger", "tenant": "billing"}).encode()

    with pytest.raises(ChannelAccessRefused):
        await publish_as(url, names.EVENTS_EXCHANGE, "webhook.succeeded", forged)
    await publish_as(url, names.EVENTS_EXCHANGE, "sleep.progress", b"{}")  # its own: allowed


async def test_a_worker_cannot_submit_tasks_of_other_types_or_write_to_any_queue(
    layout: Layout,
) -> None:
    url = layout.url(worker_user("sleep", layout.prefix))

    for exchange, routing_key in ((names.task_exchange("send_email"), "send_email"),
                                  (names.task_exchange("sleep"), "sleep"),
                                  ("", names.task_queue("webhook")),
                                  (names.FOLLOW_UPS_EXCHANGE, "webhook.send_email")):
        with pytest.raises(ChannelAccessRefused):
            await publish_as(url, exchange, routing_key, SLEEP_BODY,
                             headers={names.HEADER_TENANT: "billing"})


async def test_a_follow_up_of_a_task_its_tenant_does_not_own_is_refused(
    layout: Layout, system: System,
) -> None:
    # As the sleep worker's user, a follow-up for tenant someone-else whose parent is billing's.
    billing, other = await keys(system, "billing", "someone-else")
    parent = f"parent-{uuid.uuid4()}"
    await publish(layout.url(layout.publisher), names.task_exchange("sleep"),
                  message_id=parent, user_id=layout.publisher)
    await view(system, billing, parent, "succeeded")
    child = f"child-{uuid.uuid4()}"

    await publish_as(layout.url(worker_user("sleep", layout.prefix)), names.FOLLOW_UPS_EXCHANGE,
                     "sleep.sleep", SLEEP_BODY, message_id=child,
                     user_id=worker_user("sleep", layout.prefix),
                     headers={names.HEADER_TENANT: "someone-else", names.HEADER_PARENT: parent})
    connection = await aio_pika.connect(layout.admin_url)
    async with connection:
        refused = await eventually(
            lambda: _quarantined(connection, child), timeout_s=30,
            what="the forged follow-up quarantined")
    async with httpx.AsyncClient(base_url=system.url, timeout=10, headers=bearer(other)) as c:
        hidden = await c.get(f"/tasks/{child}")

    assert "follow-up refused: its parent task" in str(
        refused.headers[names.HEADER_QUARANTINE_REASON])
    assert hidden.status_code == 404


async def _quarantined(connection: aio_pika.abc.AbstractConnection, task_id: str
                       ) -> aio_pika.abc.AbstractIncomingMessage | None:
    found = await take_matching(await connection.channel(), names.QUARANTINE_QUEUE,
                                lambda message: message.message_id == task_id)
    return found[0] if found else None


async def publish_as(url: str, exchange: str, routing_key: str, body: bytes,
                     **properties: Any) -> None:
    """Publish with confirms and this routing key; raises what RabbitMQ answers."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = (channel.default_exchange if exchange == ""
                  else await channel.get_exchange(exchange, ensure=False))
        await target.publish(aio_pika.Message(body, **properties), routing_key=routing_key,
                             timeout=10)
