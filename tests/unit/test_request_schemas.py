"""The HTTP request bodies generated from the registry: one per task type."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.registry import get_spec, task_type_names
from gateway.http_models import TaskRequest
from taskproc.tasks.send_email import SendEmailPayload
from taskproc.tasks.sleep import SleepPayload
from taskproc.tasks.webhook_payload import WebhookPayload

REQUESTS = TypeAdapter(TaskRequest)

# A valid request of each built-in type, for the tests about one type's payload.
VALID: dict[str, dict[str, Any]] = {
    "send_email": {"task_type": "send_email",
                   "payload": {"to": "ada@example.com", "subject": "Hi", "body": "Hello"}},
    "webhook": {"task_type": "webhook",
                "payload": {"url": "https://example.com/hook", "json": {"event": "done"}}},
    "sleep": {"task_type": "sleep", "payload": {"seconds": 1.5}, "max_attempts": 2,
              "timeout_s": 10, "retry_base_s": 0.5, "not_before": "2025-01-01T00:00:00Z"},
}


@pytest.mark.parametrize("task_type", task_type_names())
def test_each_registered_type_has_a_request_model_that_checks_its_payload(task_type: str) -> None:
    with pytest.raises(ValidationError) as refused:
        REQUESTS.validate_python({"task_type": task_type, "payload": []})

    assert [error["loc"] for error in refused.value.errors()] == [(task_type, "payload")]


@pytest.mark.parametrize("task_type", sorted(VALID))
def test_each_type_accepts_its_valid_request(task_type: str) -> None:
    raw = VALID[task_type]

    request = REQUESTS.validate_python(raw)

    assert request.task_type == task_type
    assert isinstance(request.payload, get_spec(task_type).payload)


def test_send_email_with_one_address_becomes_a_list() -> None:
    raw = VALID["send_email"]

    request = REQUESTS.validate_python(raw)

    assert isinstance(request.payload, SendEmailPayload)
    assert request.payload.to == ["ada@example.com"]


def test_send_email_accepts_a_list_of_addresses() -> None:
    raw = {**VALID["send_email"],
           "payload": {"to": ["a@example.com", "b@example.com"], "subject": "s", "body": "b",
                       "cc": "c@example.com"}}

    request = REQUESTS.validate_python(raw)

    assert isinstance(request.payload, SendEmailPayload)
    assert request.payload.to == ["a@example.com", "b@example.com"]
    assert request.payload.cc == ["c@example.com"]


def test_the_webhook_json_alias_is_kept_for_publishing() -> None:
    raw = VALID["webhook"]

    request = REQUESTS.validate_python(raw)
    published = request.payload.model_dump(mode="json", by_alias=True, exclude_unset=True)

    assert isinstance(request.payload, WebhookPayload)
    assert request.payload.json_body == {"event": "done"}
    assert published == {"url": "https://example.com/hook", "json": {"event": "done"}}
    assert WebhookPayload.model_validate(published) == request.payload


def test_sleep_accepts_the_longest_allowed_wait() -> None:
    raw = {"task_type": "sleep", "payload": {"seconds": 300}}

    request = REQUESTS.validate_python(raw)

    assert request.payload == SleepPayload(seconds=300)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"task_type": "fax", "payload": {}}, id="unknown-type"),
        pytest.param({"payload": {"seconds": 1}}, id="no-type"),
        pytest.param({"task_type": "sleep", "payload": {"seconds": 300.5}}, id="sleep-too-long"),
        pytest.param({"task_type": "sleep", "payload": {"seconds": -1}}, id="sleep-negative"),
        pytest.param({"task_type": "sleep", "payload": {"seconds": 1}, "priority": 1},
                     id="extra-request-field"),
        pytest.param({"task_type": "sleep", "payload": {"seconds": 1, "nap": True}},
                     id="extra-payload-field"),
        pytest.param({"task_type": "sleep", "payload": {"url": "https://example.com"}},
                     id="payload-of-another-type"),
        pytest.param({"task_type": "send_email",
                      "payload": {"to": "not-an-address", "subject": "s", "body": "b"}},
                     id="bad-address"),
        pytest.param({"task_type": "webhook", "payload": {"url": "ftp://example.com"}},
                     id="webhook-not-http"),
        pytest.param({"task_type": "sleep", "payload": {"seconds": 1},
                      "not_before": "2025-01-01T00:00:00"}, id="naive-not-before"),
        pytest.param({"task_type": "sleep", "payload": {"seconds": 1}, "max_attempts": 0},
                     id="zero-attempts"),
        pytest.param({"task_type": "sleep", "payload": {"seconds": 1}, "retry_base_s": 0},
                     id="zero-retry-base"),
    ],
)
def test_a_wrong_request_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        REQUESTS.validate_python(raw)


def test_an_unknown_type_is_refused_with_the_known_ones_named() -> None:
    raw = {"task_type": "fax", "payload": {}}

    with pytest.raises(ValidationError) as refused:
        REQUESTS.validate_python(raw)

    assert all(name in str(refused.value) for name in task_type_names())
