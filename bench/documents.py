"""Read-model documents for the stored tasks, made the way the projector makes them.

A few templates are built with the real projection (`contracts.projection.apply`) and
`infra.mongodb.task_store.to_document`; each stored task is a copy of one with its own id and
times, since building a million pydantic objects would take longer than storing them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.messages import ErrorInfo, StatusEvent
from contracts.projection import TaskState, apply
from contracts.statuses import Status
from infra.mongodb.task_queries import derived_fields
from infra.mongodb.task_store import to_document

_ORIGIN = datetime(2020, 1, 1, tzinfo=UTC)
_TIME_FIELDS = ("created_at", "updated_at", "started_at", "finished_at", "next_attempt_at")
# Stored tasks finished within this window; the read model's retention (30 days by default)
# must not expire them.
SPREAD = timedelta(days=21)


def task_id(database: str, index: int) -> str:
    """The id of stored task `index`: uuid4-shaped like the gateway's, and found again from its
    index, so a sample of existing ids needs no query."""
    digest = hashlib.blake2b(f"{database}/{index}".encode(), digest_size=16).digest()
    return str(uuid.UUID(bytes=digest, version=4))


Step = tuple[Status, int, float, dict[str, Any]]


def _life(task_type: str, steps: list[Step], source: str) -> dict[str, Any]:
    """The document after folding these (status, attempt, seconds after submit, fields)."""
    state: TaskState | None = None
    for status, attempt, after_s, fields in steps:
        event = StatusEvent(task_id="template", task_type=task_type, status=status,
                            attempt=attempt, at=_ORIGIN + timedelta(seconds=after_s),
                            worker=f"bench/{task_type}", source=source, **fields)
        state = apply(state, event)
    assert state is not None
    return to_document(state)


def _templates() -> list[dict[str, Any]]:
    queued: Step = (Status.QUEUED, 0, 0.0, {})
    refused = ErrorInfo(type="PermanentFailure",
                        message="POST https://hooks.example.com/x answered 404")
    flaky = ErrorInfo(type="Retry", message="POST https://hooks.example.com/y answered 503")
    retry_at = {"error": flaky, "next_attempt_at": _ORIGIN + timedelta(seconds=2)}
    email = {"message_id": "<x@taskproc>", "accepted": 1, "refused": [],
             "reply": "Message accepted for delivery"}
    return [
        _life("sleep", [queued, (Status.RUNNING, 1, 0.004, {}),
                        (Status.SUCCEEDED, 1, 0.009, {"result": {"slept_s": 0.0}})], "http"),
        _life("send_email", [queued, (Status.RUNNING, 1, 0.01, {}),
                             (Status.SUCCEEDED, 1, 0.2, {"result": email})], "http"),
        _life("webhook", [queued, (Status.RUNNING, 1, 0.01, {}),
                          (Status.SUCCEEDED, 1, 0.3, {"result": {"status_code": 200,
                                                                  "body": "ok"}})], "amqp"),
        _life("webhook", [queued, (Status.RUNNING, 1, 0.01, {}),
                          (Status.FAILED, 1, 0.1, {"error": refused})], "http"),
        _life("webhook", [queued, (Status.RUNNING, 1, 0.01, {}),
                          (Status.RETRYING, 1, 0.2, retry_at), (Status.RUNNING, 2, 1.3, {}),
                          (Status.SUCCEEDED, 2, 1.5, {"result": {"status_code": 200,
                                                                  "body": "ok"}})], "http"),
        _life("sleep", [queued, (Status.RUNNING, 1, 0.004, {}),
                        (Status.SUCCEEDED, 1, 1.0, {"result": {"slept_s": 1.0}})], "amqp"),
    ]


def _shifted(template: dict[str, Any], new_id: str, delta: timedelta) -> dict[str, Any]:
    document = dict(template)
    document["_id"] = new_id
    for name in _TIME_FIELDS:
        if document.get(name) is not None:
            document[name] = document[name] + delta
    document["history"] = [{**entry, "at": entry["at"] + delta} for entry in template["history"]]
    document.update(derived_fields(new_id, document["created_at"], document["updated_at"]))
    return document


def documents(database: str, start: int, stop: int, newest: datetime) -> Iterator[dict[str, Any]]:
    """Stored tasks `start`..`stop-1`, submitted at times spread over SPREAD before `newest`."""
    templates = _templates()
    window_s = SPREAD.total_seconds()
    for index in range(start, stop):
        new_id = task_id(database, index)
        # Pseudo-random but repeatable: the id's bits pick the template and the time.
        bits = int(new_id.replace("-", "")[:12], 16)
        submitted = newest - timedelta(seconds=(bits % 1_000_003) / 1_000_003 * window_s)
        yield _shifted(templates[bits % len(templates)], new_id, submitted - _ORIGIN)
