"""`python -m bench.listing [--samples N] [--sizes 1000,100000]`: how long `GET /tasks` and
`GET /tasks/stats` take with 1,000 and with 100,000 tasks stored.

Only MongoDB and the gateway app: the tasks are bulk-inserted into a database of their own
(`taskproc_bench_listing`, dropped at the end, also on Ctrl-C) the way bench/fill.py makes
the million-task store; the requests go to the gateway's FastAPI app in this process through
httpx's ASGI transport, with a real API key, the real read model and MongoDB adapters. No
RabbitMQ: listing never touches it (the broker link points at a closed port).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.documents import documents
from bench.stats import percentile
from contracts.registry import task_types
from gateway.app import create_app
from gateway.deps import Services
from infra.composition import mongo_adapters, replay_ports, task_service
from infra.mongodb.client import mongo_client
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.queue_depths import BrokerQueueDepths
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.system import SystemSettings
from service.api_keys import create_key
from service.auth import READ, Authenticator
from service.cancel import CancelPorts
from service.listing import encode_cursor
from service.queries import SortKey
from tests.fakes.cancellations import RecordingControl
from tests.fakes.ports import RecordingPublisher

DATABASE = "taskproc_bench_listing"
TENANT = "bench"
_BATCH = 2_000
_FILL_TIMEOUT_S = 60.0
# Every 10th task is `nightly`; customers 0..99 spread over all.
NIGHTLY_EVERY = 10


def _settings(mongodb_url: str) -> SystemSettings:
    return SystemSettings(mongodb_url=mongodb_url, mongodb_database=DATABASE,
                    rabbitmq_url="amqp://guest:guest@127.0.0.1:1/", publish_timeout_s=0.05)


def _labelled(document: dict[str, Any], index: int) -> dict[str, Any]:
    labels = [f"customer={index % 100}"]
    if index % NIGHTLY_EVERY == 0:
        labels.append("nightly")
    return {**document, "tenant": TENANT, "labels": labels}


async def fill(settings: SystemSettings, start: int, stop: int, newest: datetime,
               keys: list[SortKey]) -> float:
    """Store tasks `start`..`stop-1`; the seconds it took. Their sort keys join `keys`."""
    # Bulk inserts into five indexes take nx-27017 seconds: a patient client of its own.
    client = mongo_client(settings.mongodb_url, _FILL_TIMEOUT_S)
    began = time.perf_counter()
    try:
        collection = client[DATABASE]["tasks"]
        batch: list[dict[str, Any]] = []
        for index, document in enumerate(documents(DATABASE, start, stop, newest), start):
            # What MongoDB keeps of a date: milliseconds (the cursor names stored values).
            created = document["created_at"]
            created = created.replace(microsecond=created.microsecond // 1000 * 1000)
            keys.append(SortKey(created, document["_id"]))
            batch.append(_labelled(document, index))
            if len(batch) == _BATCH:
                await collection.insert_many(batch, ordered=False)
                batch = []
        if batch:
            await collection.insert_many(batch, ordered=False)
    finally:
        await client.close()
    return time.perf_counter() - began


async def timed(samples: int, request: Callable[[], Awaitable[httpx.Response]]) -> dict[str, float]:
    durations = []
    for _ in range(samples):
        began = time.perf_counter()
        answer = await request()
        durations.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text
    p50, p99 = percentile(durations, 0.5), percentile(durations, 0.99)
    assert p50 is not None
    assert p99 is not None
    return {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000}


async def measure(settings: SystemSettings, samples: int, keys: list[SortKey]) -> dict[str, Any]:
    """p50/p99 of each request against the store as it is now."""
    mongo = mongo_adapters(settings, max_examined=settings.listing_max_examined)
    try:
        # The bench measures the listing, not the per-key rate limit.
        issued = await create_key(mongo.api_keys, tenant=TENANT, scopes=frozenset({READ}),
                                  rate_per_s=1_000_000.0)
        broker = Broker(settings.rabbitmq_url, build_topology(task_types()), timeout_s=0.05,
                        name="listing bench (unused)")
        async with task_service(settings, read_model=mongo.tasks, keys=mongo.keys,
                                publisher=RecordingPublisher()) as tasks:
            replay = replay_ports(settings, broker, mongo.tasks, mongo.dead_letters,
                                  replayed_by="bench")
            cancel = CancelPorts(mongo.cancellations, RecordingControl(), cancelled_by="bench")
            app = create_app(settings, services=Services(
                tasks, replay, broker, Authenticator(mongo.api_keys), cancel=cancel,
                queues=BrokerQueueDepths(broker, timeout_s=0.05), schedules=mongo.schedules))
            async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                    headers={"Authorization": f"Bearer {issued.token}"}) as http:
                ordered = sorted(keys, reverse=True)
                deep = encode_cursor(ordered[len(ordered) // 2])
                requests: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
                    "first page": lambda: http.get("/tasks"),
                    "status=failed": lambda: http.get("/tasks", params={"status": "failed"}),
                    "status=failed&status=dead": lambda: http.get(
                        "/tasks", params={"status": ["failed", "dead"]}),
                    "task_type=webhook": lambda: http.get("/tasks",
                                                          params={"task_type": "webhook"}),
                    "label=nightly": lambda: http.get("/tasks", params={"label": "nightly"}),
                    "deep page (cursor at the middle)": lambda: http.get(
                        "/tasks", params={"cursor": deep}),
                    "stats": lambda: http.get("/tasks/stats"),
                }
                await http.get("/tasks")  # warm: the key lookup, the first connection
                return {name: await timed(samples, request)
                        for name, request in requests.items()}
    finally:
        await mongo.close()


async def run(mongodb_url: str, sizes: list[int], samples: int) -> None:
    settings = _settings(mongodb_url)
    mongo = mongo_adapters(settings)
    try:
        await mongo.client.drop_database(DATABASE)
        kind = await mongo.tasks.ensure_indexes(settings.retention)
        await mongo.api_keys.ensure_indexes()
    finally:
        await mongo.close()
    newest, stored = datetime.now(UTC), 0
    keys: list[SortKey] = []
    print(f"listing bench on {kind} ({mongodb_url}), {samples} requests each", flush=True)
    for size in sorted(sizes):
        took = await fill(settings, stored, size, newest, keys)
        print(f"\n{size:,} tasks stored (+{size - stored:,} in {took:.1f}s)", flush=True)
        stored = size
        for name, figures in (await measure(settings, samples, keys)).items():
            print(f"  {name:<34} p50 {figures['p50_ms']:8.1f} ms   "
                  f"p99 {figures['p99_ms']:8.1f} ms", flush=True)


async def drop(mongodb_url: str) -> None:
    mongo = mongo_adapters(_settings(mongodb_url))
    try:
        await mongo.client.drop_database(DATABASE)
    finally:
        await mongo.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mongodb-url",
                        default="mongodb://127.0.0.1:27017/?directConnection=true")
    parser.add_argument("--sizes", default="1000,100000",
                        help="stored task counts to measure at, comma-separated")
    parser.add_argument("--samples", type=int, default=100, help="requests per figure")
    options = parser.parse_args(argv)
    sizes = [int(size) for size in options.sizes.split(",")]
    try:
        asyncio.run(run(options.mongodb_url, sizes, options.samples))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        asyncio.run(drop(options.mongodb_url))
        print(f"dropped database {DATABASE}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
