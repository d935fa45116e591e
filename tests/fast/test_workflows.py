"""`then` at submission, in process: every follow-up at any depth is validated as a task is
(nothing published when one is not); a valid chain travels in the envelope with its label."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from contracts.json_schema import json_schemas
from service.auth import SUBMIT
from tests.fast.conftest import ClientFor, Fakes, Issue


def sleep(seconds: float, **options: Any) -> dict[str, Any]:
    return {"task_type": "sleep", "payload": {"seconds": seconds}, **options}


def chain(depth: int) -> dict[str, Any]:
    step = sleep(0)
    for _ in range(depth):
        step = sleep(0, then=[step])
    return step


async def test_a_chain_travels_in_the_envelope_and_is_labelled_and_viewable(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    accepted = await http.post("/tasks", json=sleep(0, labels=["nightly"],
                                                    then=[sleep(1, then=[sleep(2)])]))
    task_id = accepted.json()["task_id"]
    view = await http.get(f"/workflows/{task_id}")

    assert accepted.status_code == 202, accepted.text
    [published] = fakes.publisher.published
    envelope = published.envelope
    assert envelope.workflow_id == task_id
    assert envelope.labels == ("nightly", f"workflow={task_id}")
    assert envelope.then is not None
    assert envelope.then[0].payload == {"seconds": 1}
    assert envelope.then[0].then is not None
    assert envelope.then[0].then[0].payload == {"seconds": 2}
    assert view.status_code == 200
    assert (view.json()["status"], [s["task_id"] for s in view.json()["steps"]]) == (
        "running", [task_id])


@pytest.mark.parametrize(("body", "loc"), [
    (sleep(0, then=[sleep(-1)]), ["body", "then", 0, "sleep", "payload", "seconds"]),
    (sleep(0, then=[sleep(0, then=[{"task_type": "nope", "payload": {}}])]),
     ["body", "then", 0, "then", 0]),
    (sleep(0, then=[sleep(0, not_before="2030-01-01T00:00:00Z")]),
     ["body", "then", 0, "not_before"]),
    (sleep(0, then=[sleep(0, timeout_s=10_000)]), ["body", "then", 0, "sleep", "timeout_s"]),
    (chain(11), ["body", *["then", 0] * 10, "then"]),
], ids=["payload", "unknown type, deeper", "not_before", "over a cap", "too deep"])
async def test_an_invalid_follow_up_is_a_422_saying_where_and_nothing_is_published(
    http: httpx.AsyncClient, fakes: Fakes, body: dict[str, Any], loc: list[Any]
) -> None:
    refused = await http.post("/tasks", json=body)

    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"][:len(loc)] == loc
    assert fakes.publisher.published == []


async def test_more_than_100_follow_ups_in_all_is_a_422(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    wide = sleep(0, then=[sleep(0, then=[sleep(0) for _ in range(10)]) for _ in range(10)])

    refused = await http.post("/tasks", json=wide)

    assert refused.status_code == 422
    assert fakes.publisher.published == []


async def test_then_is_part_of_the_idempotency_fingerprint(http: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "chain-1"}

    first = await http.post("/tasks", json=sleep(0, then=[sleep(1)]), headers=headers)
    other = await http.post("/tasks", json=sleep(0, then=[sleep(2)]), headers=headers)

    assert (first.status_code, other.status_code) == (202, 422)


async def test_an_unknown_workflow_is_not_found(http: httpx.AsyncClient) -> None:
    assert (await http.get("/workflows/nope")).status_code == 404


async def test_a_workflow_needs_tasks_read_and_belongs_to_its_tenant(
    http: httpx.AsyncClient, issue: Issue, client_for: ClientFor
) -> None:
    task_id = (await http.post("/tasks", json=sleep(0, then=[sleep(0)]))).json()["task_id"]
    anonymous = await client_for(None)
    submitter = await client_for(await issue(scopes=(SUBMIT,)))
    other = await client_for(await issue(tenant="other"))

    assert (await anonymous.get(f"/workflows/{task_id}")).status_code == 401
    assert (await submitter.get(f"/workflows/{task_id}")).status_code == 403
    assert (await other.get(f"/workflows/{task_id}")).status_code == 404
    assert (await http.get(f"/workflows/{task_id}")).status_code == 200


def test_the_json_schema_of_a_task_message_has_the_workflow_fields() -> None:
    body = json_schemas()["task_body"]

    assert {"then", "workflow_id", "previous_result"} <= set(body["properties"])
    assert "FollowUp" in body["$defs"]
