"""The lifecycle policy as a table: task terms and an attempt's outcome in, a decision out."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from consumers.lifecycle import (
    AttemptOutcome,
    Decision,
    Defer,
    Fail,
    Raised,
    Returned,
    Succeed,
    TimedOut,
    admit,
    decide,
)
from consumers.lifecycle import RetryInTier as RetryIn
from contracts.limits import MAX_PAYLOAD_DEPTH
from contracts.messages import ErrorInfo
from contracts.registry import TaskSpec
from contracts.statuses import Status
from taskproc.context import JSON
from taskproc.failures import PermanentFailure, Retry
from taskproc.tasks.sleep import SleepPayload

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPEC = TaskSpec(name="probe", payload=SleepPayload, retry_base_s=1.0, retry_cap_s=120.0)


@dataclass(frozen=True, kw_only=True)
class Task:
    """The terms the policy reads, as `consumers.decode.ReceivedTask` carries them."""

    spec: TaskSpec = SPEC
    attempt: int = 1
    max_attempts: int = 5
    timeout_s: float = 30.0
    retry_base_s: float | None = None
    not_before: datetime | None = None


class Highest(random.Random):
    """Jitter at the top of its range: the longest delay the backoff can ask for."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Lowest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


def attempt(
    n: int, of: int = 5, *, spec: TaskSpec = SPEC, timeout_s: float = 30.0,
    retry_base_s: float | None = None, not_before: datetime | None = None,
) -> Task:
    return Task(spec=spec, attempt=n, max_attempts=of, timeout_s=timeout_s,
                retry_base_s=retry_base_s, not_before=not_before)


def error(kind: str, message: str) -> ErrorInfo:
    return ErrorInfo(type=kind, message=message)


def retry(tier_s: int, next_attempt: int, failure: ErrorInfo) -> RetryIn:
    return RetryIn(tier_s=tier_s, next_attempt=next_attempt,
                   next_attempt_at=NOW + timedelta(seconds=tier_s), error=failure)


def exhausted(failure: ErrorInfo) -> Fail:
    return Fail(reason="max_attempts_exhausted", error=failure)


BOOM = error("ValueError", "boom")
BUSY = error("Retry", "busy")
TIMED_OUT = error("TimeoutError", "ran past its 30s limit")
REFUSED = error("PermanentFailure", "550 no such user")
def nested(levels: int) -> JSON:
    value: JSON = []
    for _ in range(levels - 1):
        value = [value]
    return value


NOT_JSON = error("InvalidResult", "handler returned set, not JSON")

# (task, outcome, jitter, decision). Backoff ceiling for attempt n: min(cap, base * 2**(n-1)),
# jittered within its upper half; the delay is rounded up to a tier of 1, 5, 30, 120, 600 s.
ROWS = [
    # The handler returned.
    pytest.param(attempt(1), Returned({"ok": True}), Highest(),
                 Succeed(result={"ok": True}), id="json-result"),
    pytest.param(attempt(5), Returned([1, "two", None]), Highest(),
                 Succeed(result=[1, "two", None]), id="json-result-on-the-last-attempt"),
    pytest.param(attempt(1), Returned(None), Highest(), Succeed(result=None), id="no-result"),
    pytest.param(attempt(1), Returned({1, 2}), Highest(),
                 Fail(reason="invalid_result", error=NOT_JSON), id="not-json-fails-at-once"),
    pytest.param(attempt(5), Returned({"when": NOW}), Highest(),
                 Fail(reason="invalid_result", error=error(
                     "InvalidResult", "handler returned dict, not JSON")),
                 id="not-json-inside-a-dict"),
    pytest.param(attempt(1), Returned(nested(MAX_PAYLOAD_DEPTH)), Highest(),
                 Succeed(result=nested(MAX_PAYLOAD_DEPTH)), id="json-result-at-the-depth-cap"),
    pytest.param(attempt(1), Returned(nested(MAX_PAYLOAD_DEPTH + 1)), Highest(),
                 Fail(reason="invalid_result", error=error(
                     "InvalidResult", "handler returned JSON nested deeper than 64 levels")),
                 id="too-deep-fails-at-once"),
    # The handler raised PermanentFailure: failed whatever the attempt.
    pytest.param(attempt(1), Raised(PermanentFailure("550 no such user")), Highest(),
                 Fail(reason="permanent_failure", error=REFUSED), id="permanent-first-attempt"),
    pytest.param(attempt(5), Raised(PermanentFailure("550 no such user")), Highest(),
                 Fail(reason="permanent_failure", error=REFUSED), id="permanent-last-attempt"),
    # The handler raised Retry without a delay: the backoff decides.
    pytest.param(attempt(1), Raised(Retry("busy")), Highest(),
                 retry(1, 2, BUSY), id="retry-backoff-attempt-1"),
    pytest.param(attempt(3), Raised(Retry("busy")), Highest(),
                 retry(5, 4, BUSY), id="retry-backoff-attempt-3-ceiling-4s"),
    pytest.param(attempt(3), Raised(Retry("busy")), Lowest(),
                 retry(5, 4, BUSY), id="retry-backoff-attempt-3-floor-2s"),
    pytest.param(attempt(4), Raised(Retry("busy")), Highest(),
                 retry(30, 5, BUSY), id="retry-backoff-attempt-4-ceiling-8s"),
    pytest.param(attempt(5), Raised(Retry("busy")), Highest(),
                 exhausted(BUSY), id="retry-on-the-last-attempt-fails"),
    # ... and with an explicit delay: rounded up to a tier, the backoff ignored.
    pytest.param(attempt(1), Raised(Retry("busy", delay_s=30)), Highest(),
                 retry(30, 2, BUSY), id="explicit-delay-on-a-tier"),
    pytest.param(attempt(1), Raised(Retry("busy", delay_s=7)), Lowest(),
                 retry(30, 2, BUSY), id="explicit-delay-rounds-up"),
    pytest.param(attempt(2), Raised(Retry("busy", delay_s=0)), Highest(),
                 retry(1, 3, BUSY), id="explicit-zero-delay-is-the-shortest-tier"),
    pytest.param(attempt(1), Raised(Retry("busy", delay_s=3600)), Highest(),
                 retry(600, 2, BUSY), id="explicit-delay-capped-by-the-longest-tier"),
    pytest.param(attempt(5), Raised(Retry("busy", delay_s=30)), Highest(),
                 exhausted(BUSY), id="explicit-delay-on-the-last-attempt-fails"),
    # Any other exception is transient.
    pytest.param(attempt(2), Raised(ValueError("boom")), Highest(),
                 retry(5, 3, BOOM), id="other-exception-retries"),
    pytest.param(attempt(1), Raised(OSError("connection refused")), Highest(),
                 retry(1, 2, error("OSError", "connection refused")), id="os-error-retries"),
    pytest.param(attempt(5), Raised(ValueError("boom")), Highest(),
                 exhausted(BOOM), id="other-exception-on-the-last-attempt-fails"),
    pytest.param(attempt(7), Raised(ValueError("boom")), Highest(),
                 exhausted(BOOM), id="past-the-last-attempt-fails"),
    pytest.param(attempt(1, of=1), Raised(ValueError("boom")), Highest(),
                 exhausted(BOOM), id="single-attempt-task-fails"),
    pytest.param(attempt(1), Raised(ValueError()), Highest(),
                 retry(1, 2, error("ValueError", "ValueError()")), id="empty-message-is-the-repr"),
    # The handler ran past the task's time limit.
    pytest.param(attempt(1), TimedOut(), Highest(), retry(1, 2, TIMED_OUT), id="timeout-retries"),
    pytest.param(attempt(5), TimedOut(), Highest(), exhausted(TIMED_OUT), id="timeout-last"),
    pytest.param(attempt(1, timeout_s=2.5), TimedOut(), Highest(),
                 retry(1, 2, error("TimeoutError", "ran past its 2.5s limit")),
                 id="timeout-names-the-task-limit"),
    # The task's own retry base over the spec's, under the spec's cap.
    pytest.param(attempt(1, retry_base_s=10.0), Raised(Retry("busy")), Highest(),
                 retry(30, 2, BUSY), id="task-base-10s-ceiling"),
    pytest.param(attempt(1, retry_base_s=10.0), Raised(Retry("busy")), Lowest(),
                 retry(5, 2, BUSY), id="task-base-10s-floor"),
    pytest.param(attempt(1, retry_base_s=0.25), Raised(Retry("busy")), Highest(),
                 retry(1, 2, BUSY), id="task-base-under-a-second"),
    # The cap: the backoff stops growing at the spec's retry_cap_s.
    pytest.param(attempt(9, of=20), Raised(Retry("busy")), Highest(),
                 retry(120, 10, BUSY), id="backoff-capped-at-120s"),
    pytest.param(attempt(9, of=20), Raised(Retry("busy")), Lowest(),
                 retry(120, 10, BUSY), id="backoff-capped-floor-60s"),
    pytest.param(attempt(9, of=20, spec=replace(SPEC, retry_cap_s=10.0)),
                 Raised(Retry("busy")), Highest(), retry(30, 10, BUSY), id="spec-cap-10s"),
    pytest.param(attempt(9, of=20, spec=replace(SPEC, retry_cap_s=10.0)),
                 Raised(Retry("busy", delay_s=100)), Highest(),
                 retry(120, 10, BUSY), id="spec-cap-does-not-bound-an-explicit-delay"),
    # A `not_before` already passed plays no part once the task ran.
    pytest.param(attempt(2, not_before=NOW - timedelta(hours=1)), Raised(Retry("busy")),
                 Highest(), retry(5, 3, BUSY), id="past-not-before-ignored"),
]


@pytest.mark.parametrize(("task", "outcome", "jitter", "decision"), ROWS)
def test_the_decision_for_each_outcome(
    task: Task, outcome: AttemptOutcome, jitter: random.Random, decision: Decision
) -> None:
    assert decide(task, outcome, NOW, jitter) == decision


@pytest.mark.parametrize(
    ("not_before", "deferral"),
    [
        pytest.param(None, None, id="no-not-before"),
        pytest.param(NOW - timedelta(seconds=1), None, id="passed"),
        pytest.param(NOW, None, id="due-now"),
        pytest.param(NOW + timedelta(milliseconds=300), 1, id="under-a-second"),
        pytest.param(NOW + timedelta(seconds=3), 5, id="3s-rounds-up-to-5s"),
        pytest.param(NOW + timedelta(seconds=30), 30, id="on-a-tier"),
        pytest.param(NOW + timedelta(seconds=45), 120, id="45s-rounds-up-to-120s"),
        pytest.param(NOW + timedelta(hours=2), 600, id="longer-than-the-longest-tier"),
    ],
)
@pytest.mark.parametrize("task_attempt", [1, 5])
def test_a_task_waits_for_its_not_before_in_the_tier_that_covers_the_wait(
    not_before: datetime | None, deferral: int | None, task_attempt: int
) -> None:
    decision = admit(attempt(task_attempt, not_before=not_before), NOW)

    expected = None if deferral is None or not_before is None else Defer(
        until=not_before, tier_s=deferral)
    assert decision == expected


def test_each_decision_names_the_status_it_reports() -> None:
    assert Succeed(result=None).status is Status.SUCCEEDED
    assert retry(1, 2, BOOM).status is Status.RETRYING
    assert exhausted(BOOM).status is Status.FAILED


@pytest.mark.parametrize("task_attempt", [1, 2, 3, 4, 6, 8])
def test_jittered_backoff_lands_on_a_tier_between_its_floor_and_ceiling(
    task_attempt: int,
) -> None:
    task = attempt(task_attempt, of=10)
    rng = random.Random(task_attempt)
    lowest = decide(task, Raised(ValueError("boom")), NOW, Lowest())
    highest = decide(task, Raised(ValueError("boom")), NOW, Highest())
    assert isinstance(lowest, RetryIn)
    assert isinstance(highest, RetryIn)

    tiers = {decide(task, Raised(ValueError("boom")), NOW, rng) for _ in range(50)}

    assert {d.tier_s for d in tiers if isinstance(d, RetryIn)} <= {lowest.tier_s, highest.tier_s}
    assert all(isinstance(d, RetryIn) for d in tiers)


def test_a_long_error_message_is_cut_to_what_a_status_event_holds() -> None:
    decision = decide(attempt(1), Raised(PermanentFailure("x" * 5000)), NOW, Highest())

    assert isinstance(decision, Fail)
    assert decision.error.message == "x" * 2000
