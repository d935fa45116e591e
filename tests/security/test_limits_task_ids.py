"""The AMQP task id rule and the caps, as the worker's decoder applies them: an id outside
1-128 characters of [A-Za-z0-9._:-], or an option over its type's cap, is refused with the
reason, and the id it is recorded under is always a valid one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.decode import InvalidTask, decode
from contracts.limits import TaskLimits, is_valid_task_id
from contracts.registry import get_spec
from infra.rabbitmq.amqp_codec import derived_task_id, task_id_of
from tests.fakes.amqp_message import incoming

SLEEP = get_spec("sleep")
PAYLOAD = {"payload": {"seconds": 0}}

VALID_IDS = ["a", "x" * 128, "order-17", "A.b_c:d-9", "0", "2025-01-01T12:00:00.000Z", "..."]
INVALID_IDS = {
    "emoji": "\N{PILE OF POO}" * 200,
    "one emoji": "task-\N{ROCKET}",
    "129 characters": "x" * 129,
    "a space": "task 1",
    "a slash": "tenant/task",
    "a trailing newline": "task-1\n",
    "a NUL": "task\x001",
    "non-ASCII letter": "tâche",
}


@pytest.mark.parametrize("task_id", VALID_IDS)
def test_a_valid_id_is_kept_as_given(task_id: str) -> None:
    from_property = decode(incoming(PAYLOAD, message_id=task_id), SLEEP)
    from_body = decode(incoming({**PAYLOAD, "task_id": task_id}, message_id="other"), SLEEP)

    assert from_property.task_id == task_id
    assert from_body.task_id == task_id


@pytest.mark.parametrize("case", list(INVALID_IDS))
@pytest.mark.parametrize("where", ["message_id", "body"])
def test_an_invalid_id_is_refused_and_recorded_under_a_derived_valid_one(
    case: str, where: str
) -> None:
    bad = INVALID_IDS[case]
    if where == "message_id":
        message = incoming(PAYLOAD, message_id=bad)
    else:
        message = incoming({**PAYLOAD, "task_id": bad}, message_id="m-1")

    with pytest.raises(InvalidTask) as refused:
        decode(message, SLEEP)

    assert "task id is not 1-128 characters of [A-Za-z0-9._:-]" in refused.value.reason
    assert bad not in refused.value.reason
    assert refused.value.task_id == derived_task_id(message) == task_id_of(message)
    assert is_valid_task_id(refused.value.task_id)


def test_an_empty_message_id_is_no_id_and_gets_a_derived_one() -> None:
    message = incoming(PAYLOAD, message_id="")

    task = decode(message, SLEEP)

    assert task.task_id == derived_task_id(message)


NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("options", "reason"), [
    ({"timeout_s": 601}, "timeout_s: at most 600 for sleep"),
    ({"max_attempts": 21}, "max_attempts: at most 20 for sleep"),
    ({"not_before": (NOW + timedelta(days=30, seconds=1)).isoformat()},
     "not_before: at most 30 days ahead for sleep"),
])
def test_an_option_over_its_cap_is_refused_naming_the_cap(
    options: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidTask) as refused:
        decode(incoming({**PAYLOAD, **options}, message_id="t-1"), SLEEP, now=NOW)

    assert refused.value.reason == f"over a limit: {reason}"
    assert refused.value.task_id == "t-1"


def test_the_operators_caps_replace_the_types() -> None:
    tight = TaskLimits(timeout_s=1, max_attempts=1, not_before_s=60)
    message = incoming({**PAYLOAD, "timeout_s": 2, "max_attempts": 1}, message_id="t-2")

    with pytest.raises(InvalidTask) as refused:
        decode(message, SLEEP, tight, now=NOW)
    at_caps = decode(incoming({**PAYLOAD, "timeout_s": 600, "max_attempts": 20,
                               "not_before": (NOW + timedelta(days=30)).isoformat()},
                              message_id="t-3"), SLEEP, now=NOW)

    assert refused.value.reason == "over a limit: timeout_s: at most 1 for sleep"
    assert (at_caps.timeout_s, at_caps.max_attempts) == (600, 20)
