"""The system as the bench runs it: a vhost of its own and the stack's processes on it."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

from bench.leftovers import Leftovers
from bench.rabbit import new_vhost, release_vhost, vhost_url
from bench.stack import Stack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Deployment:
    """Start, stop, and restart on a fresh vhost (which drops any backlog with the old one)."""

    def __init__(self, base_env: Mapping[str, str], amqp_url: str, database: str,
                 log_dir: Path, leftovers: Leftovers, ready_timeout_s: float) -> None:
        self._base_env = dict(base_env)
        self._amqp_url = amqp_url
        self.database = database
        self._log_dir = log_dir
        self._leftovers = leftovers
        self._ready_timeout_s = ready_timeout_s
        self.vhost: str | None = None
        self.stack: Stack | None = None
        self.port = 0

    def start(self) -> None:
        self.vhost = new_vhost()
        self._leftovers.hold("vhosts", self.vhost)
        self.port = free_port()
        self.stack = Stack.build(self._base_env, vhost_url(self._amqp_url, self.vhost),
                                 self.database, self.port, self._log_dir, self._leftovers)
        print(f"  starting the stack on database {self.database}, vhost {self.vhost}, "
              f"port {self.port} (ready within {self._ready_timeout_s:.0f}s)", flush=True)
        try:
            took = self.stack.start(self._ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        print(f"  stack ready in {took:.1f}s", flush=True)

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
            self.stack = None
        if self.vhost is not None:
            release_vhost(self.vhost, self._leftovers)
            self.vhost = None

    def restart(self) -> None:
        print("  restarting the stack on a fresh vhost (drops the backlog)", flush=True)
        self.stop()
        self.start()

    def pids(self) -> dict[str, int]:
        return self.stack.pids() if self.stack is not None else {}
