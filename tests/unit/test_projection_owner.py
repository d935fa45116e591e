"""A task id belongs to one tenant: events that name another tenant never change its task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.messages import ErrorInfo, ProgressEvent, StatusEvent
from contracts.projection import TaskState, apply
from contracts.statuses import Status
from tests.support.projection import fold

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def event(
    status: Status, attempt: int = 1, *, tenant: str | None = "tenant-b", run: int = 1,
    seconds: float = 0, **fields: Any,
) -> StatusEvent:
    return StatusEvent(task_id="invoice-1002", task_type="sleep", status=status,
                       attempt=attempt, run=run, at=T0 + timedelta(seconds=seconds),
                       worker="w-1", tenant=tenant, **fields)


def then(state: TaskState, *events: StatusEvent) -> TaskState:
    for each in events:
        state = apply(state, each)
    return state


def owned_by_b() -> TaskState:
    return fold(event(Status.QUEUED, 0), event(Status.RUNNING, 1, seconds=1))


@pytest.mark.parametrize("intruder", [
    # A later run with another tenant's result (the "overwrite" attack).
    event(Status.SUCCEEDED, 1, tenant="tenant-a", run=2, seconds=2, result={"slept_s": 0.2}),
    # Another tenant's invalid message under the same id (the "reject" attack).
    event(Status.REJECTED, 0, tenant="tenant-a", seconds=2,
          error=ErrorInfo(type="InvalidTask", message="A's reason")),
    event(Status.CANCELLED, 1, tenant="tenant-a", seconds=2),
    # An event that names no tenant is nobody's: it changes nobody's task.
    event(Status.FAILED, 1, tenant=None, seconds=2, error=ErrorInfo(type="E", message="m")),
], ids=["later-run", "rejected", "cancelled", "no-tenant"])
def test_an_event_of_another_tenant_changes_nothing(intruder: StatusEvent) -> None:
    state = owned_by_b()

    assert apply(state, intruder) is state


def test_progress_of_another_tenant_changes_nothing() -> None:
    state = owned_by_b()
    report = ProgressEvent(task_id="invoice-1002", task_type="sleep", attempt=1, fraction=0.5,
                           at=T0 + timedelta(seconds=2), worker="w-1", tenant="tenant-a")

    assert apply(state, report) is state


def test_the_first_tenant_named_owns_the_task_whatever_comes_later() -> None:
    claimed = fold(event(Status.QUEUED, 0, tenant="tenant-a"))

    after = then(claimed, event(Status.RUNNING, 1, seconds=1),
                 event(Status.SUCCEEDED, 1, seconds=2, result={"slept_s": 8}))

    assert after is claimed
    assert (after.tenant, after.status, after.result) == ("tenant-a", Status.QUEUED, None)


def test_a_record_that_names_no_owner_takes_the_first_one_named() -> None:
    legacy = fold(event(Status.QUEUED, 0, tenant=None))

    after = apply(legacy, event(Status.RUNNING, 1, seconds=1))

    assert (after.tenant, after.status) == ("tenant-b", Status.RUNNING)


@given(st.lists(st.sampled_from(["tenant-a", "tenant-c", None]), max_size=6))
def test_no_sequence_of_foreign_events_moves_the_task(tenants: list[str | None]) -> None:
    state = owned_by_b()
    events = [event(Status.SUCCEEDED, 1, tenant=tenant, run=2 + index, seconds=2 + index)
              for index, tenant in enumerate(tenants)]

    assert then(state, *events) is state
