"""The system's real processes (gateway under uvicorn, consumers, projector) for e2e tests.

Each starter returns once its process is ready by probe (tests.support.readiness): the gateway's
readiness endpoint, a consumer's subscriptions as RabbitMQ counts them. Never by log text."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from contracts import names
from infra.runtime.settings.worker import DEV_WEBHOOK_ALLOWED_NETWORKS
from tests.support import procfs
from tests.support.readiness import wait_for_consumers, wait_for_consumers_gone, wait_for_http
from tests.support.services import Backends


def process_env(backends: Backends, **overrides: str) -> dict[str, str]:
    return process_env_for(rabbitmq_url=backends.rabbitmq_url, mongodb_url=backends.mongodb_url,
                           mongodb_database=backends.mongodb_database, **overrides)


def process_env_for(*, rabbitmq_url: str, mongodb_url: str, mongodb_database: str,
                    **overrides: str) -> dict[str, str]:
    """A process's environment on these servers (tests/cluster: on a cluster's nodes)."""
    env = {
        **os.environ,
        "RABBITMQ_URL": rabbitmq_url,
        "MONGODB_URL": mongodb_url,
        "MONGODB_DATABASE": mongodb_database,
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        # guest on a vhost of the test's own: the development profile (tests/security starts
        # processes in production with users of their own).
        "TASKPROC_ENV": "development",
        # The tests' webhook receivers listen on 127.0.0.1: the development profile's allowlist.
        "WEBHOOK_ALLOWED_NETWORKS": DEV_WEBHOOK_ALLOWED_NETWORKS,
        # Schedules due every second, so an e2e test sees several runs in seconds.
        "MIN_SCHEDULE_INTERVAL_S": "1",
    }
    env.update(overrides)
    return env


class ServiceProcess:
    """One process of the system, its output kept in a log file for the test report."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path,
                 *, own_session: bool = False, launcher: Sequence[str] = ()):
        """`own_session`: out of the caller's process group, so a Ctrl-C reaches the caller
        only, which then stops the process in order. `launcher`: a command that runs Python
        somewhere else and execs it (`ip netns exec HOST`: on a test host of its own), so the
        pid is still the process's own."""
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._own_session = own_session
        self._launcher = tuple(launcher)
        self._log_start = 0

    def start(self) -> ServiceProcess:
        # A restarted process appends to the same log: only what it writes counts as its own.
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        # The child keeps its own copy of the file descriptor.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([*self._launcher, sys.executable, *self.args],
                                            env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=self._own_session)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What this run of the process has written."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float = 30.0) -> None:
        """Only where the log line is the behaviour under test: readiness is probed instead
        (tests.support.readiness)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log():
            if not self.running():
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {text!r} in {timeout_s:.0f}s:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.05)

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP this process and its descendants (e.g. uvicorn's worker processes) for the
        block, SIGCONT after it: what reaches them meanwhile waits in their sockets."""
        family = [self.pid, *procfs.descendants(self.pid)]
        for pid in family:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


PROJECTOR_QUEUES = (names.PROJECTOR_EVENTS_QUEUE, names.PROJECTOR_SUBMISSIONS_QUEUE,
                    names.PROJECTOR_DEAD_QUEUE)


def gateway(env: Mapping[str, str], log_dir: Path, port: int, *,
            ready: bool = True) -> ServiceProcess:
    """Start the gateway; return once `GET /health/ready` answers 200 (RabbitMQ and MongoDB
    reachable). `ready=False`: once `GET /health` does, for a gateway started without one of
    them on purpose."""
    process = ServiceProcess("gateway", ["-m", "gateway"],
                             {**env, "GATEWAY_PORT": str(port)}, log_dir).start()
    with _killed_unless_ready(process):
        wait_for_http(process, f"http://127.0.0.1:{port}",
                      "/health/ready" if ready else "/health")
    return process


def worker(task_type: str, env: Mapping[str, str], log_dir: Path,
           name: str | None = None, *, consumers: int = 1,
           launcher: Sequence[str] = ()) -> ServiceProcess:
    """Start `python -m consumers worker TYPE`; return once it consumes `tasks.TYPE`.

    `consumers`: how many live workers of the type there will be, this one included. Before
    it starts, the queue must have fewer: a consumer of a killed worker that RabbitMQ has not
    dropped yet would otherwise pass for this one's."""
    queue = names.task_queue(task_type)
    wait_for_consumers_gone(env["RABBITMQ_URL"], {queue: consumers - 1})
    process = ServiceProcess(name or f"{task_type}-worker",
                             ["-m", "consumers", "worker", task_type], env, log_dir,
                             launcher=launcher).start()
    with _killed_unless_ready(process):
        wait_worker(process, env, task_type, consumers)
    return process


def wait_worker(process: ServiceProcess, env: Mapping[str, str], task_type: str,
                consumers: int = 1) -> None:
    """Return once `tasks.TYPE` has `consumers` consumers (see `worker`)."""
    wait_for_consumers(process, env["RABBITMQ_URL"], {names.task_queue(task_type): consumers})


def projector(env: Mapping[str, str], log_dir: Path, name: str = "projector", *,
              consumers: int = 1, launcher: Sequence[str] = ()) -> ServiceProcess:
    """Start `python -m projector`; return once it consumes its three queues."""
    wait_for_consumers_gone(env["RABBITMQ_URL"], dict.fromkeys(PROJECTOR_QUEUES, consumers - 1))
    process = ServiceProcess(name, ["-m", "projector"], env, log_dir,
                             launcher=launcher).start()
    with _killed_unless_ready(process):
        wait_projector(process, env, consumers)
    return process


def wait_projector(process: ServiceProcess, env: Mapping[str, str], consumers: int = 1) -> None:
    """Return once each of the projector's queues (events, submissions, dead letters) has
    `consumers` consumers."""
    wait_for_consumers(process, env["RABBITMQ_URL"], dict.fromkeys(PROJECTOR_QUEUES, consumers))


@contextmanager
def _killed_unless_ready(process: ServiceProcess) -> Iterator[None]:
    """A process that is not ready in time is killed: the caller never learns of it to stop."""
    try:
        yield
    except BaseException:
        process.kill()
        raise
