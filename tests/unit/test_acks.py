"""Acks in runs (infra/rabbitmq/acks.py): a multiple ack never reaches past an unfinished
delivery, a finished one behind an unfinished one is not held for long, and nothing is acked
twice."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

from infra.rabbitmq.acks import Acks

# Long enough that no test waits on the timer unless it means to.
SLOW = 60.0


@dataclass
class Wire:
    """What went out on the channel, in order: ("ack", tag, multiple) or ("nack", tag)."""

    frames: list[tuple[str, int, bool]] = field(default_factory=list)
    closed: bool = False

    def settled(self, unfinished: set[int], delivered: int) -> set[int]:
        """The tags these frames settle, as RabbitMQ reads them."""
        settled: set[int] = set()
        for _kind, tag, multiple in self.frames:
            settled |= set(range(1, tag + 1)) if multiple else {tag}
        assert not settled & unfinished, "an unfinished delivery was settled"
        assert settled <= set(range(1, delivered + 1))
        return settled


@dataclass
class Delivery:
    wire: Wire
    delivery_tag: int
    channel: str = "channel 1"

    async def ack(self, multiple: bool = False) -> None:
        if self.wire.closed:
            raise ChannelInvalidStateError("closed")
        self.wire.frames.append(("ack", self.delivery_tag, multiple))

    async def nack(self, requeue: bool = True) -> None:
        self.wire.frames.append(("nack", self.delivery_tag, False))


def deliver(acks: Acks, wire: Wire, count: int, start: int = 1) -> list[AbstractIncomingMessage]:
    messages = [cast(AbstractIncomingMessage, Delivery(wire, tag))
                for tag in range(start, start + count)]
    for message in messages:
        acks.track(message)
    return messages


async def test_a_run_of_finished_deliveries_is_one_multiple_ack() -> None:
    wire, acks = Wire(), Acks(window_s=SLOW, flush_at=1000)
    messages = deliver(acks, wire, 100)
    for message in messages:
        acks.ack(message)
    await acks.flush()

    assert wire.frames == [("ack", 100, True)]
    assert wire.settled(set(), 100) == set(range(1, 101))


async def test_a_multiple_ack_stops_before_the_first_unfinished_delivery() -> None:
    wire, acks = Wire(), Acks(window_s=0.01, flush_at=1000)
    messages = deliver(acks, wire, 10)
    for message in messages[:4] + messages[5:]:
        acks.ack(message)
    await asyncio.sleep(0.05)  # the timer's flush, then one more for those behind tag 5

    assert wire.frames[0] == ("ack", 4, True)
    # Behind the unfinished tag 5, each is acked on its own, not held until 5 ends.
    assert sorted(tag for _, tag, _ in wire.frames[1:]) == [6, 7, 8, 9, 10]
    assert all(not multiple for _, _, multiple in wire.frames[1:])
    assert wire.settled({5}, 10) == set(range(1, 11)) - {5}

    acks.ack(messages[4])
    await acks.flush()
    assert wire.frames[-1] == ("ack", 5, False)


async def test_acks_wait_for_the_window_or_for_flush_at() -> None:
    wire, acks = Wire(), Acks(window_s=SLOW, flush_at=3)
    messages = deliver(acks, wire, 3)
    acks.ack(messages[0])
    acks.ack(messages[1])
    await asyncio.sleep(0)
    assert wire.frames == []  # two waiting, the window far off

    acks.ack(messages[2])
    await asyncio.sleep(0)
    assert wire.frames == [("ack", 3, True)]


async def test_a_single_finished_delivery_goes_after_the_window() -> None:
    wire, acks = Wire(), Acks(window_s=0.01, flush_at=1000)
    [message] = deliver(acks, wire, 1)
    acks.ack(message)
    await asyncio.sleep(0.05)

    assert wire.frames == [("ack", 1, False)]


async def test_a_requeued_delivery_is_nacked_at_once_and_never_acked() -> None:
    wire, acks = Wire(), Acks(window_s=SLOW, flush_at=1000)
    messages = deliver(acks, wire, 3)
    await acks.requeue(messages[1])
    acks.ack(messages[0])
    acks.ack(messages[2])
    await acks.flush()

    assert wire.frames[0] == ("nack", 2, False)
    # RabbitMQ's multiple ack settles only what is still unsettled: 1 and 3.
    assert wire.frames[1:] == [("ack", 3, True)]


async def test_deliveries_out_of_order_are_acked_one_by_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wire, acks = Wire(), Acks(window_s=SLOW, flush_at=1000)
    late = deliver(acks, wire, 1, start=5)
    early = deliver(acks, wire, 2, start=3)
    for message in late + early:
        acks.ack(message)
    with caplog.at_level(logging.WARNING):
        await acks.flush()

    assert sorted(wire.frames) == [("ack", 3, False), ("ack", 4, False), ("ack", 5, False)]


async def test_each_channel_has_its_own_runs() -> None:
    wire, acks = Wire(), Acks(window_s=SLOW, flush_at=1000)
    first = deliver(acks, wire, 2)
    second = [cast(AbstractIncomingMessage, Delivery(wire, tag, channel="channel 2"))
              for tag in (1, 2)]
    for message in second:
        acks.track(message)
    for message in first + second:
        acks.ack(message)
    await acks.flush()

    assert wire.frames == [("ack", 2, True), ("ack", 2, True)]


async def test_a_closed_channel_is_forgotten_and_its_messages_left_to_redelivery() -> None:
    wire, acks = Wire(closed=True), Acks(window_s=SLOW, flush_at=1000)
    messages = deliver(acks, wire, 3)
    for message in messages:
        acks.ack(message)
    await acks.flush()  # does not raise: RabbitMQ redelivers them
    wire.closed = False
    await acks.flush()

    assert wire.frames == []


async def test_a_delivery_whose_channel_runs_were_given_up_is_acked_on_its_own() -> None:
    wire, acks = Wire(closed=True), Acks(window_s=SLOW, flush_at=1000)
    messages = deliver(acks, wire, 3)
    acks.ack(messages[0])
    await acks.flush()  # fails: the channel's runs are given up, 2 and 3 untracked
    wire.closed = False

    acks.ack(messages[1])
    for _ in range(3):
        await asyncio.sleep(0)

    assert wire.frames == [("ack", 2, False)]
