"""`taskproc run` (what `make run` starts): a process that dies is restarted and logged, and a
SIGTERM stops every process it started and nothing else."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from contracts.names import task_queue
from contracts.registry import task_type_names
from tests.e2e.conftest import system_env
from tests.support.keys import bearer
from tests.support.processes import ServiceProcess
from tests.support.readiness import wait_for_consumers
from tests.support.receivers import SmtpSink
from tests.support.services import (
    MONGO_PORT,
    RABBIT_PORT,
    Backends,
    free_port,
    free_port_block,
    port_open,
)
from tests.support.waiting import eventually

STARTED = re.compile(r"started (?P<name>[\w-]+) \(pid (?P<pid>\d+)\)")
PRINTED = re.compile(r"(?:Prometheus metrics: |, )([\w-]+) (http://[^\s,]+/metrics)")


def started_pids(log: str) -> dict[str, list[int]]:
    pids: dict[str, list[int]] = {}
    for match in STARTED.finditer(log):
        pids.setdefault(match["name"], []).append(int(match["pid"]))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_dead_process_is_restarted_and_sigterm_stops_only_what_was_started(
    services: Backends, smtp_sink: SmtpSink, log_dir: Path
) -> None:
    port = free_port()
    # Its `.run/api-key` goes to a folder of its own, not the developer's `.run`.
    run_dir = log_dir / "supervisor-run"
    metrics = free_port_block(1 + len(task_type_names()))
    env = system_env(services, smtp_sink, GATEWAY_PORT=str(port), TASKPROC_RUN_DIR=str(run_dir),
                     METRICS_PORT=str(metrics))
    supervisor = ServiceProcess("supervisor", ["-m", "cli.main", "run"], env, log_dir).start()
    try:
        await asyncio.to_thread(wait_for_consumers, supervisor, services.rabbitmq_url,
                                # the webhook worker's hook has run (and logged) once it consumes
                                {task_queue("sleep"): 1, task_queue("webhook"): 1}, 60.0)
        first = started_pids(supervisor.log())["sleep-worker"][0]

        os.kill(first, signal.SIGKILL)

        await eventually(lambda: _has(supervisor, f"sleep-worker (pid {first}) exited with -9"),
                         what="the supervisor to log the death")
        await eventually(lambda: _restarted(supervisor), timeout_s=30,
                         what="a second sleep worker")
        # The local admin key it made on start-up is the one a user would use.
        key = (run_dir / "api-key").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10,
                                     headers=bearer(key)) as http:
            accepted = await http.post("/tasks", json={"task_type": "sleep",
                                                       "payload": {"seconds": 0}})
            task_id = accepted.json()["task_id"]

            async def succeeded() -> bool:
                answer = await http.get(f"/tasks/{task_id}")
                status: str = answer.json()["status"]
                return status == "succeeded"

            await eventually(succeeded, what="a task run by the restarted worker")
            # The list it printed is where each process serves: each on a port of its own.
            printed = dict(PRINTED.findall(supervisor.log()))
            assert set(printed) >= {"projector", *(f"{t}-worker" for t in task_type_names())}
            assert len({printed[name] for name in printed if name != "gateway"}) == (
                len(printed) - 1)
            for name, url in printed.items():
                if name.endswith("-worker") or name == "projector":
                    assert f"{name}: metrics on {url}" in supervisor.log(), name
            # The worker counts the outcome once RabbitMQ confirmed its event: maybe just after
            # the read model shows it.
            async def served() -> bool:
                text = (await http.get(printed["sleep-worker"])).text
                return any(sample.labels == {"task_type": "sleep", "status": "succeeded"}
                           and sample.value >= 1
                           for family in text_string_to_metric_families(text)
                           if family.name == "taskproc_task_outcomes" for sample in family.samples)

            await eventually(served, what="the restarted sleep worker's metrics to count it")
    finally:
        supervisor.signal(signal.SIGTERM)
        assert supervisor.process is not None
        try:
            code = supervisor.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            raise

    children = [pid for pids in started_pids(supervisor.log()).values() for pid in pids]
    assert code == 0
    assert "all processes stopped" in supervisor.log()
    # The development profile says so: guest on this machine's RabbitMQ, and what webhooks may
    # reach (loopback, besides public addresses).
    assert "development profile (TASKPROC_ENV=development): RabbitMQ as guest on vhost " in (
        supervisor.log())
    assert "webhooks may reach public addresses and 127.0.0.0/8" in supervisor.log()
    # Loopback from port 1024 up only, never the service's own ports (docs/security.md,
    # Webhook egress).
    assert ("webhook destinations allowed: public addresses and 127.0.0.0/8:1024-65535, "
            "[::1/128]:1024-65535 (ports opened only when named on their own: ") in (
        supervisor.log())
    assert "mail-sink" not in started_pids(supervisor.log())  # SMTP was already up
    assert len(started_pids(supervisor.log())["scheduler"]) == 1  # make run runs the scheduler
    assert [pid for pid in children if alive(pid)] == []
    assert port_open("127.0.0.1", RABBIT_PORT)  # running before, so left alone
    assert port_open("127.0.0.1", MONGO_PORT)


async def _has(process: ServiceProcess, text: str) -> bool:
    if not process.running():
        raise AssertionError(f"the supervisor exited:\n{process.log()[-3000:]}")
    return text in process.log()


async def _restarted(process: ServiceProcess) -> bool:
    """The supervisor logged a second start; the task below shows that one consumes."""
    return len(started_pids(process.log()).get("sleep-worker", [])) == 2
