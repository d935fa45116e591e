"""End-to-end fixtures: the system's real processes, an HTTP client, and an ops-eye view of the
broker over a plain AMQP channel (not the project's Broker)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractQueue

from contracts import names
from contracts.registry import task_type_names
from contracts.statuses import TERMINAL
from tests.support import processes
from tests.support.amqp import Queues
from tests.support.keys import bearer
from tests.support.processes import ServiceProcess, process_env
from tests.support.readiness import wait_for_consumers_gone
from tests.support.receivers import SmtpSink
from tests.support.services import Backends, free_port
from tests.support.waiting import eventually

MAIL_FROM = "taskproc-e2e@example.com"
TERMINAL_STATUSES = frozenset(status.value for status in TERMINAL)


def system_env(services: Backends, smtp_sink: SmtpSink, **overrides: str) -> dict[str, str]:
    """What every process of the system under test is started with."""
    defaults = {"SMTP_PORT": str(smtp_sink.port), "MAIL_FROM": MAIL_FROM, "WORKER_NAME": "e2e",
                "PUBLISH_TIMEOUT_S": "5", "SHUTDOWN_GRACE_S": "2", "WEBHOOK_TIMEOUT_S": "5"}
    return process_env(services, **{**defaults, **overrides})


def stop_all(started: list[ServiceProcess], timeout_s: float = 30) -> dict[str, int | None]:
    """SIGTERM everything once, then wait for each (SIGKILL after `timeout_s`); exit codes.

    Only one SIGTERM: a second one may land after a process has removed its handlers on the way
    out and kill it, which would read as an unclean shutdown.
    """
    for process in started:
        if process.running():
            process.signal(signal.SIGTERM)
    codes: dict[str, int | None] = {}
    for process in started:
        assert process.process is not None
        try:
            codes[process.name] = process.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            codes[process.name] = process.process.returncode
    return codes


def assert_clean_exits(codes: Mapping[str, int | None], logs: Path) -> None:
    """Consumers exit 0 after SIGTERM; uvicorn re-raises the signal once it has shut down."""
    unclean = {name: code for name, code in codes.items()
               if code != 0 and not (name.endswith("gateway") and code == -signal.SIGTERM)}
    assert not unclean, f"unclean shutdown {unclean}; logs in {logs}"


@dataclass
class System:
    """The running processes: a gateway, one consumer per task type and the projector."""

    url: str
    processes: list[ServiceProcess] = field(default_factory=list)

    def crashed(self) -> list[str]:
        return [process.name for process in self.processes if not process.running()]


@pytest.fixture(scope="module")
def module_log_dir(log_dir: Path, request: pytest.FixtureRequest) -> Path:
    module_name: str = request.module.__name__
    path = log_dir / module_name.rsplit(".", 1)[-1]
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def system_overrides() -> dict[str, str]:
    """Settings a test module gives its system's processes besides `system_env`'s: a module
    overrides this fixture (tests/e2e/test_webhook_signatures.py gives signing secrets)."""
    return {}


@pytest.fixture(scope="module")
def system(services: Backends, smtp_sink: SmtpSink, module_log_dir: Path,
           system_overrides: dict[str, str]) -> Iterator[System]:
    """Every process of the system, started once per test module and stopped after it; ready
    by probe: the gateway's readiness endpoint, and a consumer on every queue they read."""
    env = system_env(services, smtp_sink, **system_overrides)
    # Those of an earlier module's processes must be gone, or they would pass for these.
    wait_for_consumers_gone(services.rabbitmq_url, {
        **{names.task_queue(name): 0 for name in task_type_names()},
        **dict.fromkeys(processes.PROJECTOR_QUEUES, 0)})
    yield from running_system(env, module_log_dir, task_type_names())


def running_system(env: dict[str, str], log_dir: Path, types: Sequence[str]) -> Iterator[System]:
    """A worker of each of `types`, the projector and the gateway under `env`, ready by probe;
    stopped after the caller is done, which fails if one died or exited unclean."""
    consumers = [ServiceProcess(f"{name}-worker", ["-m", "consumers", "worker", name], env,
                                log_dir).start() for name in types]
    projector = ServiceProcess("projector", ["-m", "projector"], env, log_dir).start()
    started = [*consumers, projector]
    try:
        port = free_port()
        started.append(processes.gateway(env, log_dir, port))
        for name, consumer in zip(types, consumers, strict=True):
            processes.wait_worker(consumer, env, name)
        processes.wait_projector(projector, env)
    except BaseException:
        stop_all(started)
        raise
    running = System(f"http://127.0.0.1:{port}", started)
    yield running
    crashed = running.crashed()
    codes = stop_all(started)
    assert not crashed, f"processes died during the tests: {crashed}; logs in {log_dir}"
    assert_clean_exits(codes, log_dir)


class Api:
    """The gateway's HTTP API as a client sees it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def submit(self, task_type: str, payload: Mapping[str, Any], **options: Any) -> str:
        """POST /tasks, expecting 202; the task id."""
        response = await self.client.post(
            "/tasks", json={"task_type": task_type, "payload": payload, **options})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "queued"
        task_id: str = accepted["task_id"]
        return task_id

    async def task(self, task_id: str) -> dict[str, Any] | None:
        """GET /tasks/{id}; None for 404."""
        response = await self.client.get(f"/tasks/{task_id}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    async def wait_for(self, task_id: str, *statuses: str, timeout_s: float = 30) -> dict[str, Any]:
        """Poll GET /tasks/{id} until the task is in one of `statuses` (default: any terminal)."""
        wanted = set(statuses) or TERMINAL_STATUSES
        last: list[dict[str, Any] | None] = [None]

        async def probe() -> dict[str, Any] | None:
            last[0] = await self.task(task_id)
            return last[0] if last[0] is not None and last[0]["status"] in wanted else None

        try:
            return await eventually(probe, timeout_s=timeout_s,
                                    what=f"task {task_id} to be {'/'.join(sorted(wanted))}")
        except AssertionError as error:
            raise AssertionError(f"{error}; last seen: {last[0]}") from None


@pytest.fixture(scope="module")
async def http(system: System, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.url, timeout=30,
                                 headers=bearer(api_key)) as client:
        yield client


@pytest.fixture(scope="module")
def api(http: httpx.AsyncClient) -> Api:
    return Api(http)


@pytest.fixture
async def queues(services: Backends, system: System) -> AsyncIterator[Queues]:
    """A plain aio-pika channel on the session's vhost (the system declared the topology)."""
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        yield Queues(await connection.channel())


class EventTap:
    """A queue of the test's own bound to exchange `task-events`, as another service may bind
    one: every status event in the order its worker published it. The read model may skip an
    event that reaches it late (it never moves backwards); this stream never does."""

    def __init__(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self._seen: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self._progress: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)

    async def of(self, task_id: str) -> list[dict[str, Any]]:
        """The status events of one task received so far."""
        await self._receive()
        return list(self._seen[task_id])

    async def progress_of(self, task_id: str) -> list[dict[str, Any]]:
        """The progress events (`<type>.progress`) of one task received so far."""
        await self._receive()
        return list(self._progress[task_id])

    async def _receive(self) -> None:
        while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
            event = json.loads(message.body)
            kept = self._progress if message.type == names.PROGRESS_EVENT_TYPE else self._seen
            kept[event["task_id"]].append(event)

    async def steps(self, task_id: str) -> list[tuple[str, int]]:
        """(status, attempt) of each event of one task so far."""
        return [(event["status"], event["attempt"]) for event in await self.of(task_id)]

    async def outcomes(self, task_id: str) -> list[tuple[str, int]]:
        """`steps` but `running`, which a worker publishes only for an attempt that lasts past
        RUNNING_EVENT_AFTER_MS: what a test of quick attempts can count on."""
        return [step for step in await self.steps(task_id) if step[0] != "running"]

    async def wait_for(self, task_id: str, status: str, timeout_s: float = 30) -> dict[str, Any]:
        """The first event of the task with this status, once it has been published."""

        async def probe() -> dict[str, Any] | None:
            return next((e for e in await self.of(task_id) if e["status"] == status), None)

        return await eventually(probe, timeout_s=timeout_s,
                                what=f"a {status!r} event for task {task_id}")


@pytest.fixture
async def events(services: Backends, system: System) -> AsyncIterator[EventTap]:
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(names.EVENTS_EXCHANGE, "#")
        yield EventTap(queue)
