"""Submitting over HTTP: a 202 means published and readable; an Idempotency-Key gives one task
for one request; a broker that does not confirm is a 503 that leaves nothing behind."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from service.ports import Claim
from tests.fast.conftest import SETTINGS, Fakes, claimed
from tests.support.json_logs import json_lines
from tests.support.waiting import eventually

SLEEP = {"task_type": "sleep", "payload": {"seconds": 0}}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def submit(
    http: httpx.AsyncClient, body: dict[str, Any], key: str | None = None,
    **headers: str,
) -> httpx.Response:
    if key is not None:
        headers["Idempotency-Key"] = key
    return await http.post("/tasks", json=body, headers=headers)


async def test_a_202_means_published_and_readable_at_once(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    body = {"task_type": "send_email", "max_attempts": 2,
            "payload": {"to": ["ann@example.com"], "subject": "Hi", "body": "x"}}

    accepted = await submit(http, body)
    task_id = accepted.json()["task_id"]
    view = await http.get(f"/tasks/{task_id}")

    assert (accepted.status_code, accepted.json()) == (202, {"task_id": task_id,
                                                             "status": "queued"})
    [published] = fakes.publisher.published
    assert (published.envelope.task_id, published.envelope.task_type) == (task_id, "send_email")
    assert published.envelope.payload == body["payload"]
    assert published.envelope.max_attempts == 2
    assert published.source == "http"
    assert view.status_code == 200
    assert (view.json()["status"], view.json()["source"], view.json()["attempt"]) == (
        "queued", "http", 0)


@pytest.mark.parametrize(("sent", "passed_on"), [
    (TRACEPARENT, TRACEPARENT), ("not-a-trace", None)], ids=["valid", "malformed"])
async def test_a_valid_traceparent_travels_with_the_task_and_a_malformed_one_is_dropped(
    http: httpx.AsyncClient, fakes: Fakes, sent: str, passed_on: str | None
) -> None:
    accepted = await submit(http, SLEEP, traceparent=sent)

    assert accepted.status_code == 202
    assert [p.traceparent for p in fakes.publisher.published] == [passed_on]


@pytest.mark.parametrize("levels", [256, 900])
async def test_a_payload_nested_too_deep_is_a_422_and_nothing_is_published(
    http: httpx.AsyncClient, fakes: Fakes, levels: int
) -> None:
    # Written out by hand: the JSON encoder itself recurses.
    body = ('{"task_type": "webhook", "payload": {"url": "https://example.com/hook", "json": '
            + "[" * levels + "]" * levels + "}}")

    answer = await http.post("/tasks", content=body,
                             headers={"content-type": "application/json"})

    assert answer.status_code == 422, answer.text
    assert [(problem["loc"], problem["msg"]) for problem in answer.json()["detail"]] == [
        (["body", "webhook", "payload"], "Value error, nested deeper than 64 levels")]
    assert fakes.publisher.published == []


async def test_one_idempotency_key_gives_one_task_published_once(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    key = f"key-{uuid.uuid4()}"

    answers = await asyncio.gather(*(submit(http, SLEEP, key) for _ in range(5)))

    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["task_id"] for answer in answers}) == 1
    assert len(fakes.publisher.published) == 1
    assert fakes.keys.claims[claimed(key)].state == "queued"


async def test_an_idempotency_key_reused_with_another_request_is_a_422(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    key = f"key-{uuid.uuid4()}"
    await submit(http, SLEEP, key)

    reused = await submit(http, {"task_type": "sleep", "payload": {"seconds": 1}}, key)

    assert reused.status_code == 422
    [error] = reused.json()["detail"]
    assert (error["loc"], error["type"]) == (["header", "Idempotency-Key"],
                                             "idempotency_key_reused")
    assert len(fakes.publisher.published) == 1


async def test_a_key_still_being_queued_elsewhere_is_a_409_after_a_while(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    key = f"key-{uuid.uuid4()}"
    await submit(http, SLEEP, key)
    [first] = fakes.publisher.published
    # Another request holds the key, claimed after this one began to wait (a claim older than
    # the wait would count as abandoned by then and be taken over), and never publishes.
    fingerprint = fakes.keys.claims[claimed(key)].request_hash
    claimed_at = datetime.now(UTC) + timedelta(seconds=0.5)
    fakes.keys.claims[claimed(key)] = Claim(f"elsewhere-{uuid.uuid4()}", fingerprint, "pending",
                                   claimed_at, is_new=False)

    busy = await submit(http, SLEEP, key)

    assert busy.status_code == 409
    assert busy.headers["Retry-After"] == "1"
    assert fakes.publisher.published == [first]


async def test_an_abandoned_claim_is_taken_over_under_its_task_id(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    key, orphan = f"key-{uuid.uuid4()}", f"orphan-{uuid.uuid4()}"
    await submit(http, SLEEP, key)
    fingerprint = fakes.keys.claims[claimed(key)].request_hash
    fakes.publisher.published.clear()
    # Its owner claimed it long before any publish could take, then vanished.
    long_ago = datetime.now(UTC) - timedelta(seconds=SETTINGS.publish_timeout_s * 2 + 2)
    fakes.keys.claims[claimed(key)] = Claim(orphan, fingerprint, "pending", long_ago, is_new=False)

    taken_over = await submit(http, SLEEP, key)

    assert (taken_over.status_code, taken_over.json()["task_id"]) == (202, orphan)
    assert [p.envelope.task_id for p in fakes.publisher.published] == [orphan]


async def test_without_a_broker_confirmation_a_submit_is_a_503_that_leaves_nothing(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    key = f"key-{uuid.uuid4()}"
    fakes.publisher.down = True

    refused = await submit(http, SLEEP, key)

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert refused.json() == {"detail": "message broker unavailable; nothing was queued"}
    assert fakes.read_model.states == {}
    assert claimed(key) not in fakes.keys.claims
    # The key was given back: once the broker is back, the same request goes through.
    fakes.publisher.down = False
    accepted = await submit(http, SLEEP, key)
    assert accepted.status_code == 202
    assert len(fakes.publisher.published) == 1


async def test_a_task_queued_while_the_store_is_down_is_readable_and_recorded_once_it_is_back(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.read_model.down = True
    accepted = await submit(http, SLEEP)
    task_id = accepted.json()["task_id"]
    fakes.read_model.down = False
    # A read before the record landed: the gateway answers from what it holds.
    view = await http.get(f"/tasks/{task_id}")

    assert accepted.status_code == 202
    assert (view.status_code, view.json()["status"]) == (200, "queued")
    recorded = await eventually(lambda: _stored(fakes, task_id), timeout_s=5,
                                what="the `queued` record once the store is back")
    assert recorded.status.value == "queued"


async def test_a_task_the_store_could_not_take_has_its_queued_event_sent_to_the_projector(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.read_model.down = True

    accepted = await submit(http, SLEEP)

    assert accepted.status_code == 202
    [event] = fakes.publisher.queued_events
    assert (event.task_id, event.status.value, event.source) == (
        accepted.json()["task_id"], "queued", "http")
    assert event.tenant is not None


async def test_a_recorded_task_sends_no_queued_event(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    accepted = await submit(http, SLEEP)

    assert accepted.status_code == 202
    assert fakes.publisher.queued_events == []


async def _stored(fakes: Fakes, task_id: str) -> Any:
    return fakes.read_model.states.get(task_id)


async def test_a_read_while_the_store_is_down_is_a_503(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    fakes.read_model.down = True

    response = await http.get(f"/tasks/{uuid.uuid4()}")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "status store unavailable"}


async def test_the_accept_line_carries_the_task_id_and_trace_id_as_json_fields(
    http: httpx.AsyncClient,
) -> None:
    with json_lines("service.submit") as lines:
        accepted = await submit(http, SLEEP, traceparent=TRACEPARENT)
        untraced = await submit(http, SLEEP)

    traced_line, untraced_line = [line for line in lines
                                  if line["message"].startswith("accepted sleep task")]
    assert (traced_line["task_id"], traced_line["trace_id"]) == (
        accepted.json()["task_id"], TRACEPARENT.split("-")[1])
    assert untraced_line["task_id"] == untraced.json()["task_id"]
    assert "trace_id" not in untraced_line
