"""Task statuses, their order, and the position that makes the projection monotonic."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[Status] = frozenset(
    {Status.SUCCEEDED, Status.FAILED, Status.DEAD, Status.CANCELLED, Status.REJECTED}
)

# Rank within one attempt: an event of lower rank never overwrites one of higher rank.
_RANK: dict[Status, int] = {
    Status.QUEUED: 0,
    Status.RUNNING: 1,
    Status.RETRYING: 2,
}

# Every terminal status outranks every attempt of its run: once a run has ended, a late
# "running" from a redelivery (crash after the outcome was published) cannot revive it.
_TERMINAL_POSITION = 999_999
_RUN_WIDTH = 1_000_000
_ATTEMPT_WIDTH = 10


def position(run: int, attempt: int, status: Status) -> int:
    """Total order of events for one task: by run (replays), then attempt, then rank."""
    if status.is_terminal:
        within_run = _TERMINAL_POSITION
    else:
        within_run = min(attempt, _TERMINAL_POSITION // _ATTEMPT_WIDTH - 1) * _ATTEMPT_WIDTH
        within_run += _RANK[status]
    return run * _RUN_WIDTH + within_run
