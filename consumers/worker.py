"""The worker runtime: consume one task queue, run the handler, carry out the decision, then ack.

What an outcome means (succeed, retry, fail, defer) is `consumers.lifecycle`'s to decide; this
module publishes what it decides.

Every outcome (status event, retry message, dead letter) is confirmed by RabbitMQ before the
task message is acked, so a crash at any point means a redelivery, never a lost task.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

from consumers import lifecycle
from consumers.cancels import CancelWatch
from consumers.decode import InvalidTask, ReceivedTask, decode
from consumers.ownership import (
    CheckLater,
    TaskLookup,
    check_follow_up,
    foreign_id_reason,
    owned_by_another,
)
from consumers.progress import ProgressReporter, Report
from consumers.running_event import RunningEvent
from consumers.settling import StepOutcomes, record_end, succeeded_in
from contracts import names
from contracts.control import CancelRequest
from contracts.limits import TaskLimits
from contracts.log_fields import task_fields
from contracts.messages import ErrorInfo, ProgressEvent, StatusEvent
from contracts.registry import TaskSpec
from contracts.statuses import Status
from infra.observability.middleware import Attempt, Middleware, Outcome
from infra.observability.tracing import traceparent_of
from infra.rabbitmq.acks import Acks
from infra.rabbitmq.amqp_codec import (
    DEVELOPMENT_TENANTS,
    TenantRules,
    from_service,
    owner_or_nobody,
)
from infra.rabbitmq.broker import Broker, PublishError, Refused, stop_consuming
from infra.rabbitmq.publishing import (
    RabbitFollowUpPublisher,
    copy_of,
    publish_event,
    publish_progress,
    quarantine,
)
from infra.runtime.process import first_of
from infra.runtime.settings.worker import RUNNING_EVENT_AFTER_MS
from service.workflows import submit_follow_ups
from taskproc.failures import TaskFailure
from taskproc.handler import RunTask

log = logging.getLogger(__name__)

# Acks wait up to this long to go out together (infra/rabbitmq/acks.py): a task's outcome is
# confirmed before its ack is due, so the wait costs a prefetch slot for a moment, not latency.
ACK_WINDOW_S = 0.005
# A follow-up whose parent could not be checked goes back to its queue after this pause.
_CHECK_AGAIN_S = 1.0


class Worker:
    """Runs the tasks of one type: `handler` runs one task (`TaskHandler.started` makes it)."""

    def __init__(
        self, spec: TaskSpec, handler: RunTask, broker: Broker, *,
        process_name: str, shutdown_grace_s: float, middleware: Middleware | None = None,
        rng: random.Random | None = None, limits: TaskLimits | None = None,
        tenants: TenantRules = DEVELOPMENT_TENANTS, cancels: CancelWatch | None = None,
        owners: TaskLookup | None = None, outcomes: StepOutcomes | None = None,
        running_event_after_ms: int = RUNNING_EVENT_AFTER_MS,
    ) -> None:
        self._spec = spec
        # An attempt that ends sooner publishes no `running` (consumers.running_event).
        self._running_after_s = running_event_after_ms / 1000
        # Over a cap, a message is quarantined as `rejected`, as the gateway answers 422.
        self._limits = limits or spec.limits
        self._tenants = tenants
        # Where an outside publisher's task id is checked for another owner (consumers.ownership).
        self._owners = owners
        # Where a workflow step's end is settled before its follow-ups go (consumers.settling);
        # None only for runtimes whose tests submit no `then`.
        self._outcomes = outcomes
        self._handler = handler
        self._broker = broker
        self._follow_ups = RabbitFollowUpPublisher(broker, app_id=process_name)
        self._worker_name = process_name
        self._grace_s = shutdown_grace_s
        self._middleware = middleware or Middleware()
        self._rng = rng or random.Random()  # jitters retry delays
        self._in_flight: set[asyncio.Task[None]] = set()
        self._acks = Acks(window_s=ACK_WINDOW_S, flush_at=1)
        self._fresh_message = asyncio.Event()
        # The handler of each task running here, by tenant and task id: what a cancellation
        # stops.
        self._running: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._cancels = cancels
        if cancels is not None:
            cancels.on_cancel = self._stop_if_running

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
            # A quarter of the window per ack: the rest of it keeps tasks coming meanwhile.
            self._acks.flush_at = max(1, self._spec.prefetch // 4)
            tag = await queue.consume(self._on_message)
            log.info("consuming %s (prefetch %d)", queue.name, self._spec.prefetch)
            await stop.wait()
        await stop_consuming(queue, tag)
        await self._drain()

    async def _drain(self) -> None:
        if self._in_flight:
            await self._finish_in_flight()
        await self._acks.flush()

    async def _finish_in_flight(self) -> None:
        log.info("stopping: %d task(s) in flight, %.0fs grace", len(self._in_flight), self._grace_s)
        _, unfinished = await asyncio.wait(self._in_flight, timeout=self._grace_s or None)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            log.warning("requeued %d unfinished task(s)", len(unfinished))

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._acks.track(message)  # first, before anything awaits: deliveries stay in order
        if not message.redelivered:
            self._fresh_message.set()
        # Each message runs on its own task; prefetch bounds how many run at once.
        task = asyncio.create_task(self._process(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            try:
                task = decode(message, self._spec, self._limits,
                              tenants=self._tenants)
                if await self._foreign(message, task):
                    raise InvalidTask(foreign_id_reason(task.task_id), task.task_id)
                await self._check_follow_up(message, task)
            except InvalidTask as invalid:
                await self._quarantine(message, invalid)
            else:
                await self._run(message, task)
            self._acks.ack(message)
        except CheckLater as later:
            log.warning("task %s: %s; trying again in %.0fs", message.message_id, later,
                        _CHECK_AGAIN_S, extra=_fields(message.message_id, message))
            try:
                await asyncio.sleep(_CHECK_AGAIN_S)
            finally:  # at shutdown too: back to the queue
                await self._acks.requeue(message)
        except asyncio.CancelledError:
            # Shutdown: back to the queue, never to the dead-letter queue.
            await self._acks.requeue(message)
            raise
        except PublishError as error:
            log.error("task %s: outcome not confirmed (%s); it will be redelivered",
                      message.message_id, error, extra=_fields(message.message_id, message))
            await self._acks.requeue(message)
        except (AMQPError, ChannelInvalidStateError) as error:
            log.error("task %s: %r; RabbitMQ will redeliver it", message.message_id, error,
                      extra=_fields(message.message_id, message))
        except Exception:
            # A bug in this runtime, not in the handler: requeue, so the delivery limit ends a
            # message that triggers it every time as `dead` instead of holding it forever.
            log.exception("task %s: unexpected error; requeueing it", message.message_id,
                          extra=_fields(message.message_id, message))
            await self._acks.requeue(message)

    async def _foreign(self, message: AbstractIncomingMessage, task: ReceivedTask) -> bool:
        """An outside publisher's task under an id that another tenant's task has."""
        if self._owners is None or from_service(message, self._tenants):
            return False
        return await owned_by_another(self._owners, task.task_id, task.tenant,
                                      default_tenant=self._tenants.default_tenant)

    async def _check_follow_up(self, message: AbstractIncomingMessage, task: ReceivedTask
                               ) -> None:
        """A follow-up runs only as a child of its tenant's task of the publishing worker's
        type (consumers.ownership.check_follow_up); raises InvalidTask or CheckLater."""
        if self._owners is None:
            return
        problem = await check_follow_up(self._owners, message, task.tenant,
                                        default_tenant=self._tenants.default_tenant)
        if problem is not None:
            raise RefusedFollowUp(problem, task.task_id)

    def _is_cancelled(self, task: ReceivedTask) -> bool:
        return self._cancels is not None and self._cancels.is_cancelled(task.tenant,
                                                                         task.task_id)

    def _stop_if_running(self, request: CancelRequest) -> None:
        for (tenant, task_id), handler in self._running.items():
            if task_id == request.task_id and request.tenant in (None, tenant):
                log.info("task %s cancelled while running: stopping its handler", task_id,
                         extra=task_fields(task_id))
                handler.cancel()

    async def _run(self, message: AbstractIncomingMessage, task: ReceivedTask) -> None:
        if self._is_cancelled(task):
            # Queued, back from a retry tier, or waiting for `not_before`: it never starts.
            # The event repeats what the gateway recorded; the projection ignores the repeat.
            settled = await self._settled(task, None)
            if settled is None:
                await self._emit(task, Status.CANCELLED)
                log.info("task %s was cancelled; dropped it unrun", task.task_id,
                         extra=_fields(task.task_id, message))
            else:
                # An earlier delivery settled `succeeded` first and died before its ack.
                await self._carry_out(message, task, settled, None)
            return
        deferral = lifecycle.admit(task, datetime.now(UTC))
        if deferral is not None:
            await self._park(message, task, task.attempt, deferral.tier_s)
            return
        attempt = Attempt(task_id=task.task_id, task_type=self._spec.name, attempt=task.attempt,
                          run=task.run, headers=message.headers or {},
                          published_at=message.timestamp)
        started = time.monotonic()
        started_at = datetime.now(UTC)
        confirmed: lifecycle.Decision | None = None
        cancelled = False
        self._middleware.before_attempt(attempt)
        try:
            # `running` only for an attempt that lasts, dated when it started, and confirmed
            # while the handler works, not before it starts: the task message is acked only
            # once both it (if published) and the outcome are confirmed, so nothing is lost,
            # and a task's latency carries one broker round trip fewer.
            running = RunningEvent(
                lambda: self._emit(task, Status.RUNNING, at=started_at, started_at=started_at),
                self._running_after_s)
            try:
                await asyncio.sleep(0)  # with no delay, its publish goes on the channel first
                outcome = await self._attempt(task, running)
                running.end()
                # Every outcome says when its attempt started: the `running` it may not have
                # published.
                timing = _Timing(started_at, time.monotonic() - started)
                # Cancelled while it ran (None): whatever the handler came to, the task ends
                # here, as the gateway has recorded already (docs/operations.md, Reliability).
                decision = None if self._is_cancelled(task) else lifecycle.decide(
                    task, outcome, datetime.now(UTC), self._rng)
                settled = await self._settled(task, decision, timing)
                if settled is None:
                    await self._emit(task, Status.CANCELLED, **timing.fields())
                    cancelled = True
                else:
                    await self._carry_out(message, task, settled, timing)
                    confirmed = settled
            except BaseException:
                await running.abandon()
                raise
            await running.confirmed()
        finally:
            duration_s = time.monotonic() - started
            self._middleware.after_attempt(attempt, Outcome(status=Status.CANCELLED, error=None,
                                                   duration_s=duration_s)
                                           if cancelled else _outcome(confirmed, duration_s))

    async def _settled(
        self, task: ReceivedTask, decision: lifecycle.Decision | None,
        timing: _Timing | None = None,
    ) -> lifecycle.Decision | None:
        """The decision to carry out, None if the task ends `cancelled` (`decision` None: it was
        seen cancelled here).

        A step with `then` that succeeded, or was seen cancelled, first records that end in the
        read model itself, and the status the read model keeps is the step's end: the gateway's
        `cancelled` and this `succeeded` race there, and the cancel answers with the winner
        (consumers.settling). Without `then`, or for a retry or a failure, nothing is released
        that a cancel would have to hold back, so nothing is written here.
        """
        if not task.then or self._outcomes is None:
            return decision
        started = _started(timing)
        match decision:
            case None:
                event = self._event(task, Status.CANCELLED, **started)
            case lifecycle.Succeed(result=result):
                event = self._event(task, Status.SUCCEEDED, result=result, **started)
            case _:
                return decision
        state = await record_end(self._outcomes, event)
        if succeeded_in(state, task.run):
            # The recorded result, which a redelivery's handler may not have repeated exactly:
            # the follow-ups get what the read model shows.
            return lifecycle.Succeed(result=state.result)
        if decision is not None:
            log.info("task %s was cancelled before its success was settled; its follow-ups "
                     "are not submitted", task.task_id, extra=task_fields(task.task_id))
        return None

    async def _attempt(
        self, task: ReceivedTask, running: RunningEvent
    ) -> lifecycle.AttemptOutcome:
        """Run the handler once, under the task's time limit, on a task of its own that a
        cancellation can stop without stopping this one (which still has to ack), with a progress
        reporter bound to this attempt (closed when the handler ends: a report not sent by then
        is dropped). A report goes out after `running`: the read model takes it only then."""

        async def publish(report: Report) -> None:
            await running.before_progress()
            await self._publish_progress(task, report)

        reporter = ProgressReporter(publish, label=f"task {task.task_id}")
        handler = asyncio.ensure_future(self._handler(task, reporter.progress))
        running_key = (task.tenant, task.task_id)
        self._running[running_key] = handler
        try:
            async with asyncio.timeout(task.timeout_s):
                return lifecycle.Returned(await handler)
        except TimeoutError:
            return lifecycle.TimedOut()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if handler.cancelled() and not (current is not None and current.cancelling()):
                # Only the handler was cancelled, so by a cancellation, not by shutdown.
                return lifecycle.Raised(TaskCancelled(task.task_id))
            raise
        except Exception as error:  # the handler's failure is this attempt's outcome
            if not isinstance(error, TaskFailure | OSError):
                log.warning("task %s attempt %d: %s", task.task_id, task.attempt, error,
                            exc_info=error, extra=task_fields(task.task_id))
            return lifecycle.Raised(error)
        finally:
            if self._running.get(running_key) is handler:
                del self._running[running_key]
            await reporter.close()

    async def _carry_out(
        self, message: AbstractIncomingMessage, task: ReceivedTask, decision: lifecycle.Decision,
        timing: _Timing | None,
    ) -> None:
        """Publish what the decision asks for, each copy before the event that reports it;
        its event says when the attempt started (`timing`; None: no attempt ran here)."""
        started = _started(timing)
        match decision:
            case lifecycle.Succeed(result=result):
                # A workflow's next steps are confirmed before `succeeded` and the ack.
                if task.then:
                    await submit_follow_ups(self._follow_ups, task.as_succeeded_step(), result)
                await self._emit(task, Status.SUCCEEDED, result=result, **started)
                # Per-task success is the common case and the read model has it: a line per
                # task would be the busiest thing a worker does (its fields cost nothing unless
                # the level is on).
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("task %s succeeded (attempt %d)", task.task_id, task.attempt,
                              extra=_fields(task.task_id, message))
            case lifecycle.RetryInTier(error=error):
                await self._park(message, task, decision.next_attempt, decision.tier_s)
                await self._emit(task, Status.RETRYING, error=error,
                                 next_attempt_at=decision.next_attempt_at, **started)
                log.info("task %s attempt %d failed (%s: %s); retry in %ds",
                         task.task_id, task.attempt, error.type, error.message, decision.tier_s,
                         extra=_fields(task.task_id, message))
            case lifecycle.Fail(reason=reason, error=error):
                await self._dead_letter(message, task, reason, error)
                await self._emit(task, Status.FAILED, error=error, **started)
                log.warning("task %s failed for good after attempt %d: %s: %s",
                            task.task_id, task.attempt, error.type, error.message,
                            extra=_fields(task.task_id, message))

    async def _park(
        self, message: AbstractIncomingMessage, task: ReceivedTask, attempt: int, tier_s: int
    ) -> None:
        """Put a copy, as attempt `attempt`, in the delay queue of `tier_s`."""
        copy = _copy(message, task, {names.HEADER_ATTEMPT: attempt})
        queue = names.retry_queue(self._spec.name, tier_s)
        await self._broker.publish(names.retry_exchange(self._spec.name), queue, copy)

    async def _dead_letter(
        self, message: AbstractIncomingMessage, task: ReceivedTask, reason: str, error: ErrorInfo
    ) -> None:
        """Keep the message in `tasks.<type>.dead` for replay, the reason in its headers."""
        copy = _copy(message, task, {
            names.HEADER_DEAD_REASON: reason,
            names.HEADER_LAST_ERROR: f"{error.type}: {error.message}"[:1000],
        })
        try:
            await self._broker.publish(names.dead_exchange(self._spec.name), "", copy)
        except Refused:
            # An alert, not a drop: the task message is requeued and comes back until there is
            # room (or its delivery limit dead-letters it, which waits for room too).
            log.error("dead-letter queue %s is full: task %s stays in %s until it has room",
                      names.dead_queue(self._spec.name), task.task_id,
                      names.task_queue(self._spec.name), extra=_fields(task.task_id, message))
            raise
        self._middleware.on_dead_letter(self._spec.name, reason)

    async def _quarantine(self, message: AbstractIncomingMessage, invalid: InvalidTask) -> None:
        queue = names.task_queue(self._spec.name)
        await quarantine(self._broker, message, invalid.reason, queue)
        self._middleware.on_quarantine(queue, invalid.reason)
        await self._publish(StatusEvent(
            task_id=invalid.task_id, task_type=self._spec.name, status=Status.REJECTED,
            attempt=0, worker=self._worker_name,
            # A refused follow-up names a tenant its publisher could not prove: nobody's.
            tenant=None if isinstance(invalid, RefusedFollowUp)
            else owner_or_nobody(message, self._tenants),
            error=ErrorInfo(type="InvalidTask", message=invalid.reason[:2000]),
        ))

    async def _emit(self, task: ReceivedTask, status: Status, **fields: Any) -> None:
        await self._publish(self._event(task, status, **fields))

    def _event(self, task: ReceivedTask, status: Status, **fields: Any) -> StatusEvent:
        return StatusEvent(
            task_id=task.task_id, task_type=self._spec.name, status=status,
            attempt=task.attempt, run=task.run, worker=self._worker_name,
            source=task.source, idempotency_key=task.idempotency_key, tenant=task.tenant,
            **fields,
        )

    async def _publish_progress(self, task: ReceivedTask, report: Report) -> None:
        await publish_progress(self._broker, ProgressEvent(
            task_id=task.task_id, task_type=self._spec.name, attempt=task.attempt, run=task.run,
            fraction=report.fraction, message=report.message, at=report.at,
            worker=self._worker_name, tenant=task.tenant,
        ))

    async def _publish(self, event: StatusEvent) -> None:
        await publish_event(self._broker, event, headers=self._middleware.event_headers(event))


@dataclass(frozen=True)
class _Timing:
    """When an attempt started and how long its handler ran: what its outcome event carries."""

    started_at: datetime
    duration_s: float

    def fields(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "duration_ms": round(self.duration_s * 1000, 3)}


def _started(timing: _Timing | None) -> dict[str, Any]:
    return {} if timing is None else timing.fields()


class RefusedFollowUp(InvalidTask):
    """A follow-up whose parent is not its tenant's task of the publishing worker's type."""


class TaskCancelled(Exception):
    """The handler was stopped by a cancellation of its task."""


def _copy(
    message: AbstractIncomingMessage, task: ReceivedTask, headers: dict[str, Any]
) -> aio_pika.Message:
    # The copy is published as this worker's RabbitMQ user (a service user): it names the
    # tenant it was decided to belong to, whoever published the original.
    # Every control header is the one decided here, never the original publisher's: a copy is
    # believed, since a service user publishes it (a None removes the header).
    return copy_of(message, message_id=task.task_id, type=task.spec.name, headers={
        names.HEADER_ATTEMPT: task.attempt, names.HEADER_RUN: task.run,
        names.HEADER_TENANT: task.tenant, names.HEADER_SOURCE: task.source,
        names.HEADER_DEAD_REASON: None, names.HEADER_LAST_ERROR: None, **headers,
    })


def _outcome(confirmed: lifecycle.Decision | None, duration_s: float) -> Outcome:
    """What `after_attempt` is told: no status unless the decision was carried out."""
    if confirmed is None:
        return Outcome(status=None, error=None, duration_s=duration_s)
    error = None if isinstance(confirmed, lifecycle.Succeed) else confirmed.error
    return Outcome(status=confirmed.status, error=error, duration_s=duration_s)


def _fields(task_id: str | None, message: AbstractIncomingMessage) -> dict[str, str]:
    """A log line's fields for the task of `message` (contracts.log_fields), its trace id the
    message's. Inside an attempt the log filter puts the attempt's own over them."""
    return task_fields(task_id, traceparent=traceparent_of(message.headers or {}))
