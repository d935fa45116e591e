"""Dead letters: list what `tasks.<type>.dead` holds and send chosen ones back to run again.

A replayed task keeps its task id and status history; its attempt count starts again at 1 in a
new run, so the read model shows it `queued` again without breaking monotonic order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from contracts import topology as names
from infra.amqp_codec import task_id_of
from infra.broker import Broker
from infra.publishing import copy_of

# Held unacked while scanning, so each message is seen once; bounds memory too.
MAX_SCAN = 10_000


@dataclass(frozen=True)
class DeadLetter:
    task_id: str
    task_type: str
    reason: str
    last_error: str | None
    attempt: int
    run: int
    dead_at: datetime | None


def describe(message: AbstractIncomingMessage, task_type: str) -> DeadLetter:
    headers = message.headers or {}
    deaths = headers.get("x-death")
    broker_reason = None
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        broker_reason = str(deaths[0].get("reason"))
    return DeadLetter(
        task_id=task_id_of(message),
        task_type=task_type,
        reason=_text(headers.get(names.HEADER_DEAD_REASON)) or broker_reason or "unknown",
        last_error=_text(headers.get(names.HEADER_LAST_ERROR)),
        attempt=_int(headers.get(names.HEADER_ATTEMPT)),
        run=_int(headers.get(names.HEADER_RUN)),
        dead_at=message.timestamp,
    )


async def scan(
    broker: Broker, task_type: str,
    act: Callable[[AbstractIncomingMessage, DeadLetter], Any] | None = None,
) -> list[DeadLetter]:
    """Every dead letter of `task_type`. `act` may replay one and return True to take it off
    the queue; everything else is returned to the queue untouched."""
    queue = await broker.queue(names.dead_queue(task_type))
    held: list[AbstractIncomingMessage] = []
    found: list[DeadLetter] = []
    try:
        while len(held) < MAX_SCAN:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            letter = describe(message, task_type)
            found.append(letter)
            if act is not None and await act(message, letter):
                await message.ack()
            else:
                held.append(message)
    finally:
        for message in held:
            await message.nack(requeue=True)
    return found


async def replay_message(broker: Broker, message: AbstractIncomingMessage,
                         letter: DeadLetter) -> None:
    """Publish the dead message again to its task exchange: same id, attempt 1, next run."""
    copy = copy_of(message, message_id=letter.task_id, type=letter.task_type, headers={
        names.HEADER_ATTEMPT: 1,
        names.HEADER_RUN: letter.run + 1,
        # The cause of death belongs to the last run, not the next one.
        names.HEADER_DEAD_REASON: None,
        names.HEADER_LAST_ERROR: None,
    })
    await broker.publish(names.task_exchange(letter.task_type), letter.task_type, copy)


async def replay(broker: Broker, task_type: str, task_ids: set[str] | None) -> list[DeadLetter]:
    """Replay the dead letters whose ids are in `task_ids` (all when None); return those sent."""
    sent: list[DeadLetter] = []

    async def replay_chosen(message: AbstractIncomingMessage, letter: DeadLetter) -> bool:
        if task_ids is not None and letter.task_id not in task_ids:
            return False
        await replay_message(broker, message, letter)
        sent.append(letter)
        return True

    await scan(broker, task_type, replay_chosen)
    return sent


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 1 else 1


