"""Labels: the rule a publisher meets (over HTTP and AMQP alike), how the projection keeps
them, and the listing cursor that pages by them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.messages import StatusEvent, TaskBody
from contracts.statuses import Status
from infra.mongodb.task_queries import list_key
from service.errors import InvalidCursor
from service.listing import decode_cursor, encode_cursor
from service.queries import SortKey
from tests.support.projection import fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(status: Status, attempt: int = 1, **fields: Any) -> StatusEvent:
    return StatusEvent(task_id="t-1", task_type="sleep", status=status, attempt=attempt,
                       at=T0, worker="w", **fields)



@pytest.mark.parametrize("labels", [["nightly", "customer=42", "a.b_c:d/e-f"], ["x" * 64],
                                    [f"l{n}" for n in range(10)]])
def test_a_body_takes_up_to_ten_labels_of_the_allowed_characters(labels: list[str]) -> None:
    body = TaskBody.model_validate({"payload": {}, "labels": labels})

    assert body.labels == tuple(labels)


@pytest.mark.parametrize("labels", [[f"l{n}" for n in range(11)], [""], ["x" * 65],
                                    ["a b"], ["tab\t"], ["line\n"], ["ü"], [3], "nightly"])
def test_a_body_with_invalid_labels_is_refused(labels: Any) -> None:
    with pytest.raises(ValidationError):
        TaskBody.model_validate({"payload": {}, "labels": labels})


def test_the_queued_events_labels_are_kept_once_each_and_never_changed() -> None:
    state = fold(event(Status.QUEUED, 0, labels=("a", "b", "a")),
                 event(Status.RUNNING), event(Status.SUCCEEDED, labels=("other",)))

    assert state.labels == ("a", "b")


def test_a_late_queued_event_still_brings_its_labels() -> None:
    state = fold(event(Status.RUNNING), event(Status.SUCCEEDED),
                 event(Status.QUEUED, 0, labels=("nightly",)))

    assert (state.status, state.labels) == (Status.SUCCEEDED, ("nightly",))


def test_a_cursor_holds_its_sort_key_to_the_microsecond() -> None:
    key = SortKey(T0 + timedelta(microseconds=123_457), "task:1.a-b")

    assert decode_cursor(encode_cursor(key)) == key


@pytest.mark.parametrize("cursor", ["", "%%%", "bm8tc2VwYXJhdG9y", "YWJjfHRhc2s", "MXzDvA"])
def test_a_cursor_no_listing_made_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


def test_the_stored_list_key_sorts_as_the_sort_key_does() -> None:
    keys = [SortKey(T0 + timedelta(milliseconds=ms), task_id)
            for ms in (0, 1, 999, 1000, 86_400_000) for task_id in ("A", "a", "a-1", "z")]

    assert sorted(keys, key=lambda k: list_key(k.created_at, k.task_id)) == sorted(keys)
