"""From an incoming AMQP message to a task a handler can run, or the reason it cannot."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.decode import InvalidTask, decode
from contracts import names
from contracts.registry import get_spec
from infra.rabbitmq.amqp_codec import TenantRules, derived_task_id, task_id_of
from infra.rabbitmq.dead_letter_queue import describe
from taskproc.tasks.sleep import SleepPayload
from tests.fakes.amqp_message import incoming

SLEEP = get_spec("sleep")
SENT_AT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
# The rules of a deployment whose gateway publishes as RabbitMQ user `gateway`.
SERVICE = TenantRules(service_users=frozenset({"gateway"}), development=True)
SECRET = "sk_live_9f8e7d6c5b4a-DO-NOT-LOG"


def invalid(body: bytes | dict[str, Any] | list[Any], **properties: Any) -> InvalidTask:
    with pytest.raises(InvalidTask) as refused:
        decode(incoming(body, **properties), SLEEP)
    return refused.value


def test_a_bare_minimum_body_decodes_with_the_spec_defaults() -> None:
    message = incoming({"payload": {"seconds": 2}}, message_id="m-1")

    task = decode(message, SLEEP)

    assert task.task_id == "m-1"
    assert task.payload == SleepPayload(seconds=2)
    assert (task.attempt, task.run, task.source) == (1, 1, "amqp")
    assert (task.max_attempts, task.timeout_s) == (SLEEP.max_attempts, SLEEP.timeout_s)
    assert task.not_before is None
    assert task.retry_base_s is None


def test_the_body_overrides_limits_and_the_headers_say_where_it_came_from() -> None:
    body = {"payload": {"seconds": 0}, "max_attempts": 2, "timeout_s": 3.5, "retry_base_s": 0.25,
            "not_before": "2025-01-01T12:00:00Z", "idempotency_key": "k-1"}
    headers = {names.HEADER_SOURCE: "http", names.HEADER_ATTEMPT: 2, names.HEADER_RUN: 3}

    task = decode(incoming(body, message_id="m-1", headers=headers, user_id="gateway"), SLEEP,
                  tenants=SERVICE)

    assert (task.max_attempts, task.timeout_s, task.retry_base_s) == (2, 3.5, 0.25)
    assert task.not_before == SENT_AT
    assert (task.attempt, task.run, task.source, task.idempotency_key) == (2, 3, "http", "k-1")


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00", b""])
def test_a_body_that_is_not_json_is_invalid_under_the_message_id(body: bytes) -> None:
    refused = invalid(body, message_id="m-1")

    assert refused.task_id == "m-1"
    assert refused.reason.startswith("body is not JSON")


def test_a_body_that_is_not_json_and_has_no_message_id_gets_a_derived_id() -> None:
    message = incoming(b"<xml/>", timestamp=SENT_AT)

    with pytest.raises(InvalidTask) as refused:
        decode(message, SLEEP)

    assert refused.value.task_id == derived_task_id(message)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"payload": {"seconds": SECRET}}, "seconds", id="wrong-type"),
        pytest.param({"payload": {"seconds": 1, "token": SECRET}}, "token", id="extra-field"),
        pytest.param({"payload": {"seconds": 1}, "max_attempts": SECRET}, "max_attempts",
                     id="body-field"),
        pytest.param({"payload": SECRET}, "payload", id="payload-not-object"),
        pytest.param({"payload": {"seconds": 1}, "schema_version": SECRET}, "schema_version",
                     id="schema-version"),
    ],
)
def test_a_wrong_body_names_the_field_but_never_echoes_the_value(
    body: dict[str, Any], field: str
) -> None:
    refused = invalid(body, message_id="m-1")

    assert field in refused.reason
    assert SECRET not in refused.reason
    assert SECRET not in str(refused)
    assert refused.task_id == "m-1"


def test_a_wrong_webhook_payload_does_not_echo_its_headers() -> None:
    webhook = get_spec("webhook")
    body = {"payload": {"url": SECRET, "headers": {"Authorization": [f"Bearer {SECRET}"]}}}

    with pytest.raises(InvalidTask) as refused:
        decode(incoming(body, message_id="m-1"), webhook)

    assert "url" in refused.value.reason
    assert "headers.Authorization" in refused.value.reason
    assert SECRET not in refused.value.reason


def test_an_unknown_schema_version_is_invalid() -> None:
    refused = invalid({"payload": {"seconds": 1}, "schema_version": 2}, message_id="m-1")

    assert "schema_version" in refused.reason


def test_a_task_type_other_than_the_exchange_type_is_invalid() -> None:
    body = {"payload": {"seconds": 1}, "task_type": "webhook"}

    refused = invalid(body, message_id="m-1")

    assert refused.task_id == "m-1"
    assert "'webhook'" in refused.reason
    assert "'sleep'" in refused.reason


def test_a_matching_task_type_is_accepted() -> None:
    message = incoming({"payload": {"seconds": 1}, "task_type": "sleep"}, message_id="m-1")

    task = decode(message, SLEEP)

    assert task.spec is SLEEP


def test_the_task_id_in_the_body_wins_over_the_message_id() -> None:
    message = incoming({"payload": {"seconds": 1}, "task_id": "t-body"}, message_id="m-1")

    task = decode(message, SLEEP)

    assert task.task_id == "t-body"


def test_without_any_id_the_task_id_is_derived_from_the_message() -> None:
    message = incoming({"payload": {"seconds": 1}}, timestamp=SENT_AT, app_id="billing")

    task = decode(message, SLEEP)

    assert task.task_id == derived_task_id(message)


def test_an_invalid_payload_is_reported_under_the_body_task_id() -> None:
    refused = invalid({"payload": {"seconds": -1}, "task_id": "t-body"}, message_id="m-1")

    assert refused.task_id == "t-body"


def test_the_derived_id_is_stable_for_every_copy_of_one_message() -> None:
    body = {"payload": {"seconds": 1}}
    first = incoming(body, timestamp=SENT_AT, correlation_id="c-1", app_id="billing")
    redelivered = incoming(body, timestamp=SENT_AT, correlation_id="c-1", app_id="billing",
                           headers={names.HEADER_ATTEMPT: 2, "x-delivery-count": 1},
                           exchange="")

    ids = derived_task_id(first), derived_task_id(redelivered)

    assert ids[0] == ids[1]


@pytest.mark.parametrize(
    "other",
    [
        pytest.param({"body": {"payload": {"seconds": 2}}}, id="other-body"),
        pytest.param({"timestamp": datetime(2025, 1, 1, 12, 0, 1, tzinfo=UTC)}, id="other-time"),
        pytest.param({"correlation_id": "c-2"}, id="other-correlation"),
        pytest.param({"app_id": "shipping"}, id="other-app"),
    ],
)
def test_the_derived_id_differs_for_a_different_message(other: dict[str, Any]) -> None:
    sent: dict[str, Any] = {"body": {"payload": {"seconds": 1}}, "timestamp": SENT_AT,
                            "correlation_id": "c-1", "app_id": "billing"}
    first = incoming(**sent)
    second = incoming(**{**sent, **other})

    ids = derived_task_id(first), derived_task_id(second)

    assert ids[0] != ids[1]


@pytest.mark.parametrize(
    "junk", [None, "3", b"3", 0, -2, 2.5, [3], {"n": 3}],
)
def test_attempt_and_run_headers_default_to_one_and_ignore_junk(junk: object) -> None:
    headers = {names.HEADER_ATTEMPT: junk, names.HEADER_RUN: junk}

    task = decode(incoming({"payload": {"seconds": 1}}, message_id="m", headers=headers,
                           user_id="gateway"), SLEEP, tenants=SERVICE)

    assert (task.attempt, task.run) == (1, 1)


@pytest.mark.parametrize("user_id", [None, "billing-publisher", "guest"])
def test_control_headers_of_anyone_but_a_service_user_are_ignored(user_id: str | None) -> None:
    # An outside publisher cannot move a task to a later run or attempt, nor pass it off as
    # submitted over HTTP.
    headers = {names.HEADER_SOURCE: "http", names.HEADER_ATTEMPT: 5, names.HEADER_RUN: 2}
    rules = TenantRules(service_users=frozenset({"gateway"}),
                        publishers={"billing-publisher": "billing"}, development=True)

    task = decode(incoming({"payload": {"seconds": 1}}, message_id="m", headers=headers,
                           user_id=user_id), SLEEP, tenants=rules)

    assert (task.attempt, task.run, task.source) == (1, 1, "amqp")


# --- the projector must give a task message the same id as the consumer -------------------------

_ID_CASES = [
    pytest.param({"payload": {"seconds": 1}, "task_id": "t-body"}, "m-1", id="body-id"),
    pytest.param({"payload": {"seconds": 1}}, "m-1", id="message-id"),
    pytest.param({"payload": {"seconds": 1}}, None, id="derived"),
    pytest.param({"payload": {"seconds": -1}}, None, id="bad-payload-derived"),
    pytest.param({"payload": {"seconds": -1}, "task_id": "t-body"}, None, id="bad-payload-body-id"),
    pytest.param({"payload": {"seconds": 1}, "task_type": "webhook"}, None, id="wrong-type"),
    pytest.param({"payload": {"seconds": 1}, "task_id": 7}, "m-1", id="id-not-a-string"),
    pytest.param({"payload": {"seconds": 1}, "task_id": 7}, None, id="id-not-a-string-no-ids"),
    pytest.param({"payload": {"seconds": 1}, "task_id": ""}, "m-1", id="empty-body-id"),
    pytest.param({"payload": {"seconds": 1}, "extra": 1}, "m-1", id="bad-body-message-id"),
    pytest.param({"payload": {"seconds": 1}, "extra": 1}, None, id="bad-body-no-ids"),
    pytest.param(["not", "an", "object"], None, id="json-array-no-ids"),
    pytest.param(b"\x00binary", "m-1", id="not-json-message-id"),
    pytest.param(b"\x00binary", None, id="not-json-no-ids"),
]


def _decoded_id(body: bytes | dict[str, Any] | list[Any], message_id: str | None) -> str:
    message = incoming(body, message_id=message_id, timestamp=SENT_AT)
    try:
        return decode(message, SLEEP).task_id
    except InvalidTask as refused:
        return refused.task_id


@pytest.mark.parametrize(("body", "message_id"), _ID_CASES)
def test_submission_task_id_matches_the_id_decode_reports(
    body: bytes | dict[str, Any] | list[Any], message_id: str | None
) -> None:
    message = incoming(body, message_id=message_id, timestamp=SENT_AT)

    seen_by_projector = task_id_of(message)

    assert seen_by_projector == _decoded_id(body, message_id)


def test_an_empty_body_task_id_falls_back_to_the_message_id() -> None:
    message = incoming({"payload": {"seconds": 1}, "task_id": ""}, message_id="m-1")

    seen_by_projector = task_id_of(message)

    assert seen_by_projector == "m-1"


@pytest.mark.parametrize(("body", "message_id"), _ID_CASES)
def test_a_dead_letter_is_listed_and_replayed_under_the_id_decode_reports(
    body: bytes | dict[str, Any] | list[Any], message_id: str | None
) -> None:
    # A direct publish with a body task_id and another message_id once went dead as one task
    # and was looked for under the other when replayed.
    message = incoming(body, message_id=message_id, timestamp=SENT_AT)

    letter = describe(message, "sleep")

    assert letter.task_id == _decoded_id(body, message_id)


def test_a_workflow_step_decodes_with_its_follow_ups_and_the_previous_result() -> None:
    body = {"payload": {"seconds": 0}, "workflow_id": "root", "previous_result": {"n": 1},
            "then": [{"task_type": "webhook", "payload": {"url": "https://example.com"}}]}

    task = decode(incoming(body, message_id="m-wf"), SLEEP)

    assert (task.workflow_id, task.previous_result) == ("root", {"n": 1})
    assert [step.task_type for step in task.then] == ["webhook"]


@pytest.mark.parametrize(("then", "reason"), [
    ([{"task_type": "sleep", "payload": {}, "then": [{"task_type": "nope", "payload": {}}]}],
     "unknown task types ['nope']"),
    ([{"task_type": "sleep", "payload": {}, "labels": [f"l{n}" for n in range(10)]}],
     "no room for the label workflow=<id>"),
], ids=["unknown type, deeper", "labels full"])
def test_a_follow_up_that_could_never_be_published_is_invalid(
    then: list[dict[str, Any]], reason: str
) -> None:
    refused = invalid({"payload": {"seconds": 0}, "then": then}, message_id="m-bad")

    assert reason in str(refused)


def test_the_follow_up_key_is_the_bodys_else_a_digest_of_the_body() -> None:
    keyed = {"payload": {"seconds": 1}, "follow_up_key": "k" * 32}
    bare = {"payload": {"seconds": 1}}

    assert decode(incoming(keyed, message_id="m"), SLEEP).follow_up_key == "k" * 32
    first = decode(incoming(bare, message_id="m"), SLEEP).follow_up_key
    again = decode(incoming(bare, message_id="m", headers={"x-delivery-count": 1}),
                   SLEEP).follow_up_key
    assert first == again
    assert len(first) == 64
