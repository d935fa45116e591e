"""The worker runtime: consume one task queue, run the handler, record the outcome, then ack.

Every outcome (status event, retry message, dead letter) is confirmed by RabbitMQ before the
task message is acked, so a crash at any point means a redelivery, never a lost task.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from consumers.context import TaskContext
from consumers.decode import InvalidTask, ReceivedTask, decode
from consumers.errors import PermanentFailure, Retry
from contracts import topology as names
from contracts.messages import ErrorInfo, StatusEvent
from contracts.registry import TaskSpec
from contracts.statuses import Status
from infra.broker import Broker, PublishError, requeue, stop_consuming
from infra.middleware import Attempt, Middleware, Outcome
from infra.process import first_of
from infra.publishing import copy_of, publish_event, quarantine

log = logging.getLogger(__name__)

Handler = Callable[[Any, TaskContext], Awaitable[Any]]
ContextFactory = Callable[[ReceivedTask], TaskContext]


class Worker:
    def __init__(
        self, spec: TaskSpec, handler: Handler, broker: Broker, *,
        worker_name: str, make_context: ContextFactory, shutdown_grace_s: float,
        middleware: Middleware | None = None,
    ) -> None:
        self._spec = spec
        self._handler = handler
        self._broker = broker
        self._worker_name = worker_name
        self._make_context = make_context
        self._grace_s = shutdown_grace_s
        self._middleware = middleware or Middleware()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._fresh_message = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then drain: finish or requeue what is in flight.

        A worker starts one message at a time and speeds up to its prefetch at the first
        message that is not a redelivery. After a crash, the messages the dead process held come
        back first, each with one more delivery counted; taken one at a time, a message that
        kills its consumer reaches the delivery limit alone instead of with its neighbours.
        """
        queue = await self._broker.queue(names.task_queue(self._spec.name))
        await self._broker.set_prefetch(1)
        tag = await queue.consume(self._on_message)
        log.info("consuming %s (one at a time until a fresh message arrives)", queue.name)
        await first_of(stop, self._fresh_message)
        if not stop.is_set():
            # RabbitMQ applies a new prefetch to consumers started after it.
            await stop_consuming(queue, tag)
            await self._broker.set_prefetch(self._spec.prefetch)
            tag = await queue.consume(self._on_message)
            log.info("consuming %s (prefetch %d)", queue.name, self._spec.prefetch)
            await stop.wait()
        await stop_consuming(queue, tag)
        await self._drain()

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        log.info("stopping: %d task(s) in flight, %.0fs grace", len(self._in_flight), self._grace_s)
        _, unfinished = await asyncio.wait(self._in_flight, timeout=self._grace_s or None)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            log.warning("requeued %d unfinished task(s)", len(unfinished))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if not message.redelivered:
            self._fresh_message.set()
        # Each message runs on its own task; prefetch bounds how many run at once.
        task = asyncio.create_task(self._process(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            try:
                task = decode(message, self._spec)
            except InvalidTask as invalid:
                await self._quarantine(message, invalid)
            else:
                await self._run(message, task)
            await message.ack()
        except asyncio.CancelledError:
            # Shutdown: back to the queue, never to the dead-letter queue.
            await requeue(message)
            raise
        except PublishError as error:
            log.error("task %s: outcome not confirmed (%s); it will be redelivered",
                      message.message_id, error)
            await requeue(message)
        except (AMQPError, ChannelInvalidStateError) as error:
            log.error("task %s: ack failed (%r); RabbitMQ will redeliver it",
                      message.message_id, error)
        except Exception:
            # A bug in this runtime, not in the handler: requeue, so the delivery limit ends a
            # message that triggers it every time as `dead` instead of holding it forever.
            log.exception("task %s: unexpected error; requeueing it", message.message_id)
            await requeue(message)

    async def _run(self, message: AbstractIncomingMessage, task: ReceivedTask) -> None:
        if task.not_before is not None and task.not_before > datetime.now(UTC):
            delay = (task.not_before - datetime.now(UTC)).total_seconds()
            await self._delay(message, task, task.attempt, delay)
            return
        attempt = Attempt(task_id=task.task_id, task_type=self._spec.name, attempt=task.attempt,
                          run=task.run, headers=message.headers or {},
                          published_at=message.timestamp)
        started = time.monotonic()
        outcome: tuple[Status | None, ErrorInfo | None] = (None, None)
        self._middleware.before_attempt(attempt)
        try:
            # `running` is confirmed while the handler works, not before it starts: the task
            # message is acked only once both it and the outcome are confirmed, so nothing is
            # lost, and a task's latency carries one broker round trip fewer.
            running = asyncio.ensure_future(self._emit(task, Status.RUNNING))
            await asyncio.sleep(0)  # its publish goes on the channel before the outcome's
            try:
                outcome = await self._attempt(message, task)
            except BaseException:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
                raise
            await running
        finally:
            status, error = outcome
            self._middleware.after_attempt(attempt, Outcome(
                status=status, error=error, duration_s=time.monotonic() - started))

    async def _attempt(
        self, message: AbstractIncomingMessage, task: ReceivedTask
    ) -> tuple[Status, ErrorInfo | None]:
        """Run the handler once and publish what came of it: success, retry or failure."""
        try:
            async with asyncio.timeout(task.timeout_s):
                result = await self._handler(task.payload, self._make_context(task))
        except PermanentFailure as error:
            info = _error_info(error)
            await self._fail(message, task, info, reason="permanent_failure")
            return Status.FAILED, info
        except TimeoutError:
            limit = f"ran past its {task.timeout_s:g}s limit"
            timed_out = ErrorInfo(type="TimeoutError", message=limit)
            return await self._retry_or_fail(message, task, timed_out, None), timed_out
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the handler's failure is this attempt's outcome
            retry_after = error.delay_s if isinstance(error, Retry) else None
            if not isinstance(error, Retry | OSError):
                log.warning("task %s attempt %d: %s", task.task_id, task.attempt, error,
                            exc_info=error)
            info = _error_info(error)
            return await self._retry_or_fail(message, task, info, retry_after), info
        if not _json_safe(result):
            invalid = ErrorInfo(type="InvalidResult",
                                message=f"handler returned {type(result).__name__}, not JSON")
            await self._fail(message, task, invalid, reason="invalid_result")
            return Status.FAILED, invalid
        await self._emit(task, Status.SUCCEEDED, result=result)
        # Per-task success is the common case and the read model has it: a line per task
        # would be the busiest thing a worker does.
        log.debug("task %s succeeded (attempt %d)", task.task_id, task.attempt)
        return Status.SUCCEEDED, None

    async def _retry_or_fail(
        self, message: AbstractIncomingMessage, task: ReceivedTask, error: ErrorInfo,
        delay_s: float | None,
    ) -> Status:
        if task.attempt >= task.max_attempts:
            await self._fail(message, task, error, reason="max_attempts_exhausted")
            return Status.FAILED
        if delay_s is None:
            delay_s = self._spec.retry_delay_s(task.attempt, base_s=task.retry_base_s)
        tier = await self._delay(message, task, task.attempt + 1, delay_s)
        next_at = datetime.now(UTC) + timedelta(seconds=tier)
        await self._emit(task, Status.RETRYING, error=error, next_attempt_at=next_at)
        log.info("task %s attempt %d failed (%s: %s); retry in %ds",
                 task.task_id, task.attempt, error.type, error.message, tier)
        return Status.RETRYING

    async def _delay(
        self, message: AbstractIncomingMessage, task: ReceivedTask, attempt: int, delay_s: float
    ) -> int:
        """Park a copy in the delay queue of the tier that covers `delay_s`; return the tier."""
        tier = names.retry_tier(delay_s)
        copy = _copy(message, task, {names.HEADER_ATTEMPT: attempt})
        await self._broker.publish("", names.retry_queue(self._spec.name, tier), copy)
        return tier

    async def _fail(
        self, message: AbstractIncomingMessage, task: ReceivedTask, error: ErrorInfo, reason: str
    ) -> None:
        """Keep the message in `tasks.<type>.dead` for replay, then report `failed`."""
        copy = _copy(message, task, {
            names.HEADER_DEAD_REASON: reason,
            names.HEADER_LAST_ERROR: f"{error.type}: {error.message}"[:1000],
        })
        await self._broker.publish(names.dead_exchange(self._spec.name), "", copy)
        self._middleware.on_dead_letter(self._spec.name, reason)
        await self._emit(task, Status.FAILED, error=error)
        log.warning("task %s failed for good after attempt %d: %s: %s",
                    task.task_id, task.attempt, error.type, error.message)

    async def _quarantine(self, message: AbstractIncomingMessage, invalid: InvalidTask) -> None:
        queue = names.task_queue(self._spec.name)
        await quarantine(self._broker, message, invalid.reason, queue)
        self._middleware.on_quarantine(queue, invalid.reason)
        await self._publish(StatusEvent(
            task_id=invalid.task_id, task_type=self._spec.name, status=Status.REJECTED,
            attempt=0, worker=self._worker_name,
            error=ErrorInfo(type="InvalidTask", message=invalid.reason[:2000]),
        ))

    async def _emit(self, task: ReceivedTask, status: Status, **fields: Any) -> None:
        await self._publish(StatusEvent(
            task_id=task.task_id, task_type=self._spec.name, status=status,
            attempt=task.attempt, run=task.run, worker=self._worker_name,
            source=task.source, idempotency_key=task.idempotency_key, **fields,
        ))

    async def _publish(self, event: StatusEvent) -> None:
        await publish_event(self._broker, event, headers=self._middleware.event_headers(event))


def _copy(
    message: AbstractIncomingMessage, task: ReceivedTask, headers: dict[str, Any]
) -> aio_pika.Message:
    return copy_of(message, message_id=task.task_id, type=task.spec.name, headers={
        names.HEADER_ATTEMPT: task.attempt, names.HEADER_RUN: task.run, **headers,
    })


def _json_safe(result: Any) -> bool:
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return False
    return True


def _error_info(error: BaseException) -> ErrorInfo:
    return ErrorInfo(type=type(error).__name__, message=(str(error) or repr(error))[:2000])
