"""Retrying through an outage until a stop event is set, on tenacity.

A process waiting for RabbitMQ or MongoDB must still stop at once on SIGTERM: the pause between
tries returns as soon as the stop event is set and then raises `Stopped` instead of trying again,
and a try that fails once the event is set re-raises its own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_fixed
from tenacity.wait import wait_base

from infra.rabbitmq.broker import Broker, BrokerUnavailable

log = logging.getLogger(__name__)

CONNECT_RETRY_S = 2.0


class Stopped(Exception):
    """The stop event was set while waiting for the next try."""


def until_stopped(
    stop: asyncio.Event, *, retry_on: type[Exception] | tuple[type[Exception], ...],
    wait: wait_base, before_sleep: Callable[[RetryCallState], None] | None = None,
) -> AsyncRetrying:
    """Tries that go on through `retry_on` errors, pausing by `wait`, until `stop` is set."""

    async def pause(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
        if stop.is_set():
            raise Stopped

    return AsyncRetrying(
        sleep=pause, wait=wait, retry=retry_if_exception_type(retry_on),
        stop=lambda _state: stop.is_set(), before_sleep=before_sleep, reraise=True,
    )


def failed_try(state: RetryCallState) -> BaseException:
    """The error of the try that just failed (for `before_sleep` hooks)."""
    assert state.outcome is not None
    error = state.outcome.exception()
    assert error is not None
    return error


def log_retry(logger: logging.Logger) -> Callable[[RetryCallState], None]:
    """A `before_sleep` hook logging `<error>; retrying in <n>s` once per failed try."""

    def warn(state: RetryCallState) -> None:
        pause = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning("%s; retrying in %.0fs", failed_try(state), pause)

    return warn


async def connect(broker: Broker, stop: asyncio.Event, *, logger: logging.Logger = log) -> bool:
    """Wait for RabbitMQ at start-up; False if asked to stop first."""
    if stop.is_set():
        return False
    try:
        async for attempt in until_stopped(stop, retry_on=BrokerUnavailable,
                                           wait=wait_fixed(CONNECT_RETRY_S),
                                           before_sleep=log_retry(logger)):
            with attempt:
                await broker.channel()
    except (BrokerUnavailable, Stopped):
        return False
    return True
