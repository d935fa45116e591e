"""Workflows (`then`): the ids and labels every process derives the same way."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from contracts.limits import MAX_WORKFLOW_DEPTH, MAX_WORKFLOW_TASKS
from contracts.messages import FollowUp

_NAMESPACE = uuid.UUID("0b6f2c44-93d1-4e0a-8f5e-7a1c2d3e4f50")


def workflow_label(workflow_id: str) -> str:
    return f"workflow={workflow_id}"


def follow_up_id(parent_id: str, index: int) -> str:
    """The id of the `index`th follow-up of task `parent_id`: the same however often the parent
    runs, so a redelivered parent publishes the same task again, never a second one."""
    return str(uuid.uuid5(_NAMESPACE, f"{parent_id}/then/{index}"))


def over_workflow_caps(steps: Sequence[FollowUp]) -> str | None:
    """What in a `then` chain is over the caps the gateway holds a submission to
    (MAX_WORKFLOW_DEPTH deep, MAX_WORKFLOW_TASKS in all; the models hold MAX_THEN per task), or
    None: a message published straight to RabbitMQ meets the same caps."""
    level, depth, total = list(steps), 0, 0
    while level:
        depth += 1
        total += len(level)
        if depth > MAX_WORKFLOW_DEPTH:
            return f"`then` nests at most {MAX_WORKFLOW_DEPTH} deep"
        if total > MAX_WORKFLOW_TASKS:
            return f"a workflow holds at most {MAX_WORKFLOW_TASKS} follow-ups"
        level = [child for step in level for child in step.then or ()]
    return None
