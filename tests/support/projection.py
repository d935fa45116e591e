"""Folding events with the projection's pure `apply`, as the tests of its rules do."""

from __future__ import annotations

from contracts.messages import ProgressEvent, StatusEvent
from contracts.projection import TaskState, apply


def fold(*events: StatusEvent | ProgressEvent) -> TaskState:
    """The state `events` leave, applied in order to no state; there must be one."""
    state: TaskState | None = None
    for each in events:
        state = apply(state, each)
    assert state is not None
    return state
