"""A `then` chain published straight to RabbitMQ meets the gateway's caps: at the caps it runs,
one step deeper or one follow-up more it does not."""

from __future__ import annotations

from contracts.limits import MAX_WORKFLOW_DEPTH, MAX_WORKFLOW_TASKS
from contracts.messages import FollowUp
from contracts.workflows import over_workflow_caps


def step(then: list[FollowUp] | None = None) -> FollowUp:
    return FollowUp(task_type="sleep", payload={"seconds": 0}, then=then)


def chain(depth: int) -> list[FollowUp]:
    steps = [step()]
    for _ in range(depth - 1):
        steps = [step(steps)]
    return steps


def test_depth_up_to_the_cap() -> None:
    assert over_workflow_caps([]) is None
    assert over_workflow_caps(chain(MAX_WORKFLOW_DEPTH)) is None
    assert over_workflow_caps(chain(MAX_WORKFLOW_DEPTH + 1)) == (
        f"`then` nests at most {MAX_WORKFLOW_DEPTH} deep")


def test_follow_ups_in_all_up_to_the_cap() -> None:
    # 10 steps, each with 9 of its own: 100 follow-ups; one more anywhere is over.
    full = [step([step() for _ in range(9)]) for _ in range(10)]
    assert over_workflow_caps(full) is None
    one_more = [*full[:9], step([step() for _ in range(10)])]
    assert over_workflow_caps(one_more) == (
        f"a workflow holds at most {MAX_WORKFLOW_TASKS} follow-ups")
