"""Runs the Celery peer (bench.celerypeer) in the bench's run: a worker on a vhost of its own,
then per batch a watcher and the load generator; tasks/s and the CPU per task of Celery's
processes, Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import celery
import redis

from bench import celerypeer
from bench.barerun import BareError, Role, all_succeed
from bench.leftovers import Leftovers
from bench.rabbit import new_vhost, release_vhost, vhost_url
from bench.sampler import CpuMeter
from devtools.local_services import listening_pid
from tests.support.processes import ServiceProcess
from tests.support.procfs import descendants
from tests.support.readiness import NotReady, wait_for_consumers

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB = 12  # the bench's own: flushed before and after
CONCURRENCY = 2
# Celery's default: no log line per task (taskproc's default INFO writes none per task either).
LOG_LEVEL = "WARNING"
_READY_S = 60.0
_STOP_GRACE_S = 20.0

# What each variant stores: "state" is the one compared with taskproc (every state in Redis).
VARIANTS = ("state", "no_state")


class CeleryError(Exception):
    """The Celery worker did not start, or a batch did not finish."""


def flush_redis(db: int = REDIS_DB) -> None:
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
    try:
        client.flushdb()
    finally:
        client.close()


class CeleryPeer:
    """One variant: its vhost, its worker, a warm-up batch and the measured batch."""

    def __init__(self, amqp_url: str, run_dir: Path, leftovers: Leftovers, producers: int,
                 base_env: Mapping[str, str]) -> None:
        self._amqp_url = amqp_url
        self._run_dir = run_dir
        self._leftovers = leftovers
        self._producers = producers
        self._base_env = dict(base_env)

    def run(self, variant: str, tasks: int, warmup: int) -> dict[str, Any]:
        state = variant == "state"
        vhost = new_vhost("taskproc-bench-celery")
        self._leftovers.hold("vhosts", vhost)
        url = vhost_url(self._amqp_url, vhost)
        done_file = self._run_dir / f"celery-done-{variant}.txt"
        done_file.unlink(missing_ok=True)
        if state:
            self._leftovers.hold("redis", str(REDIS_DB))
            flush_redis()
        env = {**self._base_env, "PYTHONUNBUFFERED": "1",
               celerypeer.BROKER_ENV: url,
               celerypeer.BACKEND_ENV: f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
               if state else "",
               celerypeer.DONE_FILE_ENV: "" if state else str(done_file),
               celerypeer.PRODUCERS_ENV: str(self._producers)}
        worker = ServiceProcess(
            f"celery-worker-{variant}",
            ["-m", "celery", "-A", "bench.celerypeer", "worker", "--pool", "prefork",
             "--concurrency", str(CONCURRENCY), "--loglevel", LOG_LEVEL, "-Q", celerypeer.QUEUE,
             "-n", f"bench-{variant}@%h"], env, self._run_dir, own_session=True)
        try:
            worker.start()
            self._leftovers.hold("pids", f"{worker.pid}:{' '.join(worker.args)}")
            try:
                wait_for_consumers(worker, url, {celerypeer.QUEUE: 1}, _READY_S)
            except NotReady as error:
                raise CeleryError(f"the Celery worker was not ready: {error}") from error
            asyncio.run(self._batch(env, warmup, None))
            pids = {"celery-worker": worker.pid}
            pids.update({f"celery-worker/{n}": pid
                         for n, pid in enumerate(descendants(worker.pid), start=1)})
            pids.update(self._servers())
            result = asyncio.run(self._batch(env, tasks, CpuMeter(pids)))
        finally:
            self._stop(worker)
            release_vhost(vhost, self._leftovers)
            if state:
                flush_redis()
                self._leftovers.release("redis", str(REDIS_DB))
            done_file.unlink(missing_ok=True)
        return {"variant": variant, "celery": celery.__version__, "tasks": tasks, "warmup": warmup,
                "producers": self._producers, "concurrency": CONCURRENCY, **result}

    def _servers(self) -> dict[str, int]:
        found = {}
        amqp_port = urlsplit(self._amqp_url).port or 5672
        for name, port in (("redis", REDIS_PORT), ("rabbitmq", amqp_port)):
            pid = listening_pid(port)
            if pid is not None:
                found[name] = pid
        return found

    async def _batch(self, env: dict[str, str], tasks: int,
                     cpu: CpuMeter | None) -> dict[str, Any]:
        """`tasks` tasks from the producers; tasks/s from the first submit to the last done."""
        roles = {name: Role(name, "bench.celerypeer", env) for name in ("watch", "produce")}
        readers: list[asyncio.Task[None]] = []
        cores: dict[str, float] = {}
        timeout_s = max(120.0, tasks / 50)
        try:
            for name in ("watch", "produce"):
                await roles[name].start([str(tasks)], self._run_dir)
                readers.append(asyncio.create_task(roles[name].read()))
                await asyncio.wait_for(roles[name].ready.wait(), 60)
            if cpu is not None:
                cpu.start()
            producer = roles["produce"].process
            assert producer is not None
            assert producer.stdin is not None
            producer.stdin.write(b"go\n")
            await producer.stdin.drain()
            await all_succeed(roles, readers, timeout_s, self._run_dir)
            if cpu is not None:
                cores = cpu.stop()
        except (BareError, TimeoutError) as error:
            raise CeleryError(str(error) or "a role was not ready in 60s") from error
        finally:
            for role in roles.values():
                role.kill()
            await asyncio.gather(*readers, return_exceptions=True)
        first = roles["produce"].times["first_submit"]
        last = roles["watch"].times["last_done"]
        return {"tasks_per_s": round(tasks / (last - first), 1),
                "seconds": round(last - first, 2),
                "submit_seconds": round(roles["produce"].times["last_submit"] - first, 2),
                "generator_cpu_s": roles["produce"].cpu_s, "watcher_cpu_s": roles["watch"].cpu_s,
                **_cpu(cores, cpu, tasks)}

    def _stop(self, worker: ServiceProcess) -> None:
        if worker.process is None:
            return
        if worker.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)
                worker.process.wait(timeout=10)
        self._leftovers.release("pids", f"{worker.pid}:{' '.join(worker.args)}")


def _cpu(cores: dict[str, float], cpu: CpuMeter | None, tasks: int) -> dict[str, Any]:
    if cpu is None:
        return {}
    per_task = _grouped(cpu.ms_per_task(tasks))
    return {"cpu_cores": _grouped(cores), "cpu_ms_per_task": per_task,
            "cpu_ms_per_task_total": round(sum(per_task.values()), 3)}


def _grouped(by_process: Mapping[str, float]) -> dict[str, float]:
    """The worker's processes (its main process and the prefork children) as one figure."""
    grouped: dict[str, float] = {}
    for name, value in by_process.items():
        key = name.split("/", 1)[0]
        grouped[key] = round(grouped.get(key, 0.0) + value, 3)
    return grouped
