"""Workflows (`then`): the ids and labels every process derives the same way."""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Sequence

from contracts.limits import MAX_WORKFLOW_DEPTH, MAX_WORKFLOW_TASKS
from contracts.messages import FollowUp


def workflow_label(workflow_id: str) -> str:
    return f"workflow={workflow_id}"


def follow_up_id(parent_id: str, index: int, key: str) -> str:
    """The id of the `index`th follow-up of task `parent_id`: the same however often the parent
    runs, so a redelivered parent publishes the same task again, never a second one.

    Derived with the workflow's `key` (its messages' `follow_up_key`), which only the
    workflow's own messages carry: a task id reaches third parties by design (a webhook's
    `X-Task-Id`), and one who knows it must not be able to tell the next step's id, or it could
    publish a task of its own under that id first.
    """
    digest = hmac.new(key.encode(), f"{parent_id}/then/{index}".encode(), "sha256").digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def follow_up_key(parent_key: str, parent_id: str, index: int) -> str:
    """The key a follow-up's own follow-ups derive their ids from (see `follow_up_id`)."""
    message = f"{parent_id}/then/{index}/key".encode()
    return hmac.new(parent_key.encode(), message, "sha256").hexdigest()[:32]


def new_follow_up_key() -> str:
    """A fresh workflow key: 128 random bits."""
    return secrets.token_hex(16)


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
