"""Dead letters on the broker: read one off an AMQP message, scan `tasks.<type>.dead`, and
publish a letter again to its task exchange.

A replayed task keeps its task id and status history; its attempt count starts again at 1 in a
new run, so the read model shows it `queued` again without breaking monotonic order. Replay by
id does not scan the queue (service/replay.py finds the letter in the archive); the scan serves
`taskproc dead-letters` and letters that predate the archive.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from contracts import names
from infra.rabbitmq.amqp_codec import (
    DEVELOPMENT_TENANTS,
    TenantRules,
    control_int,
    header_str,
    owner_or_default,
    task_id_of,
)
from infra.rabbitmq.broker import Broker, persistent_message
from infra.rabbitmq.publishing import BROKER_HEADERS
from service.dead_letters import Choose, DeadLetter

# Held unacked while scanning, so each message is seen once; bounds memory too.
MAX_SCAN = 10_000


def describe(
    message: AbstractIncomingMessage, task_type: str, *, dead_at: datetime | None = None,
    tenants: TenantRules = DEVELOPMENT_TENANTS,
) -> DeadLetter:
    """The dead letter a message of `tasks.<type>.dead` carries, body and headers included;
    `tenants` says whose it is and whether its run and attempt headers are believed."""
    headers = dict(message.headers or {})
    deaths = headers.get("x-death")
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) \
        else {}
    broker_reason = str(death["reason"]) if "reason" in death else None
    died = death.get("time")
    return DeadLetter(
        task_id=task_id_of(message),
        task_type=task_type,
        tenant=owner_or_default(message, tenants),
        reason=header_str(message, names.HEADER_DEAD_REASON) or broker_reason or "unknown",
        last_error=header_str(message, names.HEADER_LAST_ERROR),
        attempt=control_int(message, names.HEADER_ATTEMPT, tenants),
        run=control_int(message, names.HEADER_RUN, tenants),
        dead_at=dead_at or (died if isinstance(died, datetime) else message.timestamp),
        body=message.body,
        properties={"message_id": message.message_id, "type": message.type,
                    "app_id": message.app_id, "timestamp": message.timestamp,
                    "correlation_id": message.correlation_id},
        headers=headers,
    )


class BrokerDeadLetterQueue:
    """`tasks.<type>.dead` read by basic.get: each message is held until the scan ends."""

    def __init__(self, broker: Broker, tenants: TenantRules = DEVELOPMENT_TENANTS) -> None:
        self._broker = broker
        self._tenants = tenants

    async def scan(self, task_type: str, choose: Choose | None = None) -> list[DeadLetter]:
        """The dead letters of `task_type` present when the scan starts; those `choose` takes
        are acked (off the queue), everything else goes back untouched, also when `choose`
        raises."""
        queue = await self._broker.queue(names.dead_queue(task_type))
        # A letter that dies while the scan runs (a replayed task failing again at once) lands
        # behind those present at the start: reading past them would replay it again. Declared
        # again for the count, as the robust channel hands back the queue object of its first
        # declaration, with that moment's count.
        present = min((await queue.declare()).message_count or 0, MAX_SCAN)
        held: list[AbstractIncomingMessage] = []
        found: list[DeadLetter] = []
        try:
            while len(found) < present:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                held.append(message)
                letter = describe(message, task_type, tenants=self._tenants)
                found.append(letter)
                if choose is not None and await choose(letter):
                    held.pop()
                    await message.ack()
        finally:
            for message in held:
                with contextlib.suppress(AMQPError, ChannelInvalidStateError):
                    await message.nack(requeue=True)
        return found


class BrokerLetterPublisher:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    async def republish(self, letter: DeadLetter) -> None:
        """Publish the letter to its task exchange: same id, attempt 1, next run, confirmed."""
        if letter.body is None:
            raise ValueError(f"the dead letter of {letter.letter_id} has no body to publish")
        properties = letter.properties
        own = {k: v for k, v in letter.headers.items() if k not in BROKER_HEADERS}
        headers: dict[str, Any] = {**own, names.HEADER_ATTEMPT: 1,
                                   names.HEADER_RUN: letter.run + 1}
        # The cause of death belongs to the last run, not the next one.
        headers.pop(names.HEADER_DEAD_REASON, None)
        headers.pop(names.HEADER_LAST_ERROR, None)
        copy = persistent_message(
            letter.body,
            message_id=letter.task_id,
            type=letter.task_type,
            app_id=properties.get("app_id"),
            timestamp=properties.get("timestamp"),
            correlation_id=properties.get("correlation_id") or letter.task_id,
            headers=headers,
        )
        await self._broker.publish(names.task_exchange(letter.task_type), letter.task_type,
                                   copy)

