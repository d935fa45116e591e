"""`cancelled` in the projection: terminal for its run, whatever arrives after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from contracts.messages import StatusEvent
from contracts.projection import apply
from contracts.statuses import Status
from tests.support.projection import fold

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def event(status: Status, attempt: int, *, seconds: float = 0, run: int = 1) -> StatusEvent:
    return StatusEvent(task_id="t-1", task_type="sleep", status=status, attempt=attempt,
                       run=run, at=T0 + timedelta(seconds=seconds), worker="w-1")



@pytest.mark.parametrize("late", [
    event(Status.RUNNING, 1, seconds=2),
    event(Status.RETRYING, 1, seconds=2),
    event(Status.SUCCEEDED, 1, seconds=2),
    event(Status.FAILED, 1, seconds=2),
    event(Status.RUNNING, 2, seconds=3),
    event(Status.RETRYING, 2, seconds=3),
    event(Status.SUCCEEDED, 2, seconds=3),
    event(Status.CANCELLED, 2, seconds=3),
], ids=lambda e: f"{e.status}-{e.attempt}")
def test_nothing_late_moves_a_cancelled_task_on(late: StatusEvent) -> None:
    # The gateway records `cancelled` with the attempt the read model had (here: running 1).
    cancelled = fold(event(Status.QUEUED, 0), event(Status.RUNNING, 1, seconds=1),
                     event(Status.CANCELLED, 1, seconds=1.5))

    after = apply(cancelled, late)

    assert (after.status, after.attempt, after.position, after.finished_at) == (
        Status.CANCELLED, 1, cancelled.position, T0 + timedelta(seconds=1.5))
    assert after.history[-1].status is Status.CANCELLED


def test_a_task_cancelled_while_queued_stays_cancelled_when_its_worker_drops_it() -> None:
    cancelled = fold(event(Status.QUEUED, 0), event(Status.CANCELLED, 0, seconds=1))

    after = apply(cancelled, event(Status.CANCELLED, 1, seconds=5))

    assert after is cancelled


def test_a_cancel_that_comes_after_success_changes_nothing() -> None:
    # The race the other way round: the task ended first, so it stays `succeeded`.
    succeeded = fold(event(Status.QUEUED, 0), event(Status.RUNNING, 1, seconds=1),
                     event(Status.SUCCEEDED, 1, seconds=2))

    after = apply(succeeded, event(Status.CANCELLED, 1, seconds=3))

    assert after.status is Status.SUCCEEDED


def test_a_late_retrying_of_the_cancelled_attempt_is_told_in_the_history_only() -> None:
    # The worker did park a retry before it heard of the cancel: the history says so, in its
    # place before the end of the attempt; the status does not move.
    cancelled = fold(event(Status.QUEUED, 0), event(Status.RUNNING, 1, seconds=1),
                     event(Status.CANCELLED, 1, seconds=1.5))

    after = apply(cancelled, event(Status.RETRYING, 1, seconds=2))

    assert after.status is Status.CANCELLED
    assert [entry.status for entry in after.history] == [
        Status.QUEUED, Status.RUNNING, Status.RETRYING, Status.CANCELLED]


def test_steps_of_a_later_attempt_never_join_a_cancelled_history() -> None:
    cancelled = fold(event(Status.QUEUED, 0), event(Status.CANCELLED, 0, seconds=1))

    after = apply(cancelled, event(Status.RUNNING, 1, seconds=2))

    assert after is cancelled
