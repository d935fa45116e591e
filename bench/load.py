"""The HTTP load generator, run as its own process: `python -m bench.load < SPEC_JSON`.

It reads one job from its standard input (closed-loop submissions, open-loop submissions with
latency probes, or GETs), writes a line `A <task_id> <start> <end>` per accepted submission
(times are `time.monotonic()`, which is system-wide on Linux, so the orchestrator can compare
them), and a last line `R <json>` with its results and its own CPU use.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.httpwire import Answer, HttpError, Pool
from bench.stats import summary_ms

NOOP_TASK = b'{"task_type": "sleep", "payload": {"seconds": 0}}'
Send = Callable[[str, str, bytes | None], Awaitable[Answer]]


class Recorder:
    """What a job saw: latencies, answers by status, failures."""

    def __init__(self, emit_ids: bool) -> None:
        self.emit_ids = emit_ids
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.first_start: float | None = None
        self.last_end: float | None = None

    async def submit(self, send: Send) -> tuple[str | None, float]:
        """POST one no-op task; its id (None if refused) and when the request started."""
        start = time.monotonic()
        if self.first_start is None:
            self.first_start = start
        try:
            answer = await send("POST", "/tasks", NOOP_TASK)
        except (OSError, HttpError, httpx.HTTPError) as error:
            self.statuses[type(error).__name__] += 1
            return None, start
        end = time.monotonic()
        self.last_end = end
        self.statuses[str(answer.status)] += 1
        if answer.status != 202:
            return None, start
        self.latencies.append(end - start)
        task_id = str(json.loads(answer.body)["task_id"])
        if self.emit_ids:
            emit_id(task_id, start, end)
        return task_id, start

    def result(self) -> dict[str, Any]:
        accepted = len(self.latencies)
        span = (self.last_end or 0) - (self.first_start or 0)
        return {"accepted": accepted, "statuses": dict(self.statuses),
                "first_start": self.first_start, "last_end": self.last_end,
                "accepted_per_s": round(accepted / span, 1) if span > 0 else None,
                "latency": summary_ms(self.latencies)}


async def closed_loop(send: Send, spec: dict[str, Any]) -> dict[str, Any]:
    """`tasks` submissions by `clients` clients, each sending its next as soon as one ends."""
    recorder = Recorder(emit_ids=True)
    remaining = int(spec["tasks"])

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await recorder.submit(send)

    await asyncio.gather(*(client() for _ in range(int(spec["clients"]))))
    return recorder.result()


def emit_id(task_id: str, start: float, end: float) -> None:
    sys.stdout.write(f"A {task_id} {start:.6f} {end:.6f}\n")


async def probe(send: Send, poll_s: float, timeout_s: float, emit: bool) -> float | None:
    """Submit one task and GET it until `succeeded`: seconds from submit to seeing it.

    It polls every `poll_s` while the answer could still meet the targets (tens of ms), then
    every 5 % of the time waited so far: on a slow system, polling every 1.5 ms would be a load
    of its own that slows what it measures; the error stays within 5 %.
    """
    start = time.monotonic()
    answer = await send("POST", "/tasks", NOOP_TASK)
    if answer.status != 202:
        return None
    task_id = str(json.loads(answer.body)["task_id"])
    if emit:
        emit_id(task_id, start, time.monotonic())
    path = f"/tasks/{task_id}"
    while (waited := time.monotonic() - start) < timeout_s:
        seen = await send("GET", path, None)
        if seen.status == 200 and json.loads(seen.body)["status"] == "succeeded":
            return time.monotonic() - start
        await asyncio.sleep(poll_s if waited < 0.05 else min(0.05 * waited, 0.05))
    return None


async def open_loop(send: Send, probe_send: Send, spec: dict[str, Any]) -> dict[str, Any]:
    """Submissions at a fixed rate whatever the answers take, plus probes for the latency."""
    rate, duration = float(spec["rate"]), float(spec["seconds"])
    recorder = Recorder(emit_ids=bool(spec.get("emit_ids")))
    probes: list[float] = []
    lost_probes = 0
    in_flight: set[asyncio.Future[Any]] = set()
    most_behind = 0.0

    async def one_probe() -> None:
        nonlocal lost_probes
        try:
            seen = await probe(probe_send, float(spec["probe_poll_s"]), 30.0,
                               recorder.emit_ids)
        except (OSError, HttpError, httpx.HTTPError, KeyError, ValueError):
            seen = None
        if seen is None:
            lost_probes += 1
        else:
            probes.append(seen)

    def spawn(work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    start = time.monotonic()
    sent = probes_sent = 0
    probe_task: asyncio.Future[None] | None = None
    probe_every = 1 / float(spec["probes_per_s"]) if spec["probes_per_s"] else None
    while (now := time.monotonic()) - start < duration:
        due = int((now - start) * rate) + 1
        most_behind = max(most_behind, (due - sent) / rate)
        for _ in range(due - sent):
            spawn(recorder.submit(send))
        sent = due
        # One probe at a time: each polls, and several would add up to a load of their own.
        probing = probe_task is not None and not probe_task.done()
        if probe_every is not None and not probing and now - start >= probes_sent * probe_every:
            probe_task = asyncio.ensure_future(one_probe())
            spawn(probe_task)
            probes_sent += 1
        await asyncio.sleep(0.002)
    if in_flight:
        await asyncio.wait(in_flight, timeout=60)
    return {**recorder.result(), "offered_per_s": rate, "seconds": duration,
            "most_behind_s": round(most_behind, 3),
            "probes": {**summary_ms(probes), "lost": lost_probes}}


async def gets(send: Send, spec: dict[str, Any]) -> dict[str, Any]:
    """GETs of the given ids: first one client for `seconds`, then `clients` at once."""
    ids: list[str] = spec["ids"]
    found: dict[str, Any] = {}
    for label, clients in (("sequential", 1), ("concurrent", int(spec["clients"]))):
        latencies: list[float] = []
        statuses: Counter[str] = Counter()
        deadline = time.monotonic() + float(spec["seconds"])
        cursor = 0

        async def client(latencies: list[float] = latencies,
                         statuses: Counter[str] = statuses, deadline: float = deadline) -> None:
            nonlocal cursor
            while time.monotonic() < deadline:
                task_id, cursor = ids[cursor % len(ids)], cursor + 1
                start = time.monotonic()
                answer = await send("GET", f"/tasks/{task_id}", None)
                latencies.append(time.monotonic() - start)
                statuses[str(answer.status)] += 1

        began = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        per_s = len(latencies) / (time.monotonic() - began)
        found[label] = {"clients": clients, "statuses": dict(statuses),
                        "per_s": round(per_s, 1), "latency": summary_ms(latencies)}
    return found


def raw_sender(pool: Pool) -> Send:
    return pool.request


def httpx_sender(client: httpx.AsyncClient) -> Send:
    async def send(method: str, path: str, body: bytes | None) -> Answer:
        headers = {"Content-Type": "application/json"} if body is not None else None
        answer = await client.request(method, path, content=body, headers=headers)
        return Answer(answer.status_code, answer.content)

    return send


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, kind = spec["host"], int(spec["port"]), spec.get("client", "raw")
    limit = int(spec.get("connections", 512))
    # Every request carries the bench's API key (made in the bench's database).
    headers = {"Authorization": f"Bearer {spec['api_key']}"}
    pool, probe_pool = Pool(host, port, limit, headers), Pool(host, port, 16, headers)
    client = httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60,
                               limits=httpx.Limits(max_connections=limit), headers=headers)
    send = httpx_sender(client) if kind == "httpx" else raw_sender(pool)
    try:
        if spec["job"] == "closed":
            return await closed_loop(send, spec)
        if spec["job"] == "open":
            return await open_loop(send, raw_sender(probe_pool), spec)
        return await gets(send, spec)
    finally:
        pool.close()
        probe_pool.close()
        await client.aclose()


def main() -> None:
    spec = json.loads(sys.stdin.read())
    began, cpu = time.monotonic(), os.times()
    result = asyncio.run(run(spec))
    after = os.times()
    wall = time.monotonic() - began
    used = (after.user - cpu.user) + (after.system - cpu.system)
    result["generator"] = {"client": spec.get("client", "raw"), "cpu_s": round(used, 2),
                           "wall_s": round(wall, 2), "cores": round(used / wall, 2)}
    sys.stdout.write("R " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
