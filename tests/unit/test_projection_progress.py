"""Progress in the projection: a report moves the progress of a task that is `running` in the
report's run and attempt, and nothing else; it never enters the history nor moves the status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from contracts.messages import ProgressEvent, StatusEvent
from contracts.projection import Progress, apply
from contracts.statuses import Status
from tests.support.projection import fold

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def status(state: Status, attempt: int = 1, *, run: int = 1, seconds: float = 0,
           **fields: Any) -> StatusEvent:
    return StatusEvent(task_id="t-1", task_type="sleep", status=state, attempt=attempt, run=run,
                       at=T0 + timedelta(seconds=seconds), worker="w-1", **fields)


def report(fraction: float, attempt: int = 1, *, run: int = 1, seconds: float = 0,
           message: str | None = None) -> ProgressEvent:
    return ProgressEvent(task_id="t-1", task_type="sleep", attempt=attempt, run=run,
                         fraction=fraction, message=message,
                         at=T0 + timedelta(seconds=seconds), worker="w-1")



def test_a_report_sets_the_progress_of_a_running_task_and_nothing_else() -> None:
    running = fold(status(Status.QUEUED, 0), status(Status.RUNNING, 1, seconds=1))

    after = apply(running, report(0.4, seconds=2, message="4 of 10"))

    assert after.progress == Progress(fraction=0.4, message="4 of 10",
                                      at=T0 + timedelta(seconds=2))
    assert after.model_dump(exclude={"progress"}) == running.model_dump(exclude={"progress"})


def test_the_newer_report_wins_whatever_order_they_arrive_in() -> None:
    running = fold(status(Status.RUNNING, 1))

    in_order = fold(running_event := status(Status.RUNNING, 1), report(0.2, seconds=1),
                    report(0.6, seconds=2))
    late = fold(running_event, report(0.6, seconds=2), report(0.2, seconds=1))

    assert running.progress is None
    assert in_order.progress is not None
    assert in_order.progress.fraction == 0.6
    assert late == in_order


def test_the_same_report_twice_changes_nothing() -> None:
    once = fold(status(Status.RUNNING, 1), report(0.5, seconds=1))

    assert apply(once, report(0.5, seconds=1)) is once


def test_a_report_after_the_task_ended_changes_nothing() -> None:
    succeeded = fold(status(Status.RUNNING, 1), report(0.5, seconds=1),
                     status(Status.SUCCEEDED, 1, seconds=3))

    assert apply(succeeded, report(0.9, seconds=2)) is succeeded
    assert apply(succeeded, report(0.9, seconds=4)) is succeeded


def test_a_report_from_an_older_attempt_or_run_changes_nothing() -> None:
    second_attempt = fold(status(Status.RUNNING, 1), status(Status.RETRYING, 1, seconds=1),
                          status(Status.RUNNING, 2, seconds=5))
    second_run = fold(status(Status.RUNNING, 1, run=1), status(Status.FAILED, 1, seconds=1),
                      status(Status.RUNNING, 1, run=2, seconds=5))

    assert apply(second_attempt, report(0.9, 1, seconds=6)) is second_attempt
    assert apply(second_run, report(0.9, 1, run=1, seconds=6)) is second_run


def test_a_report_ahead_of_its_running_event_changes_nothing() -> None:
    queued = fold(status(Status.QUEUED, 0))
    retrying = fold(status(Status.RUNNING, 1), status(Status.RETRYING, 1, seconds=1))

    assert apply(queued, report(0.3, seconds=1)) is queued
    assert apply(retrying, report(0.3, 2, seconds=2)) is retrying
    assert apply(None, report(0.3)) is None  # no task to attach it to


def test_the_last_progress_is_kept_when_the_attempt_ends_and_cleared_by_the_next() -> None:
    failed_once = fold(status(Status.RUNNING, 1), report(0.7, seconds=1),
                       status(Status.RETRYING, 1, seconds=2))
    succeeded = fold(status(Status.RUNNING, 1), report(1.0, seconds=1),
                     status(Status.SUCCEEDED, 1, seconds=2))

    next_attempt = apply(failed_once, status(Status.RUNNING, 2, seconds=7))

    assert failed_once.progress is not None
    assert failed_once.progress.fraction == 0.7
    assert succeeded.progress is not None
    assert succeeded.progress.fraction == 1.0
    assert next_attempt.progress is None


def test_a_report_never_enters_the_history() -> None:
    state = fold(status(Status.QUEUED, 0), status(Status.RUNNING, 1, seconds=1),
                 report(0.5, seconds=2), status(Status.SUCCEEDED, 1, seconds=3))

    assert [entry.status for entry in state.history] == [
        Status.QUEUED, Status.RUNNING, Status.SUCCEEDED]


# --- property: reports mixed in anywhere leave everything but `progress` as it was ---------------

_LIFE = [status(Status.QUEUED, 0), status(Status.RUNNING, 1, seconds=1),
         status(Status.RETRYING, 1, seconds=2), status(Status.RUNNING, 2, seconds=5),
         status(Status.SUCCEEDED, 2, seconds=9)]
_REPORTS = st.builds(report, st.floats(min_value=0, max_value=1),
                     st.integers(min_value=1, max_value=3),
                     seconds=st.integers(min_value=0, max_value=10))


@st.composite
def mixed(draw: st.DrawFn) -> list[StatusEvent | ProgressEvent]:
    events: list[StatusEvent | ProgressEvent] = list(_LIFE)
    for each in draw(st.lists(_REPORTS, max_size=8)):
        events.insert(draw(st.integers(min_value=1, max_value=len(events))), each)
    return events


@given(mixed())
def test_reports_anywhere_leave_status_history_and_position_as_they_were(
    events: list[StatusEvent | ProgressEvent],
) -> None:
    without = fold(*_LIFE)
    state = fold(*events)

    # Only a report of attempt 2 that arrived while attempt 2 was running can be the progress.
    window = events[events.index(_LIFE[3]):events.index(_LIFE[4])]
    candidates = [(e.fraction, e.at) for e in window
                  if isinstance(e, ProgressEvent) and e.attempt == 2]

    assert state.model_dump(exclude={"progress"}) == without.model_dump(exclude={"progress"})
    if candidates:
        assert state.progress is not None
        assert (state.progress.fraction, state.progress.at) == max(candidates, key=lambda c: c[1])
    else:
        assert state.progress is None
