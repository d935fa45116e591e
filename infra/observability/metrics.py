"""Prometheus metrics of every process, and the task middleware that records the consumers' ones.

The instruments live on prometheus-client's default registry, as the client intends: a process
registers them once, on first import, and whoever serves `/metrics` (the gateway's route, a
consumer's metrics port) exposes all of them. Defining an instrument is no IO.

Labels are bounded sets only (task types, statuses, reasons, queue names, route templates),
never task ids or free text, so the number of series stays fixed however many tasks run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from contracts.statuses import Status
from infra.observability.middleware import Attempt, Middleware, Outcome, ProjectedEvent

log = logging.getLogger(__name__)

# A `_created` series beside every counter and histogram doubles what is scraped and stored,
# for a start time that `process_start_time_seconds` already gives.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Seconds: from a millisecond (a no-op task, a projector write) to the longest task timeout.
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                     10.0, 30.0, 60.0, 300.0, 900.0)
_BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)

# Gateway (recorded by gateway/middleware/metrics.py).
SUBMISSIONS = Counter(
    "taskproc_submissions_total",
    "POST /tasks answers by task type and HTTP status code",
    ["task_type", "code"],
)
HTTP_REQUESTS = Counter(
    "taskproc_http_requests_total",
    "HTTP requests answered by the gateway, by method, route template and status code",
    ["method", "route", "code"],
)
HTTP_DURATION = Histogram(
    "taskproc_http_request_duration_seconds",
    "Time the gateway took to answer, by method and route template",
    ["method", "route"],
    buckets=_DURATION_BUCKETS,
)

# Workers.
OUTCOMES = Counter(
    "taskproc_task_outcomes_total",
    "Task attempts by type and outcome (succeeded, retrying, failed, or interrupted: ended "
    "without an outcome, e.g. at shutdown, and redelivered)",
    ["task_type", "status"],
)
HANDLER_DURATION = Histogram(
    "taskproc_task_handler_duration_seconds",
    "Time from a handler's start to its outcome confirmed by RabbitMQ, by task type",
    ["task_type"],
    buckets=_DURATION_BUCKETS,
)
QUEUE_WAIT = Histogram(
    "taskproc_task_queue_wait_seconds",
    "Time from a task's publish to its first attempt's start, by task type (the AMQP "
    "timestamp has whole seconds: a value is up to 1 s above the true wait)",
    ["task_type"],
    buckets=_DURATION_BUCKETS,
)
RETRIES = Counter(
    "taskproc_task_retries_total",
    "Attempts that failed and were scheduled again, by task type",
    ["task_type"],
)
DEAD_LETTERS = Counter(
    "taskproc_dead_letters_total",
    "Task messages moved to their dead-letter queue, by task type and reason",
    ["task_type", "reason"],
)
QUARANTINED = Counter(
    "taskproc_quarantined_total",
    "Invalid messages moved to the quarantine queue, by the queue they came from",
    ["queue"],
)
IN_FLIGHT = Gauge(
    "taskproc_tasks_in_flight",
    "Task attempts running now, by task type",
    ["task_type"],
)

# Projector.
PROJECTOR_LAG = Histogram(
    "taskproc_projector_lag_seconds",
    "Age of a status event when the projector wrote it to the read model (now - event.at)",
    buckets=_DURATION_BUCKETS,
)
PROJECTOR_BATCH = Histogram(
    "taskproc_projector_batch_events",
    "Events per projector write to the read model",
    buckets=_BATCH_BUCKETS,
)
PROJECTOR_EVENTS = Counter(
    "taskproc_projector_events_total",
    "Status events the projector wrote to the read model, by status",
    ["status"],
)
PROJECTOR_WRITE_FAILURES = Counter(
    "taskproc_projector_write_failures_total",
    "Projector batches not written (held back for a retry or given back to RabbitMQ)",
)

_INTERRUPTED = "interrupted"
_LAG_STATUSES = tuple(status.value for status in Status)


class MetricsMiddleware(Middleware):
    """Counts and times attempts, dead letters, quarantines and projector writes.

    Label children are looked up once per task type and kept: a lookup costs more than the
    increment it leads to.
    """

    def __init__(self) -> None:
        self._per_type: dict[str, _TypeInstruments] = {}
        self._events_by_status = {status: PROJECTOR_EVENTS.labels(status=status)
                                  for status in _LAG_STATUSES}

    def _instruments(self, task_type: str) -> _TypeInstruments:
        found = self._per_type.get(task_type)
        if found is None:
            found = self._per_type[task_type] = _TypeInstruments(task_type)
        return found

    def before_attempt(self, attempt: Attempt) -> None:
        instruments = self._instruments(attempt.task_type)
        instruments.in_flight.inc()
        # Only a first attempt's wait is a queue wait: a retry's copy keeps the original
        # timestamp, so its age includes the backoff.
        if attempt.attempt == 1 and attempt.published_at is not None:
            waited = (datetime.now(UTC) - attempt.published_at).total_seconds()
            instruments.queue_wait.observe(max(waited, 0.0))

    def after_attempt(self, attempt: Attempt, outcome: Outcome) -> None:
        instruments = self._instruments(attempt.task_type)
        instruments.in_flight.dec()
        instruments.duration.observe(outcome.duration_s)
        status = outcome.status.value if outcome.status is not None else _INTERRUPTED
        instruments.outcome(status).inc()
        if outcome.status is Status.RETRYING:
            instruments.retries.inc()

    def on_dead_letter(self, task_type: str, reason: str) -> None:
        DEAD_LETTERS.labels(task_type=task_type, reason=reason).inc()

    def on_quarantine(self, queue: str, reason: str) -> None:
        QUARANTINED.labels(queue=queue).inc()

    def before_write(self, events: Sequence[ProjectedEvent]) -> None:
        PROJECTOR_BATCH.observe(len(events))

    def after_write(self, events: Sequence[ProjectedEvent], error: BaseException | None) -> None:
        if error is not None:
            PROJECTOR_WRITE_FAILURES.inc()
            return
        now = datetime.now(UTC)
        for projected in events:
            event = projected.event
            PROJECTOR_LAG.observe(max((now - event.at).total_seconds(), 0.0))
            counter = self._events_by_status.get(event.status.value)
            if counter is not None:
                counter.inc()


class _TypeInstruments:
    """The label children of one task type."""

    def __init__(self, task_type: str) -> None:
        self._task_type = task_type
        self.in_flight = IN_FLIGHT.labels(task_type=task_type)
        self.duration = HANDLER_DURATION.labels(task_type=task_type)
        self.queue_wait = QUEUE_WAIT.labels(task_type=task_type)
        self.retries = RETRIES.labels(task_type=task_type)
        self._outcomes: dict[str, Counter] = {}

    def outcome(self, status: str) -> Counter:
        found = self._outcomes.get(status)
        if found is None:
            found = self._outcomes[status] = OUTCOMES.labels(task_type=self._task_type,
                                                             status=status)
        return found


@contextmanager
def metrics_server(host: str, port: int, *, process: str) -> Iterator[int | None]:
    """Serve the registry on http://host:port/metrics while the block runs; `port` 0 is off.

    A port already taken is logged and the process goes on without its metrics: a second
    copy of a worker on one machine must still run. Yields the port served, or None.
    """
    if port == 0:
        yield None
        return
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as error:
        log.warning("%s: metrics not served, %s:%d is unavailable (%s)", process, host, port,
                    error)
        yield None
        return
    log.info("%s: metrics on http://%s:%d/metrics", process, host, port)
    try:
        yield port
    finally:
        # The server notices a shutdown within its half-second poll: wait for it on a thread of
        # its own, so stopping the process is not held up by it.
        threading.Thread(target=_shut_down, args=(server, thread), daemon=True,
                         name="metrics-server-shutdown").start()


def _shut_down(server: WSGIServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
