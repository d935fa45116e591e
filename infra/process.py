"""What every long-running process shares: a fast event loop and a stop event wired to SIGTERM
and SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

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
