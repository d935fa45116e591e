"""Several task types in one worker process (`taskproc worker --types sleep,webhook`), through
real RabbitMQ and MongoDB: the real bootstrap (`run_worker`) with the registered handlers, the
gateway over ASGI and the projector, on this event loop. Tasks of both types succeed, each
type's queue has one consumer of this process at that type's own prefetch, and a SIGTERM-like
stop ends the process cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from consumers.bootstrap import run_worker
from contracts.names import task_queue
from contracts.registry import get_spec
from gateway.app import create_app
from infra.rabbitmq.management import credentials_of
from infra.runtime.settings.system import SystemSettings
from projector.bootstrap import run_projector
from tests.support.keys import bearer
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends
from tests.support.waiting import eventually

TYPES = ("sleep", "webhook")
PROCESS = "two-types"


@dataclass(frozen=True)
class Stack:
    http: httpx.AsyncClient
    worker: asyncio.Task[None]
    stop: asyncio.Event

    async def submit(self, task_type: str, payload: dict[str, Any]) -> str:
        answer = await self.http.post("/tasks", json={"task_type": task_type,
                                                      "payload": payload})
        assert answer.status_code == 202, answer.text
        task_id: str = answer.json()["task_id"]
        return task_id

    async def wait_succeeded(self, task_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            if self.worker.done():
                raise AssertionError(f"the worker stopped: {self.worker!r}")
            answer = await self.http.get(f"/tasks/{task_id}")
            found: dict[str, Any] = answer.json()
            return found if found.get("status") == "succeeded" else None

        result: dict[str, Any] = await eventually(probe, timeout_s=30,
                                                  what=f"task {task_id} succeeded")
        return result


@pytest.fixture(scope="module")
async def stack(settings: SystemSettings, api_key: str) -> AsyncIterator[Stack]:
    settings = settings.model_copy(update={"process_name": PROCESS, "metrics_port": 0})
    app = create_app(settings)
    stop = asyncio.Event()
    async with app.router.lifespan_context(app):
        worker = asyncio.create_task(run_worker(settings, TYPES, stop=stop))
        projector = asyncio.create_task(run_projector(settings, stop=stop))
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://gateway", timeout=10,
                                         headers=bearer(api_key)) as http:
                yield Stack(http=http, worker=worker, stop=stop)
        finally:
            stop.set()
            await asyncio.gather(worker, projector)


async def consumers_of(settings: SystemSettings, vhost: str, process: str
                       ) -> list[dict[str, Any]]:
    """The vhost's consumers on the connections `process` named, as the management API lists
    them (a consumer row names its connection by address; the connection row has its name)."""
    async with httpx.AsyncClient(base_url=settings.rabbitmq_management_url,
                                 auth=credentials_of(settings.rabbitmq_url), timeout=5) as api:
        vhost_path = quote(vhost, safe="")
        connections = (await api.get(f"/api/vhosts/{vhost_path}/connections")).json()
        ours = {row["name"] for row in connections
                if process in row.get("client_properties", {}).get("connection_name", "")}
        found: list[dict[str, Any]] = (await api.get(f"/api/consumers/{vhost_path}")).json()
        return [row for row in found if row["channel_details"]["connection_name"] in ours]


async def test_one_process_runs_tasks_of_both_types_each_consumer_at_its_own_prefetch(
    stack: Stack, settings: SystemSettings, services: Backends,
    webhook_receiver: WebhookReceiver,
) -> None:
    assert get_spec("sleep").prefetch != get_spec("webhook").prefetch  # else this proves nothing

    slept = await stack.submit("sleep", {"seconds": 0})
    called = await stack.submit("webhook", {"url": webhook_receiver.url("/two-types")})

    assert (await stack.wait_succeeded(slept))["task_type"] == "sleep"
    assert (await stack.wait_succeeded(called))["task_type"] == "webhook"
    assert webhook_receiver.by_task[called] == 1  # the webhook handler's own client called it

    # After a fresh message each consumer runs at its type's prefetch (one at a time before).
    async def at_full_prefetch() -> dict[str, list[int]] | None:
        mine = [row for row in await consumers_of(settings, services.vhost, PROCESS)
                if row["queue"]["name"].startswith("tasks.")]
        prefetch: dict[str, list[int]] = {}
        for row in mine:
            prefetch.setdefault(row["queue"]["name"], []).append(row["prefetch_count"])
        wanted = {task_queue(name): [get_spec(name).prefetch] for name in TYPES}
        return prefetch if prefetch == wanted else None

    await eventually(at_full_prefetch, timeout_s=30,
                     what="one consumer per type, each at its own prefetch")


async def test_the_process_stops_cleanly_when_asked(stack: Stack) -> None:
    stack.stop.set()

    await asyncio.wait_for(asyncio.shield(stack.worker), timeout=30)

    assert stack.worker.exception() is None
