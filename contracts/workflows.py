"""Workflows (`then`): the ids and labels every process derives the same way."""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("0b6f2c44-93d1-4e0a-8f5e-7a1c2d3e4f50")


def workflow_label(workflow_id: str) -> str:
    return f"workflow={workflow_id}"


def follow_up_id(parent_id: str, index: int) -> str:
    """The id of the `index`th follow-up of task `parent_id`: the same however often the parent
    runs, so a redelivered parent publishes the same task again, never a second one."""
    return str(uuid.uuid5(_NAMESPACE, f"{parent_id}/then/{index}"))
