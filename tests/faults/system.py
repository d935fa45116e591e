"""The real processes of one fault scenario, started through tests.support.processes."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path

from tests.support.keys import issue_key
from tests.support.processes import ServiceProcess, gateway, process_env, projector, worker
from tests.support.services import Backends, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

# Short deadlines keep outages and teardown fast; each scenario may override them.
DEFAULT_ENV = {
    "WORKER_NAME": "faults",
    "PUBLISH_TIMEOUT_S": "2",
    "MONGODB_TIMEOUT_S": "2",
    "SHUTDOWN_GRACE_S": "2",
    "WEBHOOK_TIMEOUT_S": "10",
    "PYTHONPATH": str(REPO_ROOT),
}


class System:
    """Gateway, workers and projector for one scenario; `stop_all` ends every one it started."""

    def __init__(self, backends: Backends, log_dir: Path, **env: str) -> None:
        self.env = process_env(backends, **{**DEFAULT_ENV, **env})
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: list[ServiceProcess] = []
        self._workers: list[tuple[str, ServiceProcess]] = []  # (task type, process)
        self._projectors: list[ServiceProcess] = []
        self._starting: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._numbers = itertools.count(1)
        # Each gateway's API key (every scope), by its base URL: made in the database that
        # gateway reads, so a scenario's private MongoDB gets its own.
        self.api_keys: dict[str, str] = {}

    def _env(self, overrides: Mapping[str, str]) -> dict[str, str]:
        return {**self.env, **overrides}

    async def start_gateway(self, **env: str) -> str:
        """Start a gateway on a free port; its base URL once `GET /health/ready` answers 200
        (and an API key for it is in `api_keys`)."""
        port = free_port()
        settings = self._env(env)
        process = await asyncio.to_thread(gateway, settings, self.log_dir, port)
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        self.api_keys[url] = await issue_key(settings["MONGODB_URL"],
                                             settings["MONGODB_DATABASE"])
        return url

    async def start_worker(self, task_type: str, *, launcher: Sequence[str] = (),
                           **env: str) -> ServiceProcess:
        """Start `python -m consumers worker TYPE`; returns once RabbitMQ counts its consumer
        on tasks.TYPE, besides those of the other live workers of the type started here.
        `launcher`: see ServiceProcess (a test host of its own)."""
        name = f"{task_type}-worker-{next(self._numbers)}"
        # One at a time per type: each start counts the consumers of the workers before it.
        async with self._starting[task_type]:
            live = sum(1 for kind, p in self._workers if kind == task_type and p.running())
            process = await asyncio.to_thread(worker, task_type, self._env(env), self.log_dir,
                                              name, consumers=live + 1, launcher=launcher)
            self.processes.append(process)
            self._workers.append((task_type, process))
        return process

    async def start_projector(self, *, launcher: Sequence[str] = (),
                              **env: str) -> ServiceProcess:
        """Start a projector; returns once each of its three queues counts its consumer."""
        name = f"projector-{next(self._numbers)}"
        async with self._starting["projector"]:
            live = sum(1 for p in self._projectors if p.running())
            process = await asyncio.to_thread(projector, self._env(env), self.log_dir, name,
                                              consumers=live + 1, launcher=launcher)
            self.processes.append(process)
            self._projectors.append(process)
        return process

    def spawn(self, name: str, module: str, *args: str, **env: str) -> ServiceProcess:
        """Start `python -m module args` without waiting for anything (restart loops). Not
        counted as a worker by `start_worker`: do not mix the two on one task type."""
        process = ServiceProcess(f"{name}-{next(self._numbers)}", ["-m", module, *args],
                                 self._env(env), self.log_dir).start()
        self.processes.append(process)
        return process

    async def start(
        self, *, workers: tuple[str, ...] = ("webhook",), with_projector: bool = True,
        **env: str,
    ) -> str:
        """Gateway, projector and one worker per type, started side by side; the gateway URL.
        Every start is awaited before a failure is raised, so none is left half-started."""
        starting: list[Awaitable[object]] = [self.start_gateway(**env)]
        starting += [self.start_worker(task_type, **env) for task_type in workers]
        if with_projector:
            starting.append(self.start_projector(**env))
        results = await asyncio.gather(*starting, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        url = results[0]
        assert isinstance(url, str)
        return url

    async def stop_all(self) -> None:
        running = [process for process in self.processes if process.running()]
        await asyncio.gather(*(asyncio.to_thread(process.stop, 15.0) for process in running))

    def logs(self, limit: int = 1500) -> str:
        """The tail of every process log, for a failure message."""
        return "\n".join(f"--- {p.name} (exit {p.process.poll() if p.process else None})\n"
                         f"{p.log()[-limit:]}" for p in self.processes)
