"""A confirm aiormq cancels (it gave up on a silent node) is an error to handle, while the
publishing task's own cancellation (a deadline, a client gone) still cancels it."""

from __future__ import annotations

import asyncio

import aiormq
import pytest
from yarl import URL

from infra.rabbitmq.broker import ConnectionDropped, dropped_as_error, silence_of


async def test_a_confirm_cancelled_by_the_connection_becomes_an_error() -> None:
    confirm: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(confirm.cancel)  # what aiormq's dropped reader does

    with pytest.raises(ConnectionDropped), dropped_as_error():
        await confirm


async def test_the_publishers_own_deadline_still_cancels_it() -> None:
    confirm: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def publish() -> None:
        async with asyncio.timeout(0.01):
            with dropped_as_error():
                await confirm

    with pytest.raises(TimeoutError):
        await publish()


async def test_aiormq_still_keeps_the_time_of_the_last_frame_a_connection_received() -> None:
    # If an aiormq release renames it, a node cut off by a partition would be left only after
    # three missed heartbeats, not after one publish deadline.
    link = aiormq.Connection(URL("amqp://guest:guest@127.0.0.1:5672/"))

    silent_s = silence_of(link)

    assert silent_s is not None
    assert 0 <= silent_s < 5
