"""The same chain built from bare aio-pika, to show what the framework costs.

publisher -> exchange `bench.bare.tasks` -> queue -> worker -> exchange `bench.bare.events` ->
queue -> event consumer. Like the real system: quorum queues, persistent mandatory messages,
publisher confirms, manual acks, the worker acks a task only after its `succeeded` event is
confirmed (no `running`: the system publishes none for a task that ends at once). Unlike it: no
store, no pydantic, no logging per task.

Each role is its own process: `python -m bench.bare ROLE AMQP_URL TASKS`. It prints
`ready`, then `T <name> <time.monotonic()>` for the times that matter, and `C <cpu seconds>`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    ExchangeType,
)

TASKS = "bench.bare.tasks"
EVENTS = "bench.bare.events"
_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}
_PUBLISH_WINDOW = 256
_WORKER_PREFETCH = 64
_EVENTS_PREFETCH = 256


def _message(body: dict[str, object], message_id: str) -> aio_pika.Message:
    return aio_pika.Message(json.dumps(body).encode(), content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            message_id=message_id, timestamp=datetime.now(UTC))


async def declare(channel: AbstractChannel) -> None:
    """Both exchanges and quorum queues, bound, and empty."""
    for name in (TASKS, EVENTS):
        exchange = await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(name, durable=True, arguments=_QUORUM)
        await queue.bind(exchange, "#")
        await queue.purge()


async def remove(channel: AbstractChannel) -> None:
    for name in (TASKS, EVENTS):
        await channel.queue_delete(name)
        await channel.exchange_delete(name)


async def _until_done(done: asyncio.Event, connection: AbstractConnection) -> None:
    """Wait for `done`; a lost connection (a broker restart) ends the process with an error
    instead of leaving it waiting for messages that will not come."""
    lost = asyncio.Event()
    connection.close_callbacks.add(lambda *_: lost.set())
    waiters = [asyncio.ensure_future(done.wait()), asyncio.ensure_future(lost.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    if not done.is_set():
        raise SystemExit("the connection to RabbitMQ was lost")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def publisher(url: str, tasks: int) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(TASKS)
        window = asyncio.Semaphore(_PUBLISH_WINDOW)

        async def publish_one() -> None:
            task_id = str(uuid.uuid4())
            body = {"task_id": task_id, "task_type": "sleep", "payload": {"seconds": 0},
                    "submitted_at": datetime.now(UTC).isoformat(), "schema_version": 1}
            try:
                await exchange.publish(_message(body, task_id), "sleep", mandatory=True)
            finally:
                window.release()

        _say("ready")
        _say(f"T first_publish {time.monotonic():.6f}")
        pending = []
        for _ in range(tasks):
            await window.acquire()
            pending.append(asyncio.ensure_future(publish_one()))
        await asyncio.gather(*pending)
        _say(f"T last_confirm {time.monotonic():.6f}")


async def worker(url: str, tasks: int) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=_WORKER_PREFETCH)
        events = await channel.get_exchange(EVENTS)
        queue = await channel.get_queue(TASKS)
        done = asyncio.Event()
        handled = 0
        running: set[asyncio.Task[None]] = set()

        async def emit(task: dict[str, object], status: str) -> None:
            event = {"task_id": task["task_id"], "task_type": "sleep", "status": status,
                     "attempt": 1, "at": datetime.now(UTC).isoformat(), "worker": "bare"}
            await events.publish(_message(event, f"{task['task_id']}/{status}"),
                                 f"sleep.{status}", mandatory=True)

        async def handle(message: AbstractIncomingMessage) -> None:
            nonlocal handled
            task = json.loads(message.body)
            await asyncio.sleep(task["payload"]["seconds"])
            await emit(task, "succeeded")
            await message.ack()
            handled += 1
            if handled >= tasks:
                done.set()

        async def on_message(message: AbstractIncomingMessage) -> None:
            job = asyncio.create_task(handle(message))
            running.add(job)
            job.add_done_callback(running.discard)

        await queue.consume(on_message)
        _say("ready")
        await _until_done(done, connection)


async def event_consumer(url: str, tasks: int) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=_EVENTS_PREFETCH)
        queue = await channel.get_queue(EVENTS)
        done = asyncio.Event()
        succeeded = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal succeeded
            if json.loads(message.body)["status"] == "succeeded":
                succeeded += 1
            await message.ack()
            if succeeded >= tasks and not done.is_set():
                _say(f"T last_succeeded {time.monotonic():.6f}")
                done.set()

        await queue.consume(on_message)
        _say("ready")
        await _until_done(done, connection)


_ROLES = {"publisher": publisher, "worker": worker, "events": event_consumer}


def main() -> None:
    role, url, tasks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(_ROLES[role](url, tasks))
    used = os.times()
    _say(f"C {used.user + used.system:.3f}")


if __name__ == "__main__":
    main()
