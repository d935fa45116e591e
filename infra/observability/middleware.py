"""Hooks around each task attempt and each projector write, as Dramatiq's middleware.

Metrics, traces and task-scoped logs are middleware: the worker and the projector call the hooks
and know nothing of Prometheus or OpenTelemetry. Every hook does nothing unless overridden.

Hooks of one attempt run on that attempt's own asyncio task, before and after the handler: a
context variable set in `before_attempt` is seen by the handler and by every log line it writes,
and is reset in `after_attempt`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from contracts.messages import ErrorInfo, StatusEvent
from contracts.statuses import Status


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One attempt at a task, as a worker is about to run it."""

    task_id: str
    task_type: str
    attempt: int
    run: int
    # The task message's headers: trace context (`traceparent`) travels there.
    headers: Mapping[str, Any]
    # When the task was published (the message's timestamp), for queue wait.
    published_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What came of an attempt. `status` is None when it ended without one (shutdown, crash)."""

    status: Status | None
    error: ErrorInfo | None
    duration_s: float


@dataclass(frozen=True, kw_only=True)
class ProjectedEvent:
    """A status event as the projector read it, with its message's headers."""

    event: StatusEvent
    headers: Mapping[str, Any]


class Middleware:
    """Override the hooks you need."""

    def before_attempt(self, attempt: Attempt) -> None:
        """The handler is about to run."""

    def after_attempt(self, attempt: Attempt, outcome: Outcome) -> None:
        """The attempt's outcome is confirmed by RabbitMQ (or it ended without one)."""

    def event_headers(self, event: StatusEvent) -> dict[str, Any]:
        """Headers to put on a status event's message (e.g. the trace context)."""
        return {}

    def on_quarantine(self, queue: str, reason: str) -> None:
        """An invalid message was moved to the quarantine queue."""

    def on_dead_letter(self, task_type: str, reason: str) -> None:
        """A task message was moved to its dead-letter queue."""

    def before_write(self, events: Sequence[ProjectedEvent]) -> None:
        """The projector is about to write a batch of events to the read model."""

    def after_write(self, events: Sequence[ProjectedEvent], error: BaseException | None) -> None:
        """The batch is written (`error` None) or was not (it will be retried or requeued)."""


class Middlewares(Middleware):
    """Several middlewares as one: `before_*` hooks in order, `after_*` hooks in reverse."""

    def __init__(self, middlewares: Sequence[Middleware] = ()) -> None:
        self._forward = tuple(middlewares)
        self._backward = tuple(reversed(self._forward))

    def before_attempt(self, attempt: Attempt) -> None:
        for middleware in self._forward:
            middleware.before_attempt(attempt)

    def after_attempt(self, attempt: Attempt, outcome: Outcome) -> None:
        for middleware in self._backward:
            middleware.after_attempt(attempt, outcome)

    def event_headers(self, event: StatusEvent) -> dict[str, Any]:
        headers: dict[str, Any] = {}
        for middleware in self._forward:
            headers.update(middleware.event_headers(event))
        return headers

    def on_quarantine(self, queue: str, reason: str) -> None:
        for middleware in self._forward:
            middleware.on_quarantine(queue, reason)

    def on_dead_letter(self, task_type: str, reason: str) -> None:
        for middleware in self._forward:
            middleware.on_dead_letter(task_type, reason)

    def before_write(self, events: Sequence[ProjectedEvent]) -> None:
        for middleware in self._forward:
            middleware.before_write(events)

    def after_write(self, events: Sequence[ProjectedEvent], error: BaseException | None) -> None:
        for middleware in self._backward:
            middleware.after_write(events, error)
