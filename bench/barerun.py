"""Runs the bare aio-pika chain (bench.bare): three processes, one figure."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from bench import bare


class BareError(Exception):
    """A process of the chain failed or the chain did not finish in time."""


class Role:
    """One process of the chain and the lines it printed: `python -m MODULE NAME ARGS...`
    (bench.celeryrun runs the Celery peer's roles with it too)."""

    def __init__(self, name: str, module: str = "bench.bare",
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.module = module
        self.env = env
        self.times: dict[str, float] = {}
        self.cpu_s: float | None = None
        self.ready = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def log_name(self) -> str:
        return f"{self.module.rsplit('.', 1)[-1]}-{self.name}.log"

    async def start(self, args: list[str], log_dir: Path) -> None:
        with (log_dir / self.log_name).open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, self.name, *args,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env=self.env)

    async def read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            words = raw.decode().split()
            if words == ["ready"]:
                self.ready.set()
            elif words[:1] == ["T"]:
                self.times[words[1]] = float(words[2])
            elif words[:1] == ["C"]:
                self.cpu_s = float(words[1])
        await self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


async def all_succeed(roles: dict[str, Role], readers: list[asyncio.Task[None]],
                       timeout_s: float, log_dir: Path) -> None:
    """Wait for every role to exit 0; the first that fails (a broker restart, say) ends it."""
    pending = set(readers)
    deadline = time.monotonic() + timeout_s
    while pending:
        _, pending = await asyncio.wait(pending, timeout=max(deadline - time.monotonic(), 0),
                                        return_when=asyncio.FIRST_COMPLETED)
        for role in roles.values():
            code = role.process.returncode if role.process is not None else None
            if code not in (None, 0):
                raise BareError(f"{role.module} {role.name} exited with {code}; see "
                                f"{log_dir / role.log_name}")
        if pending and time.monotonic() >= deadline:
            raise BareError(f"{', '.join(roles)} did not finish in {timeout_s:.0f}s")


async def run_bare(url: str, tasks: int, log_dir: Path, timeout_s: float) -> dict[str, Any]:
    """N tasks through the chain; tasks/s from the first publish to the last `succeeded`."""
    connection = await aio_pika.connect(url)
    async with connection:
        await bare.declare(await connection.channel())
        roles = {name: Role(name) for name in ("worker", "events", "publisher")}
        readers: list[asyncio.Task[None]] = []
        try:
            for name in ("worker", "events", "publisher"):
                await roles[name].start([url, str(tasks)], log_dir)
                readers.append(asyncio.create_task(roles[name].read()))
                if name != "publisher":
                    await asyncio.wait_for(roles[name].ready.wait(), 30)
            began = time.monotonic()
            await all_succeed(roles, readers, timeout_s, log_dir)
        finally:
            for role in roles.values():
                role.kill()
            await asyncio.gather(*readers, return_exceptions=True)
            # After a broker restart this fails; deleting the vhost removes them anyway.
            with contextlib.suppress(AMQPError, ChannelInvalidStateError, RuntimeError):
                await bare.remove(await connection.channel())
    first = roles["publisher"].times["first_publish"]
    last = roles["events"].times["last_succeeded"]
    return {"tasks": tasks, "tasks_per_s": round(tasks / (last - first), 1),
            "seconds": round(last - first, 2), "wall_s": round(time.monotonic() - began, 2),
            "cpu_s": {name: role.cpu_s for name, role in roles.items()}}
