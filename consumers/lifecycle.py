"""The lifecycle policy: what comes of a task attempt, decided by pure functions.

`admit` says whether a task waits for its `not_before`; `decide` turns an attempt's outcome into
succeed, retry in a delay tier, or fail with a reason. Both read the clock and the random source
they are given and do no IO: the worker carries the decision out.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Literal, Protocol, TypeAlias, cast

from contracts import names
from contracts.json_depth import nests_deeper
from contracts.limits import MAX_PAYLOAD_DEPTH
from contracts.messages import ErrorInfo
from contracts.registry import TaskSpec
from contracts.statuses import Status
from taskproc import failures
from taskproc.context import JSON


class Terms(Protocol):
    """What the policy reads of a task (`consumers.decode.ReceivedTask` has it)."""

    @property
    def spec(self) -> TaskSpec: ...
    @property
    def attempt(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def timeout_s(self) -> float: ...
    @property
    def retry_base_s(self) -> float | None: ...  # the task's own, over the spec's
    @property
    def not_before(self) -> datetime | None: ...


# What an attempt came to, as the worker saw it.


@dataclass(frozen=True)
class Returned:
    """The handler returned `value` (not yet known to be JSON)."""

    value: object


@dataclass(frozen=True)
class Raised:
    """The handler raised `error`: PermanentFailure, Retry, or anything else (transient)."""

    error: Exception


@dataclass(frozen=True)
class TimedOut:
    """The handler ran past the task's `timeout_s`."""


AttemptOutcome: TypeAlias = Returned | Raised | TimedOut


# What to do about it.

FailReason: TypeAlias = Literal["permanent_failure", "invalid_result", "max_attempts_exhausted"]


@dataclass(frozen=True, kw_only=True)
class Succeed:
    status: ClassVar[Status] = Status.SUCCEEDED
    result: JSON


@dataclass(frozen=True, kw_only=True)
class RetryInTier:
    """The decision to park a copy as attempt `next_attempt` in the delay queue of `tier_s`, then
    publish `retrying` (not the exception a handler raises: that is `taskproc.failures.Retry`)."""

    status: ClassVar[Status] = Status.RETRYING
    tier_s: int
    next_attempt: int
    next_attempt_at: datetime
    error: ErrorInfo


@dataclass(frozen=True, kw_only=True)
class Fail:
    """Dead-letter the message with `reason`, then `failed`."""

    status: ClassVar[Status] = Status.FAILED
    reason: FailReason
    error: ErrorInfo


@dataclass(frozen=True, kw_only=True)
class Defer:
    """Not yet: park the message, same attempt, in the delay queue of `tier_s`; no event."""

    until: datetime
    tier_s: int


Decision: TypeAlias = Succeed | RetryInTier | Fail


def admit(task: Terms, now: datetime) -> Defer | None:
    """None to run the task now; a Defer while its `not_before` is ahead.

    A wait past the longest tier parks it more than once: each return is admitted again.
    """
    if task.not_before is None or task.not_before <= now:
        return None
    wait_s = (task.not_before - now).total_seconds()
    return Defer(until=task.not_before, tier_s=names.retry_tier(wait_s))


def decide(task: Terms, outcome: AttemptOutcome, now: datetime, rng: random.Random) -> Decision:
    """What comes of this attempt: `rng` jitters the backoff, `now` dates the next attempt."""
    match outcome:
        case Returned(value=value):
            problem = _result_problem(value)
            if problem is None:
                return Succeed(result=cast(JSON, value))
            return Fail(reason="invalid_result",
                        error=ErrorInfo(type="InvalidResult", message=problem))
        case TimedOut():
            limit = f"ran past its {task.timeout_s:g}s limit"
            return _retry_or_fail(task, ErrorInfo(type="TimeoutError", message=limit),
                                  None, now, rng)
        case Raised(error=failures.PermanentFailure() as error):
            return Fail(reason="permanent_failure", error=error_info(error))
        case Raised(error=error):
            delay_s = error.delay_s if isinstance(error, failures.Retry) else None
            return _retry_or_fail(task, error_info(error), delay_s, now, rng)


def error_info(error: BaseException) -> ErrorInfo:
    """The type and message of `error`, never its traceback."""
    return ErrorInfo(type=type(error).__name__, message=(str(error) or repr(error))[:2000])


def _retry_or_fail(
    task: Terms, error: ErrorInfo, delay_s: float | None, now: datetime, rng: random.Random
) -> RetryInTier | Fail:
    if task.attempt >= task.max_attempts:
        return Fail(reason="max_attempts_exhausted", error=error)
    if delay_s is None:
        delay_s = task.spec.retry_delay_s(task.attempt, rng, base_s=task.retry_base_s)
    # Rounded up to a tier: the delay queues exist per tier, the longest one caps the wait.
    tier_s = names.retry_tier(delay_s)
    return RetryInTier(tier_s=tier_s, next_attempt=task.attempt + 1,
                 next_attempt_at=now + timedelta(seconds=tier_s), error=error)


def _result_problem(value: object) -> str | None:
    # Depth first, without recursion: a result travels in the succeeded event and in each
    # follow-up's body (as `previous_result`), which must stay within MAX_BODY_DEPTH.
    if nests_deeper(value, MAX_PAYLOAD_DEPTH):
        return f"handler returned JSON nested deeper than {MAX_PAYLOAD_DEPTH} levels"
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return f"handler returned {type(value).__name__}, not JSON"
    return None
