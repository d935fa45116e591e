"""Batches over HTTP, in process: validated together, published together, counted by label;
an Idempotency-Key makes a retry after a broker failure part way queue only the rest, and
identical requests racing with one key publish each task once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import gateway.batch_routes
from contracts.messages import TaskEnvelope
from service.auth import READ, SUBMIT
from service.batches import BatchAccepted, SubmitBatch, submit_batch
from service.dependencies import Dependencies
from service.errors import PublishFailed
from service.ports import Claim, Source
from tests.fast.conftest import ClientFor, Fakes, Issue, claimed

EMAIL = {"task_type": "send_email",
         "payload": {"to": ["ann@example.com"], "subject": "Hi", "body": "x"}}


def sleeps(count: int) -> list[dict[str, Any]]:
    return [{"task_type": "sleep", "payload": {"seconds": 0}} for _ in range(count)]


async def test_a_batch_is_published_in_order_labelled_and_readable_at_once(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    body = {"tasks": [*sleeps(2), {**EMAIL, "labels": ["customer=42"]}], "labels": ["nightly"]}

    accepted = await http.post("/tasks/batch", json=body)
    batch_id, task_ids = accepted.json()["batch_id"], accepted.json()["task_ids"]
    view = await http.get(f"/batches/{batch_id}")
    listed = await http.get("/tasks", params={"label": f"batch={batch_id}"})

    assert accepted.status_code == 202
    assert len(task_ids) == 3
    published = {p.envelope.task_id: p.envelope for p in fakes.publisher.published}
    assert set(published) == set(task_ids)
    assert [published[t].task_type for t in task_ids] == ["sleep", "sleep", "send_email"]
    assert published[task_ids[2]].labels == ("customer=42", "nightly", f"batch={batch_id}")
    assert (view.status_code, view.json()) == (
        200, {"batch_id": batch_id, "total": 3, "counts": {"queued": 3}})
    assert {item["task_id"] for item in listed.json()["items"]} == set(task_ids)


async def test_one_invalid_task_is_a_422_naming_its_index_and_nothing_is_published(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    tasks = sleeps(1000)
    tasks[17] = {"task_type": "send_email", "payload": {"to": ["not an address"],
                                                        "subject": "Hi", "body": "x"}}

    refused = await http.post("/tasks/batch", json={"tasks": tasks})

    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"][:3] == ["body", "tasks", 17]
    assert error["loc"][-2:] == ["to", 0]
    assert fakes.publisher.published == []


async def test_more_than_1000_tasks_or_none_is_a_422(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    over = await http.post("/tasks/batch", json={"tasks": sleeps(1001)})
    empty = await http.post("/tasks/batch", json={"tasks": []})

    assert (over.status_code, empty.status_code) == (422, 422)
    assert fakes.publisher.published == []


async def test_too_many_labels_with_the_batch_label_name_the_task(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    tasks = [*sleeps(1), {**EMAIL, "labels": [f"l{n}" for n in range(5)]}]

    refused = await http.post("/tasks/batch",
                              json={"tasks": tasks, "labels": [f"b{n}" for n in range(5)]})

    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "tasks", 1, "labels"]
    assert fakes.publisher.published == []


async def test_the_same_idempotency_key_gives_the_same_batch_published_once(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    body = {"tasks": sleeps(5)}
    headers = {"Idempotency-Key": "batch-1"}

    first = await http.post("/tasks/batch", json=body, headers=headers)
    again = await http.post("/tasks/batch", json=body, headers=headers)
    other = await http.post("/tasks/batch", json={"tasks": sleeps(4)}, headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert len(fakes.publisher.published) == 5
    assert other.status_code == 422


async def test_a_retry_after_a_failure_part_way_queues_only_the_rest_under_the_same_ids(
    http: httpx.AsyncClient, fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fakes.publisher.publish
    calls = 0

    async def third_refused(envelope: TaskEnvelope, *, source: Source,
                            tenant: str | None = None, traceparent: str | None = None) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise PublishFailed("not confirmed")
        await real(envelope, source=source, tenant=tenant, traceparent=traceparent)

    monkeypatch.setattr(fakes.publisher, "publish", third_refused)
    body, headers = {"tasks": sleeps(5)}, {"Idempotency-Key": "batch-2"}

    failed = await http.post("/tasks/batch", json=body, headers=headers)
    retried = await http.post("/tasks/batch", json=body, headers=headers)

    assert failed.status_code == 503
    assert len(failed.json()["queued"]) == 4
    assert retried.status_code == 202
    assert retried.json()["batch_id"] == failed.json()["batch_id"]
    ids = [p.envelope.task_id for p in fakes.publisher.published]
    assert sorted(ids) == sorted(retried.json()["task_ids"])  # each published once
    view = await http.get(f"/batches/{retried.json()['batch_id']}")
    assert view.json()["counts"] == {"queued": 5}


def batch_claim(idempotency_key: str) -> str:
    """Where the fake holds a batch's Idempotency-Key (service.batches)."""
    return "batch:" + claimed(idempotency_key)


async def test_identical_batches_racing_with_one_key_publish_each_task_once(
    http: httpx.AsyncClient, fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    racers = 3
    # Every request reaches the use case before any goes on, and no task is published before
    # every request has asked for the key: the race is forced, not left to the scheduler.
    together = asyncio.Barrier(racers)
    all_asked = asyncio.Event()
    claims = 0
    real_claim = fakes.keys.claim
    real_publish = fakes.publisher.publish

    async def released_together(deps: Dependencies, batch: SubmitBatch, *,
                                source: Source) -> BatchAccepted:
        async with asyncio.timeout(5):
            await together.wait()
        return await submit_batch(deps, batch, source=source)

    async def counted_claim(key: str, fingerprint: str, task_id: str) -> Claim:
        nonlocal claims
        claims += 1
        if claims == racers:
            all_asked.set()
        return await real_claim(key, fingerprint, task_id)

    async def after_every_claim(envelope: TaskEnvelope, *, source: Source,
                                tenant: str | None = None,
                                traceparent: str | None = None) -> None:
        async with asyncio.timeout(5):
            await all_asked.wait()
        await real_publish(envelope, source=source, tenant=tenant, traceparent=traceparent)

    monkeypatch.setattr(gateway.batch_routes, "submit_batch", released_together)
    monkeypatch.setattr(fakes.keys, "claim", counted_claim)
    monkeypatch.setattr(fakes.publisher, "publish", after_every_claim)
    body, headers = {"tasks": sleeps(5)}, {"Idempotency-Key": "raced"}

    answers = await asyncio.gather(*(http.post("/tasks/batch", json=body, headers=headers)
                                     for _ in range(racers)))

    accepted = [answer.json() for answer in answers if answer.status_code == 202]
    busy = [answer for answer in answers if answer.status_code == 409]
    assert len(accepted) + len(busy) == racers, [answer.text for answer in answers]
    assert accepted, "no request was accepted"
    assert all(answer == accepted[0] for answer in accepted)
    assert all(answer.json()["detail"].startswith("a request with this Idempotency-Key")
               for answer in busy)
    published = Counter(p.envelope.task_id for p in fakes.publisher.published)
    assert sorted(published) == sorted(accepted[0]["task_ids"])
    assert set(published.values()) == {1}, published


async def test_a_batch_still_being_queued_elsewhere_is_a_409_and_publishes_nothing(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    body, headers = {"tasks": sleeps(3)}, {"Idempotency-Key": "busy"}
    await http.post("/tasks/batch", json=body, headers=headers)
    first = list(fakes.publisher.published)
    held = fakes.keys.claims[batch_claim("busy")]
    # Another request holds the key, claimed after this one began to wait (an older claim
    # would count as abandoned by then and be taken over), and never finishes.
    fakes.keys.claims[batch_claim("busy")] = Claim(
        "elsewhere", held.request_hash, "pending", datetime.now(UTC) + timedelta(seconds=2),
        is_new=False)

    busy = await http.post("/tasks/batch", json=body, headers=headers)

    assert busy.status_code == 409
    assert busy.headers["Retry-After"] == "1"
    assert fakes.publisher.published == first


async def test_a_claim_whose_holder_crashed_part_way_is_taken_over_publishing_only_the_rest(
    http: httpx.AsyncClient, fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fakes.publisher.publish
    calls = 0

    async def third_lost(envelope: TaskEnvelope, *, source: Source,
                         tenant: str | None = None, traceparent: str | None = None) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise PublishFailed("not confirmed")
        await real(envelope, source=source, tenant=tenant, traceparent=traceparent)

    async def crashed(key: str, task_id: str) -> None:
        """The holder dies before it can give its claim back."""

    monkeypatch.setattr(fakes.publisher, "publish", third_lost)
    monkeypatch.setattr(fakes.keys, "release", crashed)
    body, headers = {"tasks": sleeps(5)}, {"Idempotency-Key": "crashed"}
    lost = await http.post("/tasks/batch", json=body, headers=headers)
    monkeypatch.undo()
    held = fakes.keys.claims[batch_claim("crashed")]
    fakes.keys.claims[batch_claim("crashed")] = dataclasses.replace(
        held, claimed_at=held.claimed_at - timedelta(minutes=5))

    retried = await http.post("/tasks/batch", json=body, headers=headers)

    assert lost.status_code == 503
    assert retried.status_code == 202, retried.text
    assert retried.json()["batch_id"] == lost.json()["batch_id"]
    published = Counter(p.envelope.task_id for p in fakes.publisher.published)
    assert sorted(published) == sorted(retried.json()["task_ids"])
    assert set(published.values()) == {1}, published
    assert fakes.keys.claims[batch_claim("crashed")].state == "queued"


async def test_a_batch_needs_its_scopes_and_belongs_to_its_tenant(
    http: httpx.AsyncClient, issue: Issue, client_for: ClientFor
) -> None:
    anonymous = await client_for(None)
    reader = await client_for(await issue(scopes=(READ,)))
    submitter = await client_for(await issue(scopes=(SUBMIT,)))
    other = await client_for(await issue(tenant="other"))
    batch_id = (await http.post("/tasks/batch", json={"tasks": sleeps(1)})).json()["batch_id"]

    assert (await anonymous.post("/tasks/batch", json={"tasks": sleeps(1)})).status_code == 401
    assert (await reader.post("/tasks/batch", json={"tasks": sleeps(1)})).status_code == 403
    assert (await submitter.get(f"/batches/{batch_id}")).status_code == 403
    assert (await other.get(f"/batches/{batch_id}")).status_code == 404
    assert (await http.get("/batches/no-such-batch")).status_code == 404
