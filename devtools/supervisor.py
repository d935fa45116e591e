"""`taskproc run`: every process of the system in the foreground, restarted if one dies.

It starts the local services that are not running, then the gateway, one consumer per task type,
the projector and the scheduler, as a deployment's restart policy would keep them. It gives each
worker and the projector a metrics port of its own (their METRICS_PORT: `metrics_ports`) and
prints where each serves. SIGINT or SIGTERM stops everything it started, and only that.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from contracts.registry import task_type_names
from devtools import local_key
from devtools import local_services as services
from infra.observability.task_middleware import PROJECTOR
from infra.rabbitmq.nodes import vhost_of
from infra.runtime import local_settings
from infra.runtime.settings.common import redacted_url
from infra.runtime.settings.system import SystemSettings
from infra.runtime.settings.worker import (
    DEV_WEBHOOK_ALLOWED_NETWORKS,
    dev_webhook_allowed_networks,
)

log = logging.getLogger("supervisor")

_RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0)
_STABLE_AFTER_S = 30.0


@dataclass
class Child:
    name: str
    command: list[str]
    # Its own settings on top of dev_env(): its METRICS_PORT.
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    next_start: float = field(default=0.0)

    def start(self) -> None:
        # Its own session: a Ctrl-C reaches the supervisor only, which stops children in order.
        self.process = subprocess.Popen(self.command, start_new_session=True,
                                        env={**dev_env(), **self.env})
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


def dev_env() -> dict[str, str]:
    """The children's environment: this one, with the development profile's defaults. Webhooks
    may reach a local receiver (loopback, ports 1024-65535 except the broker's, MongoDB's and
    the service's own), unless WEBHOOK_ALLOWED_NETWORKS says otherwise."""
    env = dict(os.environ)
    env.setdefault("WEBHOOK_ALLOWED_NETWORKS", DEV_WEBHOOK_ALLOWED_NETWORKS)
    # guest on vhost / of this machine's RabbitMQ, and tasks published without a user_id are
    # the default tenant's: a local development setup.
    env.setdefault("TASKPROC_ENV", "development")
    # The default tenant is the local key's (devtools.local_key), so that key reads what the
    # README's raw publish (no user_id) sends.
    env.setdefault("DEFAULT_TENANT", local_key.LOCAL_TENANT)
    return env


def metrics_ports(settings: SystemSettings) -> dict[str, int]:
    """The METRICS_PORT each process of `taskproc run` is given: the projector METRICS_PORT,
    the workers the ports after it, by name (none when METRICS_PORT is 0)."""
    if not settings.metrics_port:
        return {}
    processes = [PROJECTOR, *(f"{name}-worker" for name in task_type_names())]
    return {name: settings.metrics_port + n for n, name in enumerate(processes)}


def children(settings: SystemSettings, *, with_mail_sink: bool) -> list[Child]:
    python = sys.executable
    ports = metrics_ports(settings)
    env = {name: {"METRICS_PORT": str(port)} for name, port in ports.items()}
    if ports and "WEBHOOK_ALLOWED_NETWORKS" not in os.environ:
        # A worker closes only its own metrics port to webhooks: close the others' here.
        allowed = dev_webhook_allowed_networks(range(min(ports.values()),
                                                     max(ports.values()) + 1))
        for name in task_type_names():
            env[f"{name}-worker"]["WEBHOOK_ALLOWED_NETWORKS"] = allowed
    result = [Child("gateway", [python, "-m", "gateway"])]
    result += [Child(f"{name}-worker", [python, "-m", "consumers", "worker", name],
                     env.get(f"{name}-worker", {}))
               for name in task_type_names()]
    result.append(Child(PROJECTOR, [python, "-m", "projector"], env.get(PROJECTOR, {})))
    result.append(Child("scheduler", [python, "-m", "scheduler"]))
    if with_mail_sink:
        result.append(Child("mail-sink", [python, "-m", "devtools.mail_sink"]))
    return result


def _webhook_allowlist(processes: list[Child]) -> str:
    """What the workers' webhooks may reach, as their environment says."""
    return next((child.env["WEBHOOK_ALLOWED_NETWORKS"] for child in processes
                 if "WEBHOOK_ALLOWED_NETWORKS" in child.env),
                dev_env()["WEBHOOK_ALLOWED_NETWORKS"])


def metrics_urls(settings: SystemSettings) -> list[tuple[str, str]]:
    """Where each process (and RabbitMQ) serves Prometheus metrics, as (process, URL): the
    ports `children` hands them."""
    urls = [("gateway", f"http://{settings.gateway_host}:{settings.gateway_port}/metrics")]
    ports = metrics_ports(settings)
    for name in [*(f"{name}-worker" for name in task_type_names()), PROJECTOR]:
        if name in ports:
            urls.append((name, f"http://{settings.metrics_host}:{ports[name]}/metrics"))
    if services.port_open("127.0.0.1", services.RABBITMQ_PROMETHEUS_PORT):
        urls.append(("rabbitmq",
                     f"http://127.0.0.1:{services.RABBITMQ_PROMETHEUS_PORT}/metrics"))
    return urls


class Supervisor:
    def __init__(self, settings: SystemSettings) -> None:
        self._settings = settings
        self._stopping = False

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._request_stop)
        started = services.ensure_local(self._settings.rabbitmq_url, self._settings.mongodb_url)
        log.info("MongoDB database %s at %s", self._settings.mongodb_database,
                 redacted_url(self._settings.mongodb_url))
        local_key.announce(self._settings)
        written = local_settings.write(self._settings, dev_env())
        log.info("settings for the command line in %s: `.venv/bin/taskproc keys list` and the "
                 "other verbs in another terminal use this system", written)
        mail_sink = not services.port_open(self._settings.smtp_host, self._settings.smtp_port)
        processes = children(self._settings, with_mail_sink=mail_sink)
        try:
            for child in processes:
                child.start()
            gateway = f"http://{self._settings.gateway_host}:{self._settings.gateway_port}"
            log.info("gateway on %s, task page %s/ui, RabbitMQ console on "
                     "http://127.0.0.1:15672 - Ctrl-C stops everything", gateway, gateway)
            log.info("development profile (TASKPROC_ENV=%s): RabbitMQ as %s on vhost %s of "
                     "this machine; webhooks may reach public addresses and %s",
                     self._settings.taskproc_env, self._settings.rabbitmq_user,
                     vhost_of(self._settings.rabbitmq_url),
                     _webhook_allowlist(processes) or "nothing else")
            log.info("Prometheus metrics: %s", ", ".join(
                f"{name} {url}" for name, url in metrics_urls(self._settings)))
            while not self._stopping:
                self._tend(processes)
                time.sleep(0.2)
        finally:
            self._stop_all(processes)
            for service in reversed(started):
                services.stop(service)
        return 0

    def _request_stop(self, signum: int, frame: object) -> None:
        if not self._stopping:
            log.info("received %s: stopping everything started here",
                     signal.Signals(signum).name)
        self._stopping = True

    def _tend(self, processes: list[Child]) -> None:
        now = time.monotonic()
        for child in processes:
            if child.process is None:
                if now >= child.next_start:
                    child.start()
                continue
            code = child.process.poll()
            if code is None:
                continue
            if now - child.started_at > _STABLE_AFTER_S:
                child.restarts = 0
            delay = _RESTART_BACKOFF_S[min(child.restarts, len(_RESTART_BACKOFF_S) - 1)]
            log.warning("%s (pid %d) exited with %s; restarting in %.0fs",
                        child.name, child.process.pid, code, delay)
            child.process, child.restarts, child.next_start = None, child.restarts + 1, now + delay

    def _stop_all(self, processes: list[Child]) -> None:
        running = [c for c in processes if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._settings.shutdown_grace_s + 5
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time: killing it", child.name)
                child.process.kill()
                child.process.wait()
        log.info("all processes stopped")
