"""The status order that makes the projection monotonic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.statuses import TERMINAL, Status, position

NON_TERMINAL = (Status.QUEUED, Status.RUNNING, Status.RETRYING)

runs = st.integers(min_value=1, max_value=1_000)
attempts = st.integers(min_value=0, max_value=10_000)
non_terminal = st.sampled_from(NON_TERMINAL)
terminal = st.sampled_from(sorted(TERMINAL))


def test_terminal_set_is_what_the_design_names() -> None:
    expected = {"succeeded", "failed", "dead", "cancelled", "rejected"}

    names = {status.value for status in Status if status.is_terminal}

    assert names == expected


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ((1, 1, Status.QUEUED), (1, 1, Status.RUNNING)),
        ((1, 1, Status.RUNNING), (1, 1, Status.RETRYING)),
        ((1, 0, Status.QUEUED), (1, 1, Status.QUEUED)),
        ((1, 1, Status.RETRYING), (1, 2, Status.QUEUED)),
        ((1, 1, Status.RETRYING), (1, 2, Status.RUNNING)),
        ((1, 9, Status.RETRYING), (1, 10, Status.RUNNING)),
        ((1, 5, Status.RETRYING), (2, 0, Status.QUEUED)),
    ],
)
def test_named_pairs_are_in_order(
    lower: tuple[int, int, Status], higher: tuple[int, int, Status]
) -> None:
    assert position(*lower) < position(*higher)


@given(run=runs, a=attempts, b=attempts, first=non_terminal, second=non_terminal)
def test_order_is_by_run_then_attempt_then_rank(
    run: int, a: int, b: int, first: Status, second: Status
) -> None:
    rank = NON_TERMINAL.index

    left = position(run, a, first)
    right = position(run, b, second)

    assert (left < right) == ((a, rank(first)) < (b, rank(second)))
    assert (left == right) == ((a, rank(first)) == (b, rank(second)))


@given(run=runs, gap=st.integers(min_value=1, max_value=1_000), a=attempts, b=attempts,
       first=st.sampled_from(Status), second=st.sampled_from(Status))
def test_a_later_run_outranks_everything_of_an_earlier_run(
    run: int, gap: int, a: int, b: int, first: Status, second: Status
) -> None:
    assert position(run, a, first) < position(run + gap, b, second)


@given(run=runs, attempt=st.integers(min_value=0, max_value=10**12), status=non_terminal,
       ended=terminal, ended_attempt=st.integers(min_value=0, max_value=10**12))
def test_every_terminal_outranks_any_attempt_of_its_run(
    run: int, attempt: int, status: Status, ended: Status, ended_attempt: int
) -> None:
    assert position(run, attempt, status) < position(run, ended_attempt, ended)


@given(run=runs, a=attempts, b=attempts, first=terminal, second=terminal)
def test_terminal_statuses_of_one_run_share_a_position(
    run: int, a: int, b: int, first: Status, second: Status
) -> None:
    assert position(run, a, first) == position(run, b, second)


@given(run=runs, ended=terminal, ended_attempt=attempts)
def test_a_new_run_outranks_the_terminal_of_the_previous_run(
    run: int, ended: Status, ended_attempt: int
) -> None:
    assert position(run, ended_attempt, ended) < position(run + 1, 0, Status.QUEUED)
