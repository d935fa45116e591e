"""The system's real processes (gateway under uvicorn, consumers, projector) for e2e tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support import procfs
from tests.support.services import Backends, port_open


def process_env(backends: Backends, **overrides: str) -> dict[str, str]:
    env = {
        **os.environ,
        "RABBITMQ_URL": backends.rabbitmq_url,
        "MONGODB_URL": backends.mongodb_url,
        "MONGODB_DATABASE": backends.mongodb_database,
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


class ServiceProcess:
    """One process of the system, its output kept in a log file for the test report."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path,
                 *, own_session: bool = False):
        """`own_session`: out of the caller's process group, so a Ctrl-C reaches the caller
        only, which then stops the process in order."""
        self.name = name
        self.args = args
        self.env = dict(env)
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._own_session = own_session
        self._log_start = 0

    def start(self) -> ServiceProcess:
        # A restarted process appends to the same log: only what it writes counts as its own.
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        # The child keeps its own copy of the file descriptor.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, *self.args], env=self.env,
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


def gateway(env: Mapping[str, str], log_dir: Path, port: int) -> ServiceProcess:
    process = ServiceProcess("gateway", ["-m", "gateway"],
                             {**env, "GATEWAY_PORT": str(port)}, log_dir).start()
    deadline = time.monotonic() + 30
    while not port_open("127.0.0.1", port):
        if not process.running() or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"gateway did not listen on {port}:\n{process.log()[-3000:]}")
        time.sleep(0.05)
    return process


def worker(task_type: str, env: Mapping[str, str], log_dir: Path,
           name: str | None = None) -> ServiceProcess:
    process = ServiceProcess(name or f"{task_type}-worker",
                             ["-m", "consumers", "worker", task_type], env, log_dir).start()
    process.wait_for_log(f"consuming tasks.{task_type}")
    return process


def projector(env: Mapping[str, str], log_dir: Path, name: str = "projector") -> ServiceProcess:
    process = ServiceProcess(name, ["-m", "consumers", "projector"], env, log_dir).start()
    process.wait_for_log("projecting")
    return process
