"""The gateway, given every node of the cluster, keeps answering 202 when the node it is on is
killed: 503 only for a short window, never a hang, and every 202 task is in its queue."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from pymongo import MongoClient

from contracts import names
from devtools import cluster as rabbit_cluster
from tests.cluster.conftest import Cluster
from tests.cluster.quorum import drain
from tests.support import processes
from tests.support.keys import bearer, issue_key
from tests.support.services import free_port

CLIENTS = 16
MONGODB_URL = "mongodb://127.0.0.1:27017/?directConnection=true"
ROBUST_PAUSE_S = 5.5  # aio-pika's pause after every connect (tests/cluster/test_failover.py)


@pytest.fixture
def gateway_on_the_cluster(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A gateway process on the cluster (the first node first) and a MongoDB database of its
    own; its base URL and that database."""
    database = f"cluster_{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = processes.process_env_for(
        rabbitmq_url=",".join(node.url for node in cluster.nodes), mongodb_url=MONGODB_URL,
        mongodb_database=database,
        # No management plugin on the test cluster: the queue limits are skipped, with a warning.
        RABBITMQ_MANAGEMENT_URL=cluster.nodes[0].management_url)
    gateway = processes.gateway(env, tmp_path, port)
    try:
        yield f"http://127.0.0.1:{port}", database
    finally:
        gateway.stop()
        mongo: MongoClient[dict[str, object]] = MongoClient(MONGODB_URL)
        with mongo:
            mongo.drop_database(database)


async def test_the_gateway_keeps_accepting_when_its_node_is_killed(
        cluster: Cluster, gateway_on_the_cluster: tuple[str, str]) -> None:
    base_url, database = gateway_on_the_cluster
    first, survivor = cluster.nodes[0], cluster.nodes[1]
    key = await issue_key(MONGODB_URL, database)
    answers: list[tuple[float, int, str]] = []
    stop = asyncio.Event()

    async def client(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            try:
                response = await http.post("/tasks", json={"task_type": "sleep",
                                                           "payload": {"seconds": 0}})
                task_id = response.json().get("task_id", "") if response.status_code == 202 else ""
                answers.append((time.monotonic(), response.status_code, task_id))
            except httpx.TimeoutException:
                answers.append((time.monotonic(), 0, ""))
            if answers[-1][1] != 202:
                await asyncio.sleep(0.05)  # a client's pause after a 503

    async with httpx.AsyncClient(base_url=base_url, headers=bearer(key), timeout=15) as http:
        clients = [asyncio.create_task(client(http)) for _ in range(CLIENTS)]
        try:
            await asyncio.sleep(ROBUST_PAUSE_S)
            rabbit_cluster.kill_node(first)
            killed = time.monotonic()
            deadline = killed + 30
            while not [at for at, status, _ in answers if at > killed + 2 and status == 202]:
                assert time.monotonic() < deadline, "no 202 in 30 s after the kill"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*clients)

    async with await aio_pika.connect(survivor.url) as connection:
        queued = set(await drain(await connection.channel(), names.task_queue("sleep")))
    after = [(at - killed, status) for at, status, _ in answers if at >= killed]
    statuses = Counter(status for _, status in after)
    refused = [at for at, status in after if status != 202]
    accepted = {task_id for _, status, task_id in answers if status == 202}
    print(f"\ngateway's node {first.name} SIGKILLed under {CLIENTS} clients: after the kill "
          f"{dict(statuses)}; the last non-202 {max(refused, default=0.0):.2f}s after it; "
          f"{len(accepted)} accepted in all, {len(accepted - queued)} of them not in the queue")
    assert set(statuses) <= {202, 503}, "only 202 or 503, never a hang or another error"
    assert max(refused, default=0.0) < 10
    assert not accepted - queued
