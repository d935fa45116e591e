"""Upper bounds an operator sets on what a publisher may ask of a task, checked by pure functions.

The gateway turns a breach into a 422 and the worker quarantines a message with one as
`rejected`: both ask `over_limits`, so a direct AMQP publisher meets the same caps as an HTTP
caller. The task id rule lives here too, for the same reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

# Ids from outside end up in AMQP properties (a short string of at most 255 bytes), MongoDB keys,
# URLs and log lines: a small ASCII alphabet keeps each of them safe. HTTP ids are UUIDs.
TASK_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
TASK_ID_RULE = "1-128 characters of [A-Za-z0-9._:-]"
_TASK_ID = re.compile(TASK_ID_PATTERN)

DAY_S = 86_400.0

# Labels a task may carry (`nightly`, `customer=42`, `schedule:abc`): listed and filtered on,
# never interpreted. The alphabet keeps them safe in query strings, logs and MongoDB keys.
LABEL_PATTERN = r"^[A-Za-z0-9._:/=-]{1,64}$"
LABEL_RULE = "1-64 characters of [A-Za-z0-9._:/=-]"
MAX_LABELS = 10
# A workflow (`then`): follow-ups per task, nesting depth, and tasks in all.
MAX_THEN = 10
MAX_WORKFLOW_DEPTH = 10
MAX_WORKFLOW_TASKS = 100
# JSON nesting, in levels of objects and arrays. Python's parser recurses and pydantic will not
# serialize past 255 levels, so a deeper document fails as a bug (a 500, a requeue loop) instead
# of as bad input. A payload's cap holds wherever a payload is validated; a task message body's
# is checked before it is parsed and leaves room for a payload at its cap in a full workflow.
MAX_PAYLOAD_DEPTH = 64
MAX_BODY_DEPTH = 128


def is_valid_task_id(value: str) -> bool:
    # fullmatch: `$` alone would let a trailing newline through.
    return _TASK_ID.fullmatch(value) is not None


@dataclass(frozen=True, kw_only=True)
class TaskLimits:
    """The caps of one task type: per-attempt time limit, attempts, and how far ahead
    `not_before` may be."""

    timeout_s: float
    max_attempts: int
    not_before_s: float

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.max_attempts < 1 or self.not_before_s < 0:
            raise ValueError(f"limits must be positive: {self}")


@dataclass(frozen=True)
class OverLimit:
    """One option above its cap: `field` names it, `message` says the cap for people."""

    field: str
    message: str


def over_limits(
    task_type: str, limits: TaskLimits, *, timeout_s: float | None, max_attempts: int | None,
    not_before: datetime | None, now: datetime,
) -> list[OverLimit]:
    """Every option of a task that is above its type's cap (an empty list when none is)."""
    found = []
    if timeout_s is not None and timeout_s > limits.timeout_s:
        found.append(OverLimit("timeout_s", f"at most {limits.timeout_s:g} for {task_type}"))
    if max_attempts is not None and max_attempts > limits.max_attempts:
        found.append(OverLimit("max_attempts",
                               f"at most {limits.max_attempts} for {task_type}"))
    if not_before is not None and not_before - now > timedelta(seconds=limits.not_before_s):
        found.append(OverLimit("not_before", f"at most {_ahead(limits.not_before_s)} ahead "
                                             f"for {task_type}"))
    return found


def _ahead(seconds: float) -> str:
    if seconds >= DAY_S and seconds % DAY_S == 0:
        return f"{seconds / DAY_S:g} days"
    return f"{seconds:g} seconds"
