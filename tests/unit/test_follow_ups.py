"""The follow-ups a succeeded step submits: ids derived from the parent (the same on every
redelivery), the workflow label and id carried on, the parent's result handed over."""

from __future__ import annotations

from consumers.decode import ReceivedTask
from consumers.follow_ups import follow_ups
from contracts.messages import FollowUp
from contracts.payloads import SleepPayload
from contracts.registry import SLEEP
from contracts.workflows import follow_up_id


def step(task_id: str, then: tuple[FollowUp, ...], workflow_id: str | None = None) -> ReceivedTask:
    return ReceivedTask(task_id=task_id, spec=SLEEP, payload=SleepPayload(seconds=0), attempt=1,
                        run=1, max_attempts=1, timeout_s=1, retry_base_s=None, not_before=None,
                        source="http", idempotency_key=None, tenant="acme", then=then,
                        workflow_id=workflow_id)


NEXT = FollowUp(task_type="sleep", payload={"seconds": 1}, labels=("nightly",),
                then=[FollowUp(task_type="sleep", payload={"seconds": 2})])


def test_a_redelivered_step_makes_the_same_follow_ups() -> None:
    first = follow_ups(step("parent", (NEXT, NEXT)), {"slept_s": 0})
    again = follow_ups(step("parent", (NEXT, NEXT)), {"slept_s": 0})

    assert [e.task_id for e in first] == [e.task_id for e in again]
    assert [e.task_id for e in first] == [follow_up_id("parent", 0), follow_up_id("parent", 1)]
    assert len({e.task_id for e in first}) == 2


def test_the_first_step_starts_the_workflow_and_later_ones_carry_it_on() -> None:
    [from_first] = follow_ups(step("root", (NEXT,)), {"slept_s": 0})
    [from_later] = follow_ups(step("middle", (NEXT,), workflow_id="root"), {"slept_s": 1})

    for envelope in (from_first, from_later):
        assert envelope.workflow_id == "root"
        assert envelope.labels == ("nightly", "workflow=root")
        assert envelope.then == NEXT.then
    assert (from_first.previous_result, from_later.previous_result) == (
        {"slept_s": 0}, {"slept_s": 1})


def test_a_step_without_then_submits_nothing() -> None:
    assert follow_ups(step("alone", ()), {"slept_s": 0}) == []
