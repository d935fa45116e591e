"""The time a task message says it was submitted, which its `queued` entry is recorded at."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import cast

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from infra.rabbitmq.submission_time import submitted_at_of

NOW = datetime(2026, 12, 7, 4, 22, 52, 984000, tzinfo=UTC)


def message(body: bytes, timestamp: datetime | None = None) -> AbstractIncomingMessage:
    # submitted_at_of reads only `body` and `timestamp`, which an outgoing Message has too.
    return cast(AbstractIncomingMessage, aio_pika.Message(body, timestamp=timestamp))


def test_the_body_gives_the_submitters_time_to_the_microsecond() -> None:
    sent = NOW - timedelta(milliseconds=3, microseconds=250)
    body = json.dumps({"payload": {}, "submitted_at": sent.isoformat()}).encode()

    assert submitted_at_of(message(body, timestamp=NOW), NOW) == sent


def test_in_another_zone_it_is_the_same_instant_in_utc() -> None:
    body = b'{"payload": {}, "submitted_at": "2026-12-07T05:22:52.981+01:00"}'

    at = submitted_at_of(message(body), NOW)

    assert at == NOW - timedelta(milliseconds=3)
    assert at.utcoffset() == timedelta(0)


def test_without_it_the_amqp_timestamp_then_now() -> None:
    second = NOW.replace(microsecond=0)
    assert submitted_at_of(message(b'{"payload": {}}', timestamp=second), NOW) == second
    assert submitted_at_of(message(b'{"payload": {}}'), NOW) == NOW
    for unreadable in (b"not json", b"[1]", b'{"submitted_at": "yesterday"}',
                       b'{"submitted_at": "2026-12-07T04:22:52"}'):  # no zone
        assert submitted_at_of(message(unreadable), NOW) == NOW


def test_a_time_in_the_future_is_now() -> None:
    body = json.dumps({"submitted_at": (NOW + timedelta(days=300)).isoformat()}).encode()

    assert submitted_at_of(message(body), NOW) == NOW
