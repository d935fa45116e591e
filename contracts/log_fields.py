"""The fields of a log line about a task, the same keys from every process, so that one query
finds a task's lines in all of them: `task_id`, and `trace_id` where the task's trace is known.
Inside a worker's attempt, infra.observability.logging adds `task_type` and `attempt` too.

A line passes them as `extra=task_fields(...)`; the JSON log format writes them as keys, the
text format as `[task_id=… trace_id=…]` after the message.
"""

from __future__ import annotations

TASK_FIELDS = ("task_id", "task_type", "attempt", "trace_id")
_NO_TRACE = "0" * 32


def task_fields(task_id: str | None, *, traceparent: str | None = None) -> dict[str, str]:
    """`extra=` for a line about task `task_id` (none if the id is unknown). `traceparent` must
    already be a valid W3C one (infra.observability.tracing.valid_traceparent)."""
    if task_id is None:
        return {}
    trace_id = trace_id_in(traceparent) if traceparent is not None else None
    return {"task_id": task_id} if trace_id is None else {"task_id": task_id,
                                                          "trace_id": trace_id}


def trace_id_in(traceparent: str) -> str | None:
    """The trace id of a valid W3C `traceparent` (`00-<trace id>-<span id>-<flags>`), None if
    it is all zeros (an invalid trace)."""
    trace_id = traceparent[3:35]
    return None if trace_id == _NO_TRACE else trace_id
