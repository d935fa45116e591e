"""The projection of an attempt's start: a worker publishes `running` only for an attempt that
lasts, and every outcome carries `started_at`, so the read model says when each attempt started
whether or not `running` was published."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from contracts.messages import ErrorInfo, StatusEvent
from contracts.projection import TaskState, apply
from contracts.statuses import Status
from tests.support.projection import fold

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ERROR = ErrorInfo(type="OSError", message="refused")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    status: Status, attempt: int = 1, *, seconds: float = 0, run: int = 1, **fields: Any
) -> StatusEvent:
    return StatusEvent(**{"task_id": "t-1", "task_type": "sleep", "status": status,
                          "attempt": attempt, "run": run, "at": at(seconds), "worker": "w-1",
                          "source": "http", **fields})


def outcome(status: Status, attempt: int, started_s: float, ended_s: float,
            **fields: Any) -> StatusEvent:
    """An attempt's outcome as a worker publishes it: with when the attempt started."""
    return event(status, attempt, seconds=ended_s, started_at=at(started_s),
                 duration_ms=(ended_s - started_s) * 1000, **fields)


def running(attempt: int, started_s: float) -> StatusEvent:
    """The `running` a worker publishes for an attempt that lasts: dated when it started."""
    return event(Status.RUNNING, attempt, seconds=started_s, started_at=at(started_s))


def steps(state: TaskState) -> list[tuple[Status, int, datetime]]:
    return [(entry.status, entry.attempt, entry.at) for entry in state.history]


def test_an_outcome_with_started_at_stands_for_the_running_that_was_not_published() -> None:
    state = fold(event(Status.QUEUED, 0), outcome(Status.SUCCEEDED, 1, 1, 1.002))

    assert state.status is Status.SUCCEEDED
    assert state.started_at == at(1)
    assert state.finished_at == at(1.002)
    assert steps(state) == [(Status.QUEUED, 0, at(0)), (Status.RUNNING, 1, at(1)),
                            (Status.SUCCEEDED, 1, at(1.002))]


def test_the_state_is_the_same_whether_or_not_running_was_published() -> None:
    quick = fold(event(Status.QUEUED, 0), outcome(Status.SUCCEEDED, 1, 1, 3))
    lasting = fold(event(Status.QUEUED, 0), running(1, 1), outcome(Status.SUCCEEDED, 1, 1, 3))

    assert lasting == quick


def test_a_running_that_arrives_after_its_outcome_changes_nothing() -> None:
    state = fold(event(Status.QUEUED, 0), outcome(Status.SUCCEEDED, 1, 1, 3))

    assert apply(state, running(1, 1)) is state
    assert apply(state, outcome(Status.SUCCEEDED, 1, 1, 3)) is state


def test_each_attempt_of_a_retried_task_shows_its_start_and_the_first_one_dates_the_run() -> None:
    state = fold(
        event(Status.QUEUED, 0),
        outcome(Status.RETRYING, 1, 1, 1.01, error=ERROR, next_attempt_at=at(6)),
        outcome(Status.FAILED, 2, 6, 6.01, error=ERROR),
    )

    assert state.started_at == at(1)
    assert [(status, attempt) for status, attempt, _ in steps(state)] == [
        (Status.QUEUED, 0), (Status.RUNNING, 1), (Status.RETRYING, 1),
        (Status.RUNNING, 2), (Status.FAILED, 2)]
    assert steps(state)[3][2] == at(6)


def test_a_replay_starts_its_own_run_at_its_own_start() -> None:
    first_run = fold(event(Status.QUEUED, 0), outcome(Status.FAILED, 1, 1, 2, error=ERROR))

    replayed = apply(apply(first_run, event(Status.QUEUED, 0, run=2, seconds=20)),
                     event(Status.SUCCEEDED, 1, run=2, seconds=22, started_at=at(21)))

    assert first_run.started_at == at(1)
    assert replayed.started_at == at(21)
    assert [(entry.run, entry.status) for entry in replayed.history][-2:] == [
        (2, Status.RUNNING), (2, Status.SUCCEEDED)]


def test_an_outcome_without_started_at_adds_no_step_as_before() -> None:
    # Events of older workers, and of other publishers, carry no start.
    state = fold(event(Status.QUEUED, 0), event(Status.SUCCEEDED, 1, seconds=3))

    assert state.started_at is None
    assert [status for status, _, _ in steps(state)] == [Status.QUEUED, Status.SUCCEEDED]


def test_a_cancel_recorded_first_keeps_its_end_when_the_worker_outcome_follows() -> None:
    # Running past its `running`, then cancelled: the gateway's `cancelled` lands first, the
    # worker's (with the start) after it.
    state = fold(event(Status.QUEUED, 0), running(1, 1),
                 event(Status.CANCELLED, 1, seconds=5, worker="gateway"))

    after = apply(state, outcome(Status.CANCELLED, 1, 1, 5.01))

    assert after is state
    assert (after.status, after.finished_at, after.started_at) == (
        Status.CANCELLED, at(5), at(1))


def test_a_late_outcome_of_an_earlier_attempt_brings_its_start_into_the_history() -> None:
    state = fold(event(Status.QUEUED, 0), running(2, 6))

    after = apply(state, outcome(Status.RETRYING, 1, 1, 1.01, error=ERROR))

    assert (after.status, after.attempt) == (Status.RUNNING, 2)
    assert [(status, attempt) for status, attempt, _ in steps(after)] == [
        (Status.QUEUED, 0), (Status.RUNNING, 1), (Status.RETRYING, 1), (Status.RUNNING, 2)]


# --- property: one attempt, running published or not, in any order, with duplicates ----------

_ENDS = [Status.SUCCEEDED, Status.FAILED, Status.RETRYING, Status.CANCELLED]


@st.composite
def one_attempt(draw: st.DrawFn) -> tuple[list[StatusEvent], list[StatusEvent]]:
    """The events of a task's first attempt in order, without `running`, and as they may
    arrive: with its `running` or not, in any order, some twice."""
    started = draw(st.integers(min_value=1, max_value=60))
    ended = started + draw(st.integers(min_value=0, max_value=60))
    end = draw(st.sampled_from(_ENDS))
    in_order = [event(Status.QUEUED, 0), outcome(end, 1, started, ended)]
    published = [*in_order, running(1, started)] if draw(st.booleans()) else in_order
    duplicates = draw(st.lists(st.sampled_from(published), max_size=3))
    return in_order, draw(st.permutations([*published, *duplicates]))


@given(one_attempt())
def test_any_arrival_of_one_attempt_ends_where_the_ordered_fold_without_running_ends(
    case: tuple[list[StatusEvent], list[StatusEvent]],
) -> None:
    in_order, arrival = case

    assert fold(*arrival) == fold(*in_order)
