"""A gateway whose RabbitMQ or MongoDB is away: it answers 503 in time, records nothing, and
recovers by itself once the dependency is back.

Each gateway here has dependencies of its own (a private vhost and database, or a private
MongoDB-protocol server), so the outage touches nothing else."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import pytest
from pymongo import AsyncMongoClient

from contracts import names
from tests.e2e.conftest import assert_clean_exits, stop_all, system_env
from tests.support import processes
from tests.support.amqp import Queues
from tests.support.keys import bearer, issue_key
from tests.support.receivers import SmtpSink
from tests.support.services import (
    Backends,
    MongoServer,
    free_port,
    local_vhost,
    missing,
    rabbitmqctl,
)
from tests.support.waiting import eventually

PUBLISH_TIMEOUT_S = 3.0
SLEEP_TASK = {"task_type": "sleep", "payload": {"seconds": 0}}


@dataclass(frozen=True)
class IsolatedGateway:
    client: httpx.AsyncClient
    vhost: str
    rabbitmq_url: str
    mongodb_url: str
    database: str


@pytest.fixture(scope="module")
def private_vhost(services: Backends) -> Iterator[tuple[str, str]]:
    if not services.local_broker:
        missing("a local RabbitMQ that rabbitmqctl controls")
    with local_vhost() as (url, vhost):
        yield url, vhost


@pytest.fixture(scope="module")
async def isolated_gateway(
    services: Backends, smtp_sink: SmtpSink, private_vhost: tuple[str, str],
    module_log_dir: Path,
) -> AsyncIterator[IsolatedGateway]:
    """A gateway on a vhost and database no other process uses."""
    url, vhost = private_vhost
    database = f"{services.mongodb_database}_outage"
    env = system_env(services, smtp_sink, RABBITMQ_URL=url, MONGODB_DATABASE=database,
                     PUBLISH_TIMEOUT_S=str(PUBLISH_TIMEOUT_S))
    log_dir = module_log_dir / "isolated"
    log_dir.mkdir(exist_ok=True)
    gateway = processes.gateway(env, log_dir, port := free_port())
    try:
        key = await issue_key(services.mongodb_url, database)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                     headers=bearer(key)) as client:
            yield IsolatedGateway(client, vhost, url, services.mongodb_url, database)
    finally:
        codes = stop_all([gateway])
        mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(services.mongodb_url)
        async with mongo:
            await mongo.drop_database(database)
    assert_clean_exits(codes, log_dir)


async def queue_depth(rabbitmq_url: str, queue_name: str) -> int:
    """Messages ready in a queue, over a fresh connection (an outage closes older ones)."""
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        return await Queues(await connection.channel()).depth(queue_name)


async def recorded_task_ids(gateway: IsolatedGateway) -> list[str]:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(gateway.mongodb_url)
    async with client:
        documents = client[gateway.database]["tasks"].find({}, {"_id": 1})
        return [str(document["_id"]) async for document in documents]


def cut_rabbitmq(vhost: str) -> None:
    rabbitmqctl("clear_permissions", "-p", vhost, "guest")
    rabbitmqctl("close_all_connections", "--vhost", vhost, "e2e test: broker outage")


def restore_rabbitmq(vhost: str) -> None:
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")


async def test_without_rabbitmq_a_submit_is_a_prompt_503_and_the_gateway_recovers(
    isolated_gateway: IsolatedGateway,
) -> None:
    client = isolated_gateway.client
    assert (await client.get("/health/ready")).status_code == 200
    cut_rabbitmq(isolated_gateway.vhost)
    try:
        started = time.monotonic()
        refused = await client.post("/tasks", json=SLEEP_TASK)
        elapsed = time.monotonic() - started
    finally:
        restore_rabbitmq(isolated_gateway.vhost)

    assert refused.status_code == 503
    assert elapsed < PUBLISH_TIMEOUT_S + 2
    assert refused.headers["Retry-After"]
    assert "nothing was queued" in refused.json()["detail"]

    async def submit() -> httpx.Response | None:
        response = await client.post("/tasks", json=SLEEP_TASK)
        return response if response.status_code == 202 else None

    accepted = await eventually(submit, timeout_s=40, interval_s=0.5,
                                what="the same gateway to accept a task again")
    task_id = accepted.json()["task_id"]
    depth = await queue_depth(isolated_gateway.rabbitmq_url, names.task_queue("sleep"))
    assert depth == 1
    assert await recorded_task_ids(isolated_gateway) == [task_id]


async def test_readiness_follows_mongodb_while_health_stays_ok(
    services: Backends, smtp_sink: SmtpSink, module_log_dir: Path
) -> None:
    mongo = MongoServer()  # not started yet: nothing listens on its port
    log_dir = module_log_dir / "mongo-down"
    log_dir.mkdir(exist_ok=True)
    env = system_env(services, smtp_sink, MONGODB_URL=mongo.url, MONGODB_TIMEOUT_S="1",
                     MONGODB_DATABASE=f"taskproc_{uuid.uuid4().hex[:8]}")
    gateway = processes.gateway(env, log_dir, port := free_port(), ready=False)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            health = await client.get("/health")
            unready = await client.get("/health/ready")

            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            assert unready.status_code == 503
            assert unready.json()["status"] == "unavailable"
            assert unready.json()["rabbitmq"] == "ok"
            assert unready.json()["mongodb"] != "ok"

            mongo.start()

            async def ready() -> httpx.Response | None:
                response = await client.get("/health/ready")
                return response if response.status_code == 200 else None

            now_ready = await eventually(ready, timeout_s=30, interval_s=0.5,
                                         what="readiness once MongoDB is up")
            assert now_ready.json() == {"status": "ready", "rabbitmq": "ok", "mongodb": "ok"}
    finally:
        codes = stop_all([gateway])
        mongo.close()
    assert_clean_exits(codes, log_dir)
