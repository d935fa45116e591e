"""Readiness by probe: a process is ready when what it serves answers, never when its log says so.

- the gateway: `GET /health/ready` answers 200 (or `/health`, for a gateway started without a
  dependency on purpose);
- a worker or the projector: each of its queues has as many consumers as there are live
  processes that consume it, read with a passive queue declare (RabbitMQ answers it from the
  queue itself, at once; `rabbitmqctl list_queues` lags by a stats tick).

The waits are synchronous (process starters are called from threads and from sync fixtures);
the AMQP probe runs its own event loop on a thread of its own, so it works whether or not the
caller's thread runs a loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import httpx
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity

from infra.rabbitmq.nodes import connect_first

T = TypeVar("T")

_INTERVAL_S = 0.05
_LOG_TAIL = 3000


class Watched(Protocol):
    """What a wait needs of the process it waits for (a ServiceProcess)."""

    name: str

    def running(self) -> bool: ...

    def log(self) -> str: ...


class NotReady(AssertionError):
    """A process did not become ready in time, or exited first."""


def _fail(process: Watched | None, problem: str) -> NotReady:
    if process is None:
        return NotReady(problem)
    return NotReady(f"{process.name}: {problem}\n--- log tail of {process.name}:\n"
                    f"{process.log()[-_LOG_TAIL:]}")


def wait_for_http(process: Watched, base_url: str, path: str, timeout_s: float = 30.0) -> None:
    """Poll `GET base_url+path` until it answers 200; fail with the last answer and the log."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while True:
            if not process.running():
                raise _fail(process, f"exited before GET {path} answered 200 (last: {last})")
            try:
                answer = client.get(path)
            except httpx.HTTPError as error:
                last = repr(error)
            else:
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:300]}"
            if time.monotonic() > deadline:
                raise _fail(process, f"GET {path} did not answer 200 in {timeout_s:.0f}s "
                                     f"(last: {last})")
            time.sleep(_INTERVAL_S)


async def consumer_counts(connection: AbstractConnection, queues: list[str]) -> dict[str, int]:
    """Consumers of each queue now; a queue not declared yet has none."""
    counts: dict[str, int] = {}
    for queue in queues:
        # A passive declare of a missing queue closes its channel: one channel per queue.
        channel = await connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            counts[queue] = declared.declaration_result.consumer_count or 0
        except ChannelNotFoundEntity:
            counts[queue] = 0
        finally:
            if not channel.is_closed:
                await channel.close()
    return counts


def wait_for_consumers(
    process: Watched, rabbitmq_url: str, at_least: Mapping[str, int], timeout_s: float = 30.0,
) -> None:
    """Return once every queue in `at_least` has at least that many consumers, all at one look.

    A worker cancels its first consumer and subscribes again at its full prefetch after its
    first fresh message, so a queue's count can drop for a moment and come back: the wait polls
    until one look sees every count reached, and a lower count on the way is no failure.
    """

    def reached(counts: Mapping[str, int]) -> bool:
        return all(counts[queue] >= want for queue, want in at_least.items())

    _run(_poll(process, rabbitmq_url, list(at_least), reached, timeout_s,
               f"consumers on {dict(at_least)} (at least)"))


def wait_for_consumers_gone(
    rabbitmq_url: str, at_most: Mapping[str, int], timeout_s: float = 30.0,
) -> None:
    """Return once no queue in `at_most` has more consumers than given: RabbitMQ has dropped
    the consumers of processes that were killed, so they cannot pass for a new one's."""

    def reached(counts: Mapping[str, int]) -> bool:
        return all(counts[queue] <= most for queue, most in at_most.items())

    _run(_poll(None, rabbitmq_url, list(at_most), reached, timeout_s,
               f"consumers on {dict(at_most)} (at most), those of killed processes gone"))


async def _poll(
    process: Watched | None, rabbitmq_url: str, queues: list[str],
    reached: Callable[[Mapping[str, int]], bool], timeout_s: float, what: str,
) -> None:
    deadline = time.monotonic() + timeout_s
    last: dict[str, int] | str = "no look yet"
    connection: AbstractConnection | None = None
    try:
        while True:
            if process is not None and not process.running():
                raise _fail(process, f"exited while waiting for {what} (last: {last})")
            try:
                if connection is None or connection.is_closed:
                    # The first node that answers, of a cluster's (tests/cluster).
                    async with asyncio.timeout(5):
                        connection = await connect_first(rabbitmq_url)
                last = await consumer_counts(connection, queues)
                if reached(last):
                    return
            except (AMQPError, OSError, TimeoutError) as error:
                last = repr(error)
            if time.monotonic() > deadline:
                raise _fail(process, f"no {what} in {timeout_s:.0f}s (last: {last})")
            await asyncio.sleep(_INTERVAL_S)
    finally:
        if connection is not None and not connection.is_closed:
            await connection.close()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on a fresh event loop in a thread of its own."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="readiness") as pool:
        return pool.submit(asyncio.run, coroutine).result()
