"""Real RabbitMQ and MongoDB-protocol servers for tests, each test session in its own vhost and
database so runs never see each other's messages.

Where a Docker engine answers, testcontainers starts throwaway servers instead. Where neither is
available a test is skipped locally and fails on CI (CI=true), never silently passes.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymongo import MongoClient

ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
MONGO_HOST, MONGO_PORT = "127.0.0.1", 27017


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_block(size: int) -> int:
    """A base port with `size` consecutive free ports (a worker's is the projector's + n),
    below the kernel's ephemeral range: a port from that range can be taken by any outgoing
    connection between this check and the process that binds it (seen once in CI: a worker's
    metrics port went to a client socket)."""
    ephemeral_low = _ephemeral_range()[0]
    chooser = random.Random()
    for _ in range(200):
        base = chooser.randrange(10_000, ephemeral_low - size)
        try:
            for port in range(base, base + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    except OSError:
        return 32_768, 60_999  # Linux's default
    return int(low), int(high)


def missing(what: str) -> None:
    """A required service is absent: a failure on CI, a skip on a developer's machine."""
    message = f"{what} is not running (start it with `make services`)"
    if ON_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def docker_available() -> bool:
    if os.environ.get("TASKPROC_TESTCONTAINERS", "auto") == "0" or not shutil.which("docker"):
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class Backends:
    rabbitmq_url: str
    vhost: str
    mongodb_url: str
    mongodb_database: str
    local_broker: bool  # rabbitmqctl can reach it (fault tests need that)


@contextmanager
def local_vhost() -> Iterator[tuple[str, str]]:
    """A fresh vhost on the local RabbitMQ, deleted afterwards, and its URL."""
    if not port_open(RABBIT_HOST, RABBIT_PORT):
        missing(f"RabbitMQ on {RABBIT_HOST}:{RABBIT_PORT}")
    vhost = f"taskproc-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{vhost}", vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


@contextmanager
def backends() -> Iterator[Backends]:
    database = f"test_{uuid.uuid4().hex[:8]}"
    if docker_available() and not port_open(RABBIT_HOST, RABBIT_PORT):
        with _containers(database) as found:
            yield found
        return
    if not port_open(MONGO_HOST, MONGO_PORT):
        missing(f"a MongoDB-protocol server on {MONGO_HOST}:{MONGO_PORT}")
    mongodb_url = f"mongodb://{MONGO_HOST}:{MONGO_PORT}/?directConnection=true"
    with local_vhost() as (url, vhost):
        try:
            yield Backends(url, vhost, mongodb_url, database, local_broker=True)
        finally:
            drop_database(mongodb_url, database)


def drop_database(url: str, database: str) -> None:
    """Leave the shared server as the session found it."""
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(database)
    finally:
        client.close()


@contextmanager
def _containers(database: str) -> Iterator[Backends]:
    from testcontainers.mongodb import MongoDbContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management") as rabbit, \
            MongoDbContainer("mongo:7") as mongo:
        host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        yield Backends(f"amqp://guest:guest@{host}:{port}/", "/",
                       mongo.get_connection_url(), database, local_broker=False)


class MongoServer:
    """A private nx-27017 on its own port and data directory, for tests that stop it."""

    def __init__(self) -> None:
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="taskproc-mongo-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> None:
        executable = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
        with (self._dir / "server.log").open("ab") as log:
            self._process = subprocess.Popen(
                [executable, "--data-dir", str(self._dir / "data"), "--host", "127.0.0.1",
                 "-p", str(self.port), "--pid-file", str(self._dir / "pid"),
                 "--log-file", str(self._dir / "nx.log")],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError(f"nx-27017 did not start on port {self.port}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Kill it (as an outage would); `start()` brings it back with the same data."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        """Stop it for good and remove its data."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
