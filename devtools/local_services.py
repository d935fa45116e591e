"""Start the local services the system needs when they are not already running.

RabbitMQ comes from Debian's package, the MongoDB-protocol server is `nx-27017` from PyPI and
SMTP is aiosmtpd. Each `ensure_*` returns what it started, so the caller stops only that.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

RUN_DIR = Path(os.environ.get("TASKPROC_RUN_DIR", ".run")).resolve()


class ServiceError(Exception):
    """A required local service could not be started."""


@dataclass(frozen=True)
class Started:
    """A service this process started, with the command that stops it."""

    name: str
    stop: tuple[str, ...]


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not open {host}:{port} within {timeout_s:.0f}s")
        time.sleep(0.2)


def _run(*command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


# The plugins `make run` enables, with the port each opens: the management console, and
# RabbitMQ's own Prometheus metrics (queue depths, rates, consumers) at :15692/metrics.
RABBITMQ_MANAGEMENT_PORT = 15672
RABBITMQ_PROMETHEUS_PORT = 15692
_RABBITMQ_PLUGINS = {"rabbitmq_management": RABBITMQ_MANAGEMENT_PORT,
                     "rabbitmq_prometheus": RABBITMQ_PROMETHEUS_PORT}


def ensure_rabbitmq() -> Started | None:
    """RabbitMQ on 127.0.0.1:5672, its console on 15672 and its Prometheus metrics on 15692."""
    started = None
    if not port_open("127.0.0.1", 5672):
        if shutil.which("rabbitmq-server") is None:
            _install_rabbitmq()
        log.info("starting RabbitMQ")
        result = _run("rabbitmq-server", "-detached")
        if result.returncode != 0:
            raise ServiceError(f"rabbitmq-server -detached failed: {result.stderr.strip()}")
        _run("rabbitmqctl", "await_startup", timeout_s=120)
        wait_for_port("127.0.0.1", 5672, what="RabbitMQ", timeout_s=60)
        started = Started("rabbitmq", ("rabbitmqctl", "stop"))
    _enable_plugins()
    return started


def _enable_plugins() -> None:
    missing = {plugin: port for plugin, port in _RABBITMQ_PLUGINS.items()
               if not port_open("127.0.0.1", port)}
    if not missing or shutil.which("rabbitmq-plugins") is None:
        return
    result = _run("rabbitmq-plugins", "enable", *missing)
    if result.returncode != 0:
        log.warning("could not enable %s: %s", ", ".join(missing), result.stderr.strip())
        return
    for plugin, port in missing.items():
        wait_for_port("127.0.0.1", port, what=plugin, timeout_s=60)


def _install_rabbitmq() -> None:
    if os.geteuid() != 0:
        raise ServiceError("RabbitMQ is not installed: apt-get install rabbitmq-server (as root)")
    log.info("installing rabbitmq-server from Debian's packages")
    for command in (("apt-get", "update", "-q"),
                    ("apt-get", "install", "-y", "-q", "rabbitmq-server")):
        result = _run(*command, timeout_s=600)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")


def ensure_mongodb(port: int = 27017) -> Started | None:
    """The MongoDB-protocol server `nx-27017`, data under .run/mongodb, as a daemon."""
    if port_open("127.0.0.1", port):
        # Another checkout's server shares its tasks, keys and schedules with this one: say
        # whose it is, so that is never a surprise.
        log.info("MongoDB-protocol server already running on 127.0.0.1:%d: using it, not "
                 "started here (%s)", port, describe_listener(port))
        return None
    executable = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
    data_dir = RUN_DIR / "mongodb"
    data_dir.mkdir(parents=True, exist_ok=True)
    pid_file = RUN_DIR / "nx-27017.pid"
    log.info("nothing on 127.0.0.1:%d: starting nx-27017 there (data in %s)", port, data_dir)
    result = _run(executable, "-d", "--data-dir", str(data_dir), "--host", "127.0.0.1",
                  "-p", str(port), "--pid-file", str(pid_file),
                  "--log-file", str(RUN_DIR / "nx-27017.log"))
    if result.returncode != 0:
        raise ServiceError(f"nx-27017 failed to start: {result.stderr.strip()[-500:]}")
    wait_for_port("127.0.0.1", port, what="nx-27017", timeout_s=30)
    log.info("started nx-27017 on 127.0.0.1:%d (data in %s); stopped with this process",
             port, data_dir)
    return Started("nx-27017", (executable, "--stop", "--pid-file", str(pid_file)))


_PROC = Path("/proc")
_TCP_LISTEN = "0A"


def describe_listener(port: int) -> str:
    """Who listens on TCP `port` of this machine, from /proc: pid, command and data folder."""
    pid = listening_pid(port)
    if pid is None:
        return "its process is not visible from here: another user's or a container's"
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    command = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    data_dir = next((after for before, after in pairwise(command)
                     if before in ("--data-dir", "--dbpath")), None)
    name = " ".join(Path(part).name for part in command[:2])
    return f"pid {pid}: {name}, data in {data_dir or 'a folder its command line does not name'}"


def listening_pid(port: int) -> int | None:
    """The process holding a socket that listens on TCP `port`, if this user may see it."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(entry.name)
        except OSError:
            continue
    return None


_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def ensure_local(rabbitmq_url: str, mongodb_url: str) -> list[Started]:
    """Start what the URLs expect on this machine; a remote service is left to its owner."""
    started: list[Started] = []
    rabbit = urlsplit(rabbitmq_url)
    if rabbit.hostname in _LOCAL_HOSTS and (rabbit.port or 5672) == 5672:
        started += [s for s in (ensure_rabbitmq(),) if s]
    else:
        log.info("RabbitMQ at %s:%s is not this machine's default: not starting one",
                 rabbit.hostname, rabbit.port)
    # A MongoDB URL may list several hosts; only a single local one is ours to start.
    mongo = urlsplit(mongodb_url)
    hosts = mongo.netloc.rsplit("@", 1)[-1]
    if "," not in hosts and mongo.hostname in _LOCAL_HOSTS:
        started += [s for s in (ensure_mongodb(mongo.port or 27017),) if s]
    else:
        log.info("MongoDB at %s is not on this machine: not starting one", hosts)
    return started


def stop(started: Started) -> None:
    log.info("stopping %s", started.name)
    result = _run(*started.stop, timeout_s=60)
    if result.returncode != 0:
        log.warning("stopping %s failed: %s", started.name, result.stderr.strip())
