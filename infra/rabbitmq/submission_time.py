"""When a task message says it was submitted: the time its `queued` entry is recorded at.

The projector records `queued` for every task it sees on a task exchange, often after the worker
has already started the task (they read separate queues). Stamped with the projector's own
clock, `queued` came 2-3 ms after the `running` that follows it in 25 of 105 workflow steps.
The submitter's clock, read before it published, is the time the task was queued.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage
from pydantic import AwareDatetime, TypeAdapter, ValidationError

from contracts import json_depth

_AWARE: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)


def submitted_at_of(message: AbstractIncomingMessage, now: datetime) -> datetime:
    """The body's `submitted_at` (to the microsecond), else the AMQP `timestamp` (to the
    second), else `now`; never later than `now`, so an outside publisher's clock cannot date
    a task in the future."""
    claimed = _body_submitted_at(message.body) or _aware(message.timestamp)
    return min(claimed, now) if claimed is not None else now


def _body_submitted_at(body: bytes) -> datetime | None:
    try:
        raw = json_depth.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(raw, dict) or "submitted_at" not in raw:
        return None
    try:
        return _AWARE.validate_python(raw["submitted_at"]).astimezone(UTC)
    except ValidationError:
        return None


def _aware(timestamp: datetime | None) -> datetime | None:
    # The AMQP timestamp counts seconds since the epoch in UTC; pamqp gives it aware, and a
    # naive one is read as what it is, UTC.
    if timestamp is None:
        return None
    return timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)
