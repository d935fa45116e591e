"""The measurements, each against a running stack: closed-loop end to end (which also gives the
POST figure), open-loop latency with probes, GETs, and the soak."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pymongo.asynchronous.collection import AsyncCollection

from bench.driver import run_load
from bench.sampler import CpuMeter, memory_trend, sample_rss
from bench.tracker import Tracker

_STALL_S = 60.0  # no task finished for this long: the system is stuck, stop waiting


@dataclass
class Target:
    """A running stack and where its tasks are stored."""

    port: int
    tasks: AsyncCollection[dict[str, Any]]
    log_dir: Path
    clients: int
    client: str
    added_ids: IO[str] | None  # every accepted id goes here (to remove them afterwards)
    api_key: str  # what the load generator sends (made in the stack's database)

    def spec(self, job: str, **fields: Any) -> dict[str, Any]:
        return {"job": job, "host": "127.0.0.1", "port": self.port, "clients": self.clients,
                "client": self.client, "api_key": self.api_key, **fields}

    def tracker(self) -> tuple[Tracker, Callable[[str, float, float], None]]:
        tracker = Tracker(self.tasks)

        def accepted(task_id: str, start: float, end: float) -> None:
            tracker.add(task_id)
            if self.added_ids is not None:
                self.added_ids.write(task_id + "\n")

        return tracker, accepted


async def _poll_while(tracker: Tracker, running: asyncio.Task[Any]) -> None:
    while not running.done():
        await tracker.poll()
        await asyncio.wait({running}, timeout=0.25)


async def end_to_end(target: Target, tasks: int, *, deadline_s: float,
                     cpu: CpuMeter | None = None) -> dict[str, Any]:
    """`tasks` no-op tasks from `clients` clients as fast as they go, until all show
    `succeeded`: tasks/s end to end, and accepted/s and latency of the POSTs themselves."""
    tracker, accepted = target.tracker()
    if cpu is not None:
        cpu.start()
    load = asyncio.create_task(run_load(target.spec("closed", tasks=tasks),
                                        target.log_dir / "load.log", accepted))
    await _poll_while(tracker, load)
    posted = load.result()
    first = posted["first_start"] or time.monotonic()
    complete = await tracker.wait_all(stall_s=_STALL_S, deadline=first + deadline_s)
    cores = cpu.stop() if cpu is not None else {}
    per_task = cpu.ms_per_task(tracker.succeeded) if cpu is not None else {}
    end = tracker.last_done_at if complete else time.monotonic()
    span = (end or first) - first
    return {"tasks": tasks, "accepted": posted["accepted"], "succeeded": tracker.succeeded,
            "failed": tracker.failed, "complete": complete, "seconds": round(span, 2),
            "tasks_per_s": round(tracker.succeeded / span, 1) if span > 0 else None,
            "post": {key: posted[key] for key in ("accepted_per_s", "latency", "statuses")},
            "generator": posted["generator"], "cpu_cores": cores,
            "cpu_ms_per_task": per_task,
            "cpu_ms_per_task_total": round(sum(per_task.values()), 3) if per_task else None}


async def open_loop(target: Target, rate: float, seconds: float, probes_per_s: float,
                    *, during: Callable[[asyncio.Event], Any] | None = None) -> dict[str, Any]:
    """Submissions at `rate`/s for `seconds`, with probes for submit -> `succeeded` latency,
    then a wait until every submitted task has finished (so the next phase starts quiet)."""
    tracker, accepted = target.tracker()
    spec = target.spec("open", rate=rate, seconds=seconds, probes_per_s=probes_per_s,
                       probe_poll_s=0.0015, emit_ids=True)
    load = asyncio.create_task(run_load(spec, target.log_dir / "load.log", accepted))
    stop = asyncio.Event()
    side = asyncio.create_task(during(stop)) if during is not None else None
    try:
        await _poll_while(tracker, load)
    finally:
        stop.set()
    result: dict[str, Any] = load.result()
    result["side"] = await side if side is not None else None
    backlog = tracker.pending
    result["backlog_at_end"] = backlog
    result["drained"] = await tracker.wait_all(stall_s=_STALL_S,
                                               deadline=time.monotonic() + 300)
    result["failed"] = tracker.failed
    return result


async def gets(target: Target, ids: list[str], seconds: float) -> dict[str, Any]:
    """GETs of existing tasks, one client then `clients` at once."""
    found: dict[str, Any] = await run_load(target.spec("get", ids=ids, seconds=seconds),
                                           target.log_dir / "load.log")
    return found


async def soak(target: Target, rate: float, minutes: float,
               pids: Callable[[], dict[str, int]]) -> dict[str, Any]:
    """Half the max rate for `minutes`, with every process's RSS sampled every 10 s."""

    async def watch(stop: asyncio.Event) -> dict[str, Any]:
        samples = await sample_rss(pids, 10.0, stop)
        return {name: memory_trend(points) for name, points in samples.items()}

    result = await open_loop(target, rate, minutes * 60, 1.0, during=watch)
    result["memory"] = result.pop("side")
    result["minutes"] = minutes
    return result
