"""The real processes, started as `make run` starts them, each with its log in a file.

Only RABBITMQ_URL (the bench's vhost), MONGODB_DATABASE and GATEWAY_PORT are set; every other
variable comes from the caller's environment, so `GATEWAY_WORKERS=2 make bench` reaches them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.leftovers import Leftovers
from contracts import names
from contracts.registry import task_type_names
from tests.support import readiness
from tests.support.processes import ServiceProcess
from tests.support.procfs import descendants

_STOP_GRACE_S = 30.0  # the consumers' default shutdown grace (20 s) and some


class StackError(Exception):
    """A process exited or was not ready in time."""


# The queues each consumer process is ready once it consumes; the gateway is asked over HTTP.
_QUEUES = {f"{name}-worker": [names.task_queue(name)] for name in task_type_names()}
_QUEUES["projector"] = [names.PROJECTOR_EVENTS_QUEUE, names.PROJECTOR_SUBMISSIONS_QUEUE,
                        names.PROJECTOR_DEAD_QUEUE]


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    port: int
    leftovers: Leftovers
    processes: list[ServiceProcess] = field(default_factory=list)

    @classmethod
    def build(cls, base_env: Mapping[str, str], rabbitmq_url: str, database: str, port: int,
              log_dir: Path, leftovers: Leftovers) -> Stack:
        env = {**base_env, "RABBITMQ_URL": rabbitmq_url, "MONGODB_DATABASE": database,
               "GATEWAY_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        stack = cls(env, log_dir, port, leftovers)
        commands = [("gateway", ["-m", "gateway"])]
        commands += [(f"{name}-worker", ["-m", "consumers", "worker", name])
                     for name in task_type_names()]
        commands.append(("projector", ["-m", "projector"]))
        stack.processes = [ServiceProcess(name, args, env, log_dir, own_session=True)
                           for name, args in commands]
        return stack

    def start(self, ready_timeout_s: float) -> float:
        """Start every process and wait until all are ready; the seconds that took."""
        began = time.monotonic()
        for process in self.processes:
            process.start()
            self.leftovers.hold("pids", f"{process.pid}:{' '.join(process.args)}")
        deadline = began + ready_timeout_s
        try:
            for process in self.processes:
                left = max(deadline - time.monotonic(), 1.0)
                if process.name in _QUEUES:
                    wanted = dict.fromkeys(_QUEUES[process.name], 1)
                    readiness.wait_for_consumers(process, self.env["RABBITMQ_URL"], wanted, left)
                else:
                    readiness.wait_for_http(process, f"http://127.0.0.1:{self.port}",
                                            "/health/ready", left)
        except readiness.NotReady as error:
            raise StackError(str(error)) from error
        return time.monotonic() - began

    def stop(self) -> None:
        """SIGTERM to all, SIGKILL to whatever still runs after the grace."""
        running = [p for p in self.processes if p.running()]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for process in running:
            assert process.process is not None
            try:
                process.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                print(f"  {process.name} did not stop in {_STOP_GRACE_S:.0f}s: killing it",
                      flush=True)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.process.wait(timeout=10)
        for process in self.processes:
            if process.process is not None:
                self.leftovers.release("pids", f"{process.pid}:{' '.join(process.args)}")

    def pids(self) -> dict[str, int]:
        """Every process of the system by name, with the children (uvicorn workers) of each."""
        found: dict[str, int] = {}
        for process in self.processes:
            if not process.running():
                continue
            found[process.name] = process.pid
            for number, child in enumerate(descendants(process.pid), start=1):
                found[f"{process.name}/{number}"] = child
        return found

    def pid_of(self, name: str) -> int:
        for process in self.processes:
            if process.name == name:
                return process.pid
        raise KeyError(name)
