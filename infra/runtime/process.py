"""What every long-running process shares: a fast event loop, a stop event wired to SIGTERM
and SIGINT, and waiting for the first of several events."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import uvloop

from contracts.registry import RegistryError

log = logging.getLogger(__name__)

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop, whose sockets and callbacks cost a fraction of the standard
    loop's: a worker or projector spends most of its time moving small messages."""
    return uvloop.run(main)


def stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT; call from inside the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(signum: int) -> None:
        if not stop.is_set():
            log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)
    return stop


async def first_of(*events: asyncio.Event, timeout_s: float | None = None) -> None:
    """Return once any of `events` is set, or after `timeout_s` when one is given."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@contextmanager
def registry_errors_in_one_line(program: str) -> Iterator[None]:
    """End `program` with one line on stderr and status 1 if the registered task types cannot be
    loaded (a TASK_MODULES or DISABLED_TASK_TYPES that names nothing, a task module that fails
    to import), as a bad setting does, instead of a traceback from some import. The registry
    loads on first use, which may be an import."""
    try:
        yield
    except RegistryError as error:
        sys.exit(f"{program}: the task types cannot be loaded: {error}")
