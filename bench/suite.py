"""The whole run in order: the bare chain, the 10,000-task store (with the soak), the
1,000,000-task store; everything it holds is released at the end, Ctrl-C included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aio_pika.exceptions import AMQPError
from pymongo import AsyncMongoClient, MongoClient
from redis.exceptions import RedisError

from bench import fill, phases
from bench.barerun import BareError, run_bare
from bench.celeryrun import VARIANTS, CeleryError, CeleryPeer, flush_redis
from bench.deployment import Deployment
from bench.documents import task_id
from bench.leftovers import Leftovers, kill_stale_process
from bench.machine import machine, settings_in_force
from bench.options import Options
from bench.profiling import Profiler
from bench.rabbit import RabbitError, new_vhost, release_vhost, vhost_exists, vhost_url
from bench.sampler import CpuMeter
from devtools.local_services import listening_pid
from infra.runtime.settings.system import SystemSettings
from tests.support.keys import issue_key

_READY_S = {"10k": 120.0, "1m": 1800.0}  # a first start on the big store builds its indexes
_GET_SAMPLE = 2000


# Tasks/s of the quiet-system latency run: well below what any process notices.
QUIET_RATE = 20.0


def say(text: str) -> None:
    print(text, flush=True)


class Bench:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.settings = SystemSettings()
        self.env = dict(os.environ)
        options.run_dir.mkdir(parents=True, exist_ok=True)
        self.leftovers = Leftovers(options.run_dir / "held.json")
        self.added_ids = options.run_dir / f"added-{options.big_database}.ids"
        self.mongo: MongoClient[dict[str, Any]] = MongoClient(
            self.settings.mongodb_url, tz_aware=True, serverSelectionTimeoutMS=10_000)
        self.tasks: int | None = options.tasks
        self.results: dict[str, Any] = {
            "started_at": datetime.now(UTC).isoformat(), "machine": machine(),
            "settings": settings_in_force(self.env), "stores": {}, "notes": [],
            "options": {k: str(v) for k, v in vars(options).items()},
        }

    def note(self, text: str) -> None:
        say(f"  note: {text}")
        self.results["notes"].append(text)

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        for old in self.options.run_dir.glob("*.log"):
            old.unlink()  # each run's logs are its own
        self._describe()
        try:
            self._release_leftovers()
            self._bare()
            self._small_store()
            self._celery()
            self._big_store()
        finally:
            self._release_leftovers()
            self.mongo.close()
        self.results["minutes"] = round((time.monotonic() - began) / 60, 1)
        return self.results

    def _describe(self) -> None:
        found, o = self.results["machine"], self.options
        soak = o.soak_minutes
        say(f"machine: {found['cores']} cores, load average {found['load_average']}, "
            f"{found['memory_mib']} MiB, Python {found['python']}, commit {found['commit']}")
        say(f"settings: defaults except {self.results['settings'] or 'none'}; the bench sets "
            f"RABBITMQ_URL (own vhost), MONGODB_DATABASE, GATEWAY_PORT")
        say(f"plan: bare chain ~1 min; 10k store: warm-up, e2e ~{o.e2e_seconds:.0f}s, latency "
            f"{o.latency_seconds:.0f}s, GET {2 * o.get_seconds:.0f}s, soak {soak:g} min; "
            f"Celery peer ~1 min; 1M store: fill once (~5 min), then the same without the soak")

    def _release_leftovers(self) -> None:
        """What this run, or one killed before it, still holds."""
        for entry in self.leftovers.held("pids"):
            if kill_stale_process(entry):
                say(f"  stopped a leftover process {entry}")
            self.leftovers.release("pids", entry)
        for vhost in self.leftovers.held("vhosts"):
            with contextlib.suppress(RabbitError):
                if not vhost_exists(vhost):
                    self.leftovers.release("vhosts", vhost)
                    continue
            release_vhost(vhost, self.leftovers)
        for db in self.leftovers.held("redis"):
            with contextlib.suppress(RedisError):
                flush_redis(int(db))
                self.leftovers.release("redis", db)
        for database in self.leftovers.held("databases"):
            self.mongo.drop_database(database)
            self.leftovers.release("databases", database)
        if self.leftovers.held("big"):
            o = self.options
            stored = fill.restore(self.mongo, o.big_database, o.big, self.added_ids)
            say(f"  removed the tasks the bench added to {o.big_database}: {stored:,} stored")
            self.leftovers.release("big", o.big_database)
            if "1m" in self.results["stores"]:
                self.results["stores"]["1m"]["stored_after_cleanup"] = stored

    def _bare(self) -> None:
        tasks = self.options.bare_tasks
        say(f"\n== bare aio-pika chain: {tasks:,} tasks (~{tasks / 500:.0f}s)")
        for attempt in (1, 2):
            if attempt > 1:
                _wait_for_port(self.settings.rabbitmq_url, 5672, 120)
            try:
                bare = self._bare_once(tasks)
            except (BareError, RabbitError, AMQPError, OSError) as error:
                self.note(f"bare chain, attempt {attempt}: {error}")
                continue
            say(f"  {bare['tasks_per_s']:,} tasks/s (CPU s: {bare['cpu_s']})")
            self.results["bare"] = bare
            return

    def _bare_once(self, tasks: int) -> dict[str, Any]:
        vhost = new_vhost("taskproc-bench-bare")
        self.leftovers.hold("vhosts", vhost)
        try:
            url = vhost_url(self.settings.rabbitmq_url, vhost)
            timeout_s = max(120.0, tasks / 50)
            return asyncio.run(run_bare(url, tasks, self.options.run_dir, timeout_s))
        finally:
            release_vhost(vhost, self.leftovers)

    def _celery(self) -> None:
        """Celery on the same machine and broker, as many tasks as taskproc's e2e phase."""
        o = self.options
        tasks = self.tasks or o.task_bounds[0]
        say(f"\n== Celery peer: {tasks:,} tasks from {o.clients} producer threads, prefork 2, "
            f"quorum queue + confirms; with every state in Redis, then without a backend")
        peer = CeleryPeer(self.settings.rabbitmq_url, o.run_dir, self.leftovers, o.clients,
                          self.env)
        found: dict[str, Any] = {}
        self.results["celery"] = found
        for variant in VARIANTS:
            try:
                result = peer.run(variant, tasks, o.warmup_tasks)
            except (CeleryError, RabbitError, RedisError, OSError) as error:
                self.note(f"Celery peer ({variant}): {error}")
                continue
            found[variant] = result
            say(f"  {variant}: {result['tasks_per_s']:,} tasks/s ({tasks:,} in "
                f"{result['seconds']}s); CPU ms per task {result['cpu_ms_per_task']} "
                f"(total {result['cpu_ms_per_task_total']}); generator "
                f"{result['generator_cpu_s']} CPU s")

    def _small_store(self) -> None:
        o = self.options
        say(f"\n== store of {o.small:,} tasks ({o.small_database})")
        self.leftovers.hold("databases", o.small_database)
        took = fill.fill_fresh(self.mongo, o.small_database, o.small)
        say(f"  stored {o.small:,} tasks in {took:.1f}s")
        self._measure("10k", o.small_database, o.small, soak=True)

    def _big_store(self) -> None:
        o = self.options
        if o.skip_1m:
            self.note("the 1M store was skipped (--skip-1m)")
            return
        if o.quick and not fill.million_ready(self.mongo, o.big_database, o.big):
            self.note(f"the {o.big:,}-task store is not filled yet: skipped with --quick "
                      "(a full run fills it once)")
            return
        say(f"\n== store of {o.big:,} tasks ({o.big_database})")
        fill.ensure_filled(self.mongo, o.big_database, o.big, self.added_ids)
        self.leftovers.hold("big", o.big_database)
        self._measure("1m", o.big_database, o.big, soak=False)

    def _measure(self, key: str, database: str, size: int, *, soak: bool) -> None:
        deployment = Deployment(self.env, self.settings.rabbitmq_url, database,
                                self.options.run_dir, self.leftovers, _READY_S[key])
        store: dict[str, Any] = {"database": database, "stored_before": size}
        self.results["stores"][key] = store
        deployment.start()
        try:
            asyncio.run(Measurement(self, deployment, key, store).run(size, soak=soak))
        finally:
            deployment.stop()
        store["stored_after"] = fill.stored_count(self.mongo, database)


class Measurement:
    """The phases against one store, on one running deployment."""

    def __init__(self, bench: Bench, deployment: Deployment, key: str,
                 store: dict[str, Any]) -> None:
        self.bench = bench
        self.options = bench.options
        self.deployment = deployment
        self.key = key
        self.store = store
        self._servers: dict[str, int] = {}

    async def run(self, size: int, *, soak: bool) -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self.bench.settings.mongodb_url, tz_aware=True)
        added = self.bench.added_ids.open("a", buffering=1) if self.key == "1m" else None
        try:
            # One key for the whole run, at the default rate limit (5,000/s): the bench must
            # measure the system, not the limit. Of the default tenant, which owns the tasks
            # the store was filled with (they name no tenant), so the GET phase finds them.
            api_key = await issue_key(self.bench.settings.mongodb_url, self.deployment.database,
                                      tenant=self.bench.settings.default_tenant)
            target = phases.Target(self.deployment.port,
                                   client[self.deployment.database]["tasks"],
                                   self.options.run_dir, self.options.clients,
                                   self.options.client, added, api_key)
            rate = await self._throughput(target)
            if rate is not None:
                await self._latency(target, rate / 2)
            await self._latency(target, QUIET_RATE, quiet=True)
            await self._gets(target, size)
            if soak and rate is not None:
                await self._soak(target, rate / 2)
        finally:
            if added is not None:
                added.close()
            await client.close()

    def _extra_pids(self) -> dict[str, int]:
        """The servers the system leans on, found by the ports they listen on; remembered, as
        a broker whose app is stopped (by someone else's fault tests) listens on nothing."""
        mongo_port = urlsplit(self.bench.settings.mongodb_url).port or 27017
        amqp_port = urlsplit(self.bench.settings.rabbitmq_url).port or 5672
        for name, port in (("nx-27017", mongo_port), ("rabbitmq", amqp_port)):
            known = self._servers.get(name)
            if known is None or not os.path.exists(f"/proc/{known}"):
                pid = listening_pid(port)
                if pid is not None:
                    self._servers[name] = pid
        return dict(self._servers)

    def _refusals(self, phase: str, statuses: dict[str, int]) -> None:
        other = {status: count for status, count in statuses.items() if status != "202"}
        if other:
            self.bench.note(f"{self.key} {phase}: answers other than 202: {other} (a broker or "
                            "store away, e.g. another user's fault tests on a shared machine?)")

    async def _restart(self, target: phases.Target) -> None:
        await asyncio.to_thread(self.deployment.restart)
        target.port = self.deployment.port

    async def _throughput(self, target: phases.Target) -> float | None:
        """Warm-up (which sizes the run), then the max-rate end-to-end run; its tasks/s."""
        warmup = self.options.warmup_tasks
        say(f"  warm-up: {warmup} tasks (sizes the run; deadline 180s)")
        first = await phases.end_to_end(target, warmup, deadline_s=180)
        self.store["warmup"] = first
        say(f"    {first['tasks_per_s']} tasks/s, {first['succeeded']}/{warmup} succeeded")
        if not first["complete"] or not first["tasks_per_s"]:
            self.bench.note(f"{self.key}: the warm-up did not finish: no e2e or latency figure")
            await self._restart(target)
            return None
        tasks = self._tasks(first["tasks_per_s"])
        expected = tasks / first["tasks_per_s"]
        deadline = max(120.0, min(900.0, 5 * expected))
        say(f"  end to end: {tasks:,} tasks, {self.options.clients} clients "
            f"(~{expected:.0f}s at the warm-up rate; gives up after {deadline:.0f}s)")
        pids = {**self.deployment.pids(), **self._extra_pids()}
        profiler = self._start_profiler(pids, expected)
        result = await phases.end_to_end(target, tasks, deadline_s=deadline, cpu=CpuMeter(pids))
        if profiler is not None:
            result["profile"] = await asyncio.to_thread(profiler.finish)
        self.store["e2e"] = result
        self._refusals("e2e", result["post"]["statuses"])
        say(f"    {result['tasks_per_s']} tasks/s end to end ({result['succeeded']:,}/{tasks:,} "
            f"in {result['seconds']}s); POST {result['post']['accepted_per_s']}/s, "
            f"p99 {result['post']['latency']['p99_ms']} ms; generator "
            f"{result['generator']['cores']} cores; CPU cores by process {result['cpu_cores']}")
        _print_profile(result.get("profile"))
        if not result["complete"]:
            self.bench.note(f"{self.key}: the e2e run did not finish ({result['succeeded']:,}/"
                            f"{tasks:,}); its rate counts what finished")
            await self._restart(target)
        rate: float | None = result["tasks_per_s"]
        return rate

    def _tasks(self, warm_rate: float) -> int:
        if self.bench.tasks is None:
            low, high = self.options.task_bounds
            self.bench.tasks = max(low, min(high, round(warm_rate * self.options.e2e_seconds)))
        return self.bench.tasks

    def _start_profiler(self, pids: dict[str, int], expected_s: float) -> Profiler | None:
        if not self.options.profile:
            return None
        chosen = {f"{name}-{self.key}": pid for name, pid in pids.items()
                  if name in ("gateway", "sleep-worker", "projector", "nx-27017")}
        seconds = max(5, min(60, round(expected_s * 0.8)))
        say(f"  profiling {', '.join(chosen)} for {seconds}s with py-spy")
        profiler = Profiler(self.options.run_dir)
        profiler.start(chosen, seconds)
        return profiler

    async def _latency(self, target: phases.Target, rate: float, *, quiet: bool = False) -> None:
        """Submit -> `succeeded` seen, at half the max rate or (`quiet`) on a quiet system,
        where what is left is the path itself, not queueing behind other work."""
        seconds = self.options.latency_seconds
        which = "a quiet system" if quiet else "half the max"
        say(f"  latency: {rate:,.0f} tasks/s ({which}) for {seconds:.0f}s, 5 probes/s "
            f"polling GET every 1.5 ms")
        result = await phases.open_loop(target, rate, seconds, 5.0)
        self.store["quiet_latency" if quiet else "latency"] = result
        self._refusals("latency", result["statuses"])
        say(f"    probes p50 {result['probes']['p50_ms']} ms, p99 {result['probes']['p99_ms']} "
            f"ms ({result['probes']['count']} probes, {result['probes']['lost']} lost); "
            f"accepted {result['accepted_per_s']}/s")
        if not result["drained"]:
            self.bench.note(f"{self.key}: tasks left over after the latency run")
            await self._restart(target)

    async def _gets(self, target: phases.Target, size: int) -> None:
        seconds = self.options.get_seconds
        say(f"  GET: random stored tasks, {seconds:.0f}s one client, {seconds:.0f}s "
            f"{self.options.clients} clients")
        picked = random.sample(range(size), min(_GET_SAMPLE, size))
        ids = [task_id(self.deployment.database, index) for index in picked]
        result = await phases.gets(target, ids, seconds)
        self.store["get"] = result
        for label in ("sequential", "concurrent"):
            found = result[label]
            say(f"    {label}: p50 {found['latency']['p50_ms']} ms, p99 "
                f"{found['latency']['p99_ms']} ms, {found['per_s']}/s, answers {found['statuses']}")

    async def _soak(self, target: phases.Target, rate: float) -> None:
        minutes = self.options.soak_minutes
        say(f"  soak: {rate:,.0f} tasks/s for {minutes:g} min, RSS of every process every 10s")

        def pids() -> dict[str, int]:
            return {**self.deployment.pids(), **self._extra_pids()}

        result = await phases.soak(target, rate, minutes, pids)
        self.store["soak"] = result
        self._refusals("soak", result["statuses"])
        say(f"    accepted {result['accepted_per_s']}/s, probes p50 {result['probes']['p50_ms']} "
            f"ms p99 {result['probes']['p99_ms']} ms, backlog at end {result['backlog_at_end']}")


def _wait_for_port(url: str, default: int, seconds: float) -> None:
    """Until the service behind `url` listens again (someone else may have restarted it)."""
    parts = urlsplit(url)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or default), timeout=1):
            return
        time.sleep(1)


def _print_profile(profile: dict[str, list[tuple[str, float]]] | None) -> None:
    for name, frames in (profile or {}).items():
        say(f"    py-spy {name}: top frames by own time")
        for frame, share in frames:
            say(f"      {share:5.1f}%  {frame}")
