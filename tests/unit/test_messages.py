"""The task body another service may publish, and the status event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.messages import SCHEMA_VERSION, ErrorInfo, ProgressEvent, StatusEvent, TaskBody
from contracts.statuses import Status


def test_task_body_accepts_the_bare_minimum() -> None:
    raw = {"payload": {"seconds": 1}}

    body = TaskBody.model_validate(raw)

    assert body.payload == {"seconds": 1}
    assert (body.task_id, body.task_type, body.submitted_at) == (None, None, None)
    assert body.schema_version == SCHEMA_VERSION == 1


def test_task_body_accepts_every_optional_field() -> None:
    raw = {
        "payload": {}, "task_id": "t-1", "task_type": "sleep",
        "submitted_at": "2025-01-01T00:00:00Z", "idempotency_key": "k", "max_attempts": 3,
        "not_before": "2025-01-01T00:01:00+00:00", "timeout_s": 5, "retry_base_s": 0.5,
        "schema_version": 1,
    }

    body = TaskBody.model_validate(raw)

    assert body.task_id == "t-1"
    assert body.not_before == datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
    assert (body.max_attempts, body.timeout_s, body.retry_base_s) == (3, 5, 0.5)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"payload": {}, "priority": 9}, id="unknown-field"),
        pytest.param({"payload": {}, "schema_version": 2}, id="schema-version-2"),
        pytest.param({"payload": {}, "schema_version": 0}, id="schema-version-0"),
        pytest.param({}, id="no-payload"),
        pytest.param({"payload": []}, id="payload-not-object"),
        pytest.param({"payload": {}, "task_id": ""}, id="empty-task-id"),
        pytest.param({"payload": {}, "submitted_at": "2025-01-01T00:00:00"}, id="naive-time"),
        pytest.param({"payload": {}, "max_attempts": 0}, id="zero-attempts"),
        pytest.param({"payload": {}, "retry_base_s": 0}, id="zero-retry-base"),
        pytest.param({"payload": {}, "retry_base_s": 601}, id="retry-base-over-ten-minutes"),
    ],
)
def test_task_body_refuses(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TaskBody.model_validate(raw)


def test_status_event_round_trips_through_json() -> None:
    sent = StatusEvent(
        task_id="t-1", task_type="webhook", status=Status.RETRYING, attempt=2, run=3,
        at=datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC), worker="host/webhook",
        source="amqp", result={"status": 503, "body": ["a", 1]},
        error=ErrorInfo(type="Retry", message="HTTP 503"), progress=0.5,
        next_attempt_at=datetime(2025, 1, 1, 12, 0, 5, tzinfo=UTC), idempotency_key="k-1",
    )

    received = StatusEvent.model_validate_json(sent.model_dump_json())

    assert received == sent


def test_status_event_refuses_an_unknown_status() -> None:
    raw = {"task_id": "t", "task_type": "sleep", "status": "paused", "attempt": 1, "worker": "w"}

    with pytest.raises(ValidationError):
        StatusEvent.model_validate(raw)


def test_status_event_defaults_to_run_one_and_an_aware_time() -> None:
    raw = {"task_id": "t", "task_type": "sleep", "status": "queued", "attempt": 0, "worker": "w"}

    event = StatusEvent.model_validate(raw)

    assert event.run == 1
    assert event.at.tzinfo is not None


def test_a_progress_event_round_trips_and_has_no_status() -> None:
    sent = ProgressEvent(task_id="t-1", task_type="sleep", attempt=2, run=1, fraction=0.4,
                         message="uploaded 4 of 10", worker="host/sleep", tenant="acme")

    received = ProgressEvent.model_validate_json(sent.model_dump_json())

    assert received == sent
    assert "status" not in sent.model_dump()


@pytest.mark.parametrize("fields", [
    {"fraction": 1.01}, {"fraction": -0.1}, {"fraction": float("nan")},
    {"message": "x" * 201}, {"attempt": 0}, {"status": "running"},
])
def test_a_progress_event_refuses_what_a_report_cannot_be(fields: dict[str, Any]) -> None:
    raw = {"task_id": "t", "task_type": "sleep", "attempt": 1, "worker": "w", "fraction": 0.5,
           **fields}

    with pytest.raises(ValidationError):
        ProgressEvent.model_validate(raw)
