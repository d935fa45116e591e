"""The follow-ups a succeeded step submits: ids derived from the parent and the workflow's secret
key (the same on every redelivery, unknowable from the parent's id alone), the workflow label and
id carried on, the parent's result handed over."""

from __future__ import annotations

import uuid

from contracts.messages import FollowUp
from contracts.workflows import follow_up_id
from service.workflows import SucceededStep, follow_ups

KEY = "0123456789abcdef0123456789abcdef"


def step(task_id: str, then: tuple[FollowUp, ...], workflow_id: str | None = None,
         key: str = KEY) -> SucceededStep:
    return SucceededStep(task_id=task_id, task_type="sleep", tenant="acme", source="http",
                         then=then, workflow_id=workflow_id, follow_up_key=key)


# How follow-up ids were derived before: from the parent's id alone, so anyone could.
OLD_NAMESPACE = uuid.UUID("0b6f2c44-93d1-4e0a-8f5e-7a1c2d3e4f50")

NEXT = FollowUp(task_type="sleep", payload={"seconds": 1}, labels=("nightly",),
                then=[FollowUp(task_type="sleep", payload={"seconds": 2})])


def test_a_redelivered_step_makes_the_same_follow_ups() -> None:
    first = follow_ups(step("parent", (NEXT, NEXT)), {"slept_s": 0})
    again = follow_ups(step("parent", (NEXT, NEXT)), {"slept_s": 0})

    assert [e.task_id for e in first] == [e.task_id for e in again]
    assert [e.task_id for e in first] == [follow_up_id("parent", 0, KEY),
                                          follow_up_id("parent", 1, KEY)]
    assert len({e.task_id for e in first}) == 2


def test_knowing_a_steps_id_does_not_tell_the_next_ones() -> None:
    # A webhook step hands its id to a third party (X-Task-Id); the next step's id also needs
    # the workflow's key, which only its messages carry.
    ours = follow_ups(step("parent", (NEXT,)), {"slept_s": 0})
    guessed = follow_ups(step("parent", (NEXT,), key="f" * 32), {"slept_s": 0})

    assert ours[0].task_id != guessed[0].task_id
    assert ours[0].task_id != str(uuid.uuid5(OLD_NAMESPACE, "parent/then/0"))


def test_a_follow_up_with_a_chain_of_its_own_carries_a_key_of_its_own() -> None:
    [envelope] = follow_ups(step("parent", (NEXT,)), {"slept_s": 0})

    assert envelope.follow_up_key is not None
    assert envelope.follow_up_key != KEY
    assert follow_ups(step("alone", (FollowUp(task_type="sleep", payload={}),)),
                      None)[0].follow_up_key is None


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
