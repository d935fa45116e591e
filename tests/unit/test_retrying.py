"""Retrying until stopped: tries go on through the named errors, and a stop ends them at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from tenacity import wait_fixed

from infra.runtime.retrying import Stopped, until_stopped
from service.errors import StoreUnavailable


class FlakyStore:
    """Fails its first `failures` calls; sets `stop` at call `stop_at_call`."""

    def __init__(self, failures: int, stop: asyncio.Event | None = None,
                 stop_at_call: int = 0) -> None:
        self.calls = 0
        self._failures = failures
        self._stop = stop
        self._stop_at_call = stop_at_call

    async def write(self) -> str:
        self.calls += 1
        if self._stop is not None and self.calls == self._stop_at_call:
            self._stop.set()
        if self.calls <= self._failures:
            raise StoreUnavailable(f"down (call {self.calls})")
        return "stored"


async def write_until_stopped(store: FlakyStore, stop: asyncio.Event, pause_s: float) -> str:
    async for attempt in until_stopped(stop, retry_on=StoreUnavailable, wait=wait_fixed(pause_s)):
        with attempt:
            return await store.write()
    raise AssertionError("unreachable: tenacity re-raises or returns")


async def test_it_tries_again_until_the_call_succeeds() -> None:
    store = FlakyStore(failures=3)

    assert await write_until_stopped(store, asyncio.Event(), pause_s=0.001) == "stored"
    assert store.calls == 4


async def test_a_stop_during_the_pause_ends_it_at_once_with_no_further_try() -> None:
    stop = asyncio.Event()
    store = FlakyStore(failures=100)
    asyncio.get_running_loop().call_later(0.05, stop.set)
    started = time.monotonic()

    with pytest.raises(Stopped):
        await write_until_stopped(store, stop, pause_s=30)

    assert time.monotonic() - started < 5
    assert store.calls == 1


async def test_a_try_that_fails_once_stopping_raises_its_own_error() -> None:
    stop = asyncio.Event()
    store = FlakyStore(failures=100, stop=stop, stop_at_call=2)

    with pytest.raises(StoreUnavailable, match="call 2"):
        await write_until_stopped(store, stop, pause_s=0.001)
    assert store.calls == 2


async def test_other_errors_are_not_retried() -> None:
    class BuggyStore(FlakyStore):
        async def write(self) -> str:
            self.calls += 1
            raise ValueError("a bug, not an outage")

    store = BuggyStore(failures=0)

    with pytest.raises(ValueError, match="a bug"):
        await write_until_stopped(store, asyncio.Event(), pause_s=0.001)
    assert store.calls == 1
