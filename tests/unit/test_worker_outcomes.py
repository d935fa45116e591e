"""The worker carries out the lifecycle's decision: what it publishes, in which order, and that
it acks only once every publish is confirmed. In process, on a broker that records."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractMessage

from consumers.worker import Worker
from contracts import names
from contracts.statuses import Status
from infra.observability.middleware import Attempt, Middleware, Outcome
from infra.rabbitmq.amqp_codec import TenantRules
from infra.rabbitmq.broker import Broker, BrokerUnavailable
from taskproc.context import JSON, ReportProgress
from taskproc.failures import PermanentFailure, Retry
from taskproc.handler import RunTask, TaskAttempt
from taskproc.tasks.sleep import SLEEP
from tests.support.json_logs import json_lines
from tests.support.waiting import eventually


class Journal(list[str]):
    """Everything the worker did to the broker and the message, in order."""

    def publishes(self) -> list[str]:
        return [entry.removeprefix("publish ") for entry in self if entry.startswith("publish ")]


@dataclass
class RecordingBroker:
    """Confirms each publish after `confirm_s[what]` (0 by default); fails those in `failing`."""

    journal: Journal
    confirm_s: dict[str, float] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    callback: Callable[[Any], Awaitable[None]] | None = None
    name: str = names.task_queue(SLEEP.name)
    # The body of each event published, by what `_describe` calls it ("event succeeded").
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Set as each is published: what a handler may wait for, to end only after it.
    published: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event))

    async def publish(self, exchange: str, routing_key: str, message: AbstractMessage) -> None:
        what = _describe(exchange, routing_key, message)
        self.journal.append(f"publish {what}")
        if exchange == names.EVENTS_EXCHANGE:
            self.events[what] = json.loads(message.body)
        self.published[what].set()
        await asyncio.sleep(self.confirm_s.get(what, 0))
        if what in self.failing:
            raise BrokerUnavailable(f"{what} not confirmed")
        self.journal.append(f"confirm {what}")

    # The consuming side: the broker is its own queue.
    async def queue(self, name: str) -> RecordingBroker:
        return self

    async def set_prefetch(self, count: int) -> None:
        pass

    async def consume(self, callback: Callable[[Any], Awaitable[None]]) -> str:
        self.callback = callback
        return "tag"

    async def cancel(self, tag: str) -> None:
        self.callback = None


def _describe(exchange: str, routing_key: str, message: AbstractMessage) -> str:
    headers = message.headers or {}
    if exchange == names.EVENTS_EXCHANGE:
        return f"event {routing_key.rpartition('.')[2]}"
    if exchange == names.dead_exchange(SLEEP.name):
        return "dead " + str(headers[names.HEADER_DEAD_REASON])
    if exchange == names.QUARANTINE_EXCHANGE:
        return names.QUARANTINE_QUEUE
    return f"{routing_key} attempt=" + str(headers[names.HEADER_ATTEMPT])


@dataclass
class Delivery:
    """The task message, as much of aio-pika's as the worker reads."""

    journal: Journal
    body: bytes
    headers: dict[str, Any]
    message_id: str = "t-1"
    redelivered: bool = False
    timestamp: datetime | None = None
    correlation_id: str | None = None
    app_id: str | None = None
    user_id: str | None = None
    type: str | None = None
    delivery_tag: int = 1
    channel: str = "channel 1"  # what the worker's acks group deliveries by

    async def ack(self, multiple: bool = False) -> None:
        self.journal.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.journal.append("requeue")


class Recorder(Middleware):
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.dead_letters: list[str] = []
        self.started: list[int] = []

    def before_attempt(self, attempt: Attempt) -> None:
        self.started.append(attempt.attempt)

    def after_attempt(self, attempt: Attempt, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def on_dead_letter(self, task_type: str, reason: str) -> None:
        self.dead_letters.append(reason)


@dataclass
class Run:
    journal: Journal
    middleware: Recorder
    events: dict[str, dict[str, Any]]


async def run_one(
    handler: RunTask | EndsAfter, body: dict[str, Any] | bytes, *,
    attempt: int = 1, confirm_s: dict[str, float] | None = None,
    failing: set[str] | None = None, headers: dict[str, Any] | None = None,
    running_after_ms: int = 0,
) -> Run:
    """Deliver one message to a real Worker, wait until it is acked or requeued, stop it.

    `running_after_ms` 0 by default: `running` at every start, as the tests of what is
    published around it expect; the tests of a delayed `running` give theirs.
    """
    journal = Journal()
    broker = RecordingBroker(journal, confirm_s or {}, failing or set())
    middleware = Recorder()
    run_task = handler.make(broker) if isinstance(handler, EndsAfter) else handler
    # The message comes from a service user (a worker's retry copy), whose x-attempt is believed.
    worker = Worker(SLEEP, run_task, cast(Broker, broker), process_name="test/sleep",
                    shutdown_grace_s=5, middleware=middleware,
                    tenants=TenantRules(service_users=frozenset({"worker"}), development=True),
                    running_event_after_ms=running_after_ms)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    callback = await eventually(_probe(lambda: broker.callback), timeout_s=5, interval_s=0.01,
                                what="the worker consuming")
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    await callback(Delivery(journal, raw, {names.HEADER_ATTEMPT: attempt, **(headers or {})},
                            user_id="worker"))
    await eventually(_probe(lambda: {"ack", "requeue"} & set(journal)), timeout_s=5,
                     interval_s=0.01, what="an ack or a requeue")
    stop.set()
    await running
    return Run(journal, middleware, broker.events)


@dataclass(frozen=True)
class EndsAfter:
    """A handler that returns only once the worker has published `what`: the order of the
    steps is the test's, not a race of sleeps. With `reports`, it reports progress first."""

    what: str
    reports: bool = False

    def make(self, broker: RecordingBroker) -> RunTask:
        async def handler(task: TaskAttempt, progress: ReportProgress) -> JSON:
            if self.reports:
                await progress(0.5, "half")
            await broker.published[self.what].wait()
            return {"ok": 1}
        return handler


def _probe(read: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def probe() -> Any:
        return read()
    return probe


def returning(value: object) -> RunTask:
    async def handler(task: TaskAttempt, progress: ReportProgress) -> JSON:
        return cast(JSON, value)
    return handler


def raising(error: Exception) -> RunTask:
    async def handler(task: TaskAttempt, progress: ReportProgress) -> JSON:
        raise error
    return handler


async def too_slow(task: TaskAttempt, progress: ReportProgress) -> JSON:
    await asyncio.sleep(5)
    return None


TASK = {"payload": {"seconds": 0}}
RETRY_1S = f"{names.retry_queue(SLEEP.name, 1)} attempt=2"

CASES = [
    pytest.param(returning({"ok": 1}), TASK, 1,
                 ["event running", "event succeeded"], Status.SUCCEEDED, id="succeeds"),
    pytest.param(raising(Retry("busy")), TASK, 1,
                 ["event running", RETRY_1S, "event retrying"], Status.RETRYING, id="retries"),
    pytest.param(too_slow, {**TASK, "timeout_s": 0.05}, 1,
                 ["event running", RETRY_1S, "event retrying"], Status.RETRYING, id="times-out"),
    pytest.param(raising(PermanentFailure("no")), TASK, 1,
                 ["event running", "dead permanent_failure", "event failed"], Status.FAILED,
                 id="fails-for-good"),
    pytest.param(raising(ValueError("boom")), TASK, 5,
                 ["event running", "dead max_attempts_exhausted", "event failed"], Status.FAILED,
                 id="runs-out-of-attempts"),
    pytest.param(returning({1, 2}), TASK, 1,
                 ["event running", "dead invalid_result", "event failed"], Status.FAILED,
                 id="returns-something-not-json"),
]


@pytest.mark.parametrize(("handler", "body", "attempt", "published", "status"), CASES)
async def test_each_outcome_is_published_in_order_and_acked_after_every_confirm(
    handler: RunTask, body: dict[str, Any], attempt: int, published: list[str], status: Status,
) -> None:
    # `running` confirms last: the ack must still wait for it.
    run = await run_one(handler, body, attempt=attempt, confirm_s={"event running": 0.05})

    assert run.journal.publishes() == published
    assert run.journal[-1] == "ack"
    assert all(f"confirm {what}" in run.journal for what in published)
    assert [outcome.status for outcome in run.middleware.outcomes] == [status]
    failed = status is not Status.SUCCEEDED
    assert (run.middleware.outcomes[0].error is not None) is failed


async def test_a_task_not_due_yet_is_parked_without_running_or_events() -> None:
    later = datetime.now(UTC) + timedelta(seconds=3)
    called: list[TaskAttempt] = []

    async def handler(task: TaskAttempt, progress: ReportProgress) -> JSON:
        called.append(task)
        return None

    run = await run_one(handler, {**TASK, "not_before": later.isoformat()}, attempt=2)

    assert run.journal.publishes() == [f"{names.retry_queue(SLEEP.name, 5)} attempt=2"]
    assert run.journal[-1] == "ack"
    assert not called
    assert run.middleware.started == []


async def test_an_invalid_message_is_quarantined_and_rejected() -> None:
    run = await run_one(returning(None), b"{not json")

    assert run.journal.publishes() == [names.QUARANTINE_QUEUE, "event rejected"]
    assert run.journal[-1] == "ack"


async def test_an_unconfirmed_dead_letter_is_requeued_and_nothing_reports_failed() -> None:
    run = await run_one(raising(PermanentFailure("no")), TASK,
                        failing={"dead permanent_failure"})

    assert run.journal.publishes() == ["event running", "dead permanent_failure"]
    assert "ack" not in run.journal
    assert run.journal[-1] == "requeue"
    assert [outcome.status for outcome in run.middleware.outcomes] == [None]


async def reports_then_returns(task: TaskAttempt, progress: ReportProgress) -> JSON:
    """A handler that reports in a tight loop, yielding now and then as real work would."""
    for step in range(10_000):
        await progress(step / 10_000, f"step {step}")
        if step % 1000 == 0:
            await asyncio.sleep(0)
    return {"steps": 10_000}


async def test_progress_in_a_tight_loop_is_coalesced_and_does_not_hold_the_task() -> None:
    run = await run_one(reports_then_returns, TASK)

    publishes = run.journal.publishes()
    # 10,000 reports in well under the 0.25 s window: the first goes out, the rest coalesce and
    # are dropped when the handler returns.
    assert 1 <= publishes.count("event progress") <= 2
    assert [p for p in publishes if p != "event progress"] == ["event running", "event succeeded"]
    assert run.journal[-1] == "ack"
    assert [outcome.status for outcome in run.middleware.outcomes] == [Status.SUCCEEDED]


async def test_a_progress_report_that_cannot_be_published_does_not_fail_the_task() -> None:
    async def reports_once(task: TaskAttempt, progress: ReportProgress) -> JSON:
        await progress(0.5, "half")
        await asyncio.sleep(0.05)  # the report's publish fails meanwhile
        return "done"

    run = await run_one(reports_once, TASK, failing={"event progress"})

    assert "publish event progress" in run.journal
    assert "confirm event progress" not in run.journal
    assert run.journal[-1] == "ack"
    assert [outcome.status for outcome in run.middleware.outcomes] == [Status.SUCCEEDED]


@pytest.mark.parametrize(("handler", "attempt", "outcome"), [
    (returning({"ok": 1}), 1, "succeeded"),
    (raising(Retry("busy")), 1, "failed (Retry: busy); retry in 1s"),
    (raising(PermanentFailure("no")), 1, "failed for good"),
], ids=["succeeds", "retries", "fails-for-good"])
async def test_the_outcome_line_carries_the_task_id_and_trace_id_as_json_fields(
    handler: RunTask, attempt: int, outcome: str,
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    # The worker here has no log middleware: the fields must come from the line itself.
    with json_lines("consumers.worker") as lines:
        await run_one(handler, TASK, attempt=attempt,
                      headers={names.HEADER_TRACEPARENT: f"00-{trace_id}-00f067aa0ba902b7-01"})

    (line,) = [line for line in lines if outcome in line["message"]]
    assert (line["task_id"], line["trace_id"]) == ("t-1", trace_id)


# --- `running` only for an attempt that lasts (RUNNING_EVENT_AFTER_MS) -------------------------

LONG_DELAY_MS = 60_000  # longer than any of these tests: only what they do publishes `running`

SHORT_CASES = [
    pytest.param(returning({"ok": 1}), TASK, 1, ["event succeeded"], id="succeeds"),
    pytest.param(raising(Retry("busy")), TASK, 1, [RETRY_1S, "event retrying"], id="retries"),
    pytest.param(too_slow, {**TASK, "timeout_s": 0.05}, 1, [RETRY_1S, "event retrying"],
                 id="times-out"),
    pytest.param(raising(PermanentFailure("no")), TASK, 1,
                 ["dead permanent_failure", "event failed"], id="fails-for-good"),
    pytest.param(raising(ValueError("boom")), TASK, 5,
                 ["dead max_attempts_exhausted", "event failed"], id="runs-out-of-attempts"),
]


@pytest.mark.parametrize(("handler", "body", "attempt", "published"), SHORT_CASES)
async def test_an_attempt_that_ends_before_the_delay_publishes_only_its_outcome_with_its_start(
    handler: RunTask, body: dict[str, Any], attempt: int, published: list[str],
) -> None:
    before = datetime.now(UTC)

    run = await run_one(handler, body, attempt=attempt, running_after_ms=LONG_DELAY_MS)

    assert run.journal.publishes() == published
    assert run.journal[-1] == "ack"
    (outcome,) = run.events.values()
    started_at = datetime.fromisoformat(outcome["started_at"])
    assert before <= started_at <= datetime.fromisoformat(outcome["at"])
    assert outcome["duration_ms"] >= (50 if "timeout_s" in body else 0)


async def test_an_attempt_that_lasts_publishes_running_dated_when_it_started() -> None:
    # The handler ends only once `running` is published: the delay (10 ms) ran out first.
    run = await run_one(EndsAfter("event running"), TASK, running_after_ms=10,
                        confirm_s={"event running": 0.05})

    assert run.journal.publishes() == ["event running", "event succeeded"]
    # `running` confirms last: the ack still waits for it.
    assert run.journal.index("confirm event running") < run.journal.index("ack")
    assert run.journal[-1] == "ack"
    running, succeeded = run.events["event running"], run.events["event succeeded"]
    assert running["at"] == running["started_at"] == succeeded["started_at"]
    assert "duration_ms" not in running
    assert succeeded["duration_ms"] >= 10


async def test_a_progress_report_publishes_running_first_at_once() -> None:
    # The read model takes a report only for a `running` task: `running` goes out first,
    # confirmed, long before its delay.
    run = await run_one(EndsAfter("event progress", reports=True), TASK,
                        running_after_ms=LONG_DELAY_MS, confirm_s={"event running": 0.05})

    assert run.journal.publishes() == ["event running", "event progress", "event succeeded"]
    assert run.journal.index("confirm event running") < run.journal.index(
        "publish event progress")
    assert run.journal[-1] == "ack"
    assert run.events["event running"]["started_at"] == run.events["event succeeded"][
        "started_at"]
