"""The gateway's bounds, in process on in-memory ports: body size (413), caps per task type
(422 naming the cap), and requests in progress (503 with Retry-After)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from contracts.messages import TaskEnvelope
from contracts.registry import task_types
from gateway.app import create_app
from gateway.deps import Services
from infra.composition import task_service
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.system import SystemSettings
from infra.runtime.settings.tasks import TaskLimitOverride
from service.api_keys import create_key
from service.auth import SCOPES, Authenticator
from service.cancel import CancelPorts
from service.errors import QueueFull
from service.ports import Source
from service.replay import ReplayPorts
from tests.fakes.cancellations import MemoryCancellations, RecordingControl
from tests.fakes.dead_letters import FakeDeadLetterArchive, FakeDeadLetterQueue
from tests.fakes.dead_letters import RecordingPublisher as LetterRecorder
from tests.fakes.ports import (
    FixedQueueDepths,
    MemoryApiKeys,
    MemoryIdempotencyKeys,
    MemoryReadModel,
    RecordingPublisher,
)
from tests.fakes.schedules import MemorySchedules
from tests.fast.conftest import SETTINGS
from tests.support.keys import bearer
from tests.support.waiting import eventually

LIMIT = 4096
SLEEP = {"task_type": "sleep", "payload": {"seconds": 0}}


class HeldPublisher(RecordingPublisher):
    """Holds every publish until `release` is set, so requests stay in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.waiting = 0

    async def publish(
        self, envelope: TaskEnvelope, *, source: Source, tenant: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.waiting += 1
        await self.release.wait()
        await super().publish(envelope, source=source, tenant=tenant, traceparent=traceparent)


class FullQueue(RecordingPublisher):
    """A broker whose task queues are all full: every publish is refused (and remembered)."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[TaskEnvelope] = []

    async def publish(
        self, envelope: TaskEnvelope, *, source: Source, tenant: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.refused.append(envelope)
        raise QueueFull("tasks.sleep is full")


@asynccontextmanager
async def gateway(
    settings: SystemSettings, publisher: RecordingPublisher | None = None,
    read_model: MemoryReadModel | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, RecordingPublisher]]:
    """The gateway app under `settings`, on in-memory ports, and its publisher."""
    publisher = publisher or RecordingPublisher()
    read_model = read_model or MemoryReadModel()
    async with task_service(settings, read_model=read_model, keys=MemoryIdempotencyKeys(),
                            publisher=publisher) as tasks:
        unused = Broker(settings.rabbitmq_url, build_topology(task_types()),
                        timeout_s=settings.publish_timeout_s, name="security tier (unused)")
        replay = ReplayPorts(tasks=read_model, archive=FakeDeadLetterArchive(),
                             publisher=LetterRecorder(), queue=FakeDeadLetterQueue(),
                             replayed_by="security", claim_patience=timedelta(seconds=1))
        api_keys = MemoryApiKeys()
        key = await create_key(api_keys, tenant="limits", scopes=frozenset(SCOPES))
        auth = Authenticator(api_keys, cache_s=settings.api_key_cache_s)
        cancel = CancelPorts(MemoryCancellations(), RecordingControl(), cancelled_by="security")
        app = create_app(settings, services=Services(tasks, replay, unused, auth, cancel=cancel,
                                                     queues=FixedQueueDepths(),
                                                     schedules=MemorySchedules()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gateway",
                                     headers=bearer(key.token)) as client:
            yield client, publisher


def limited(**changes: Any) -> SystemSettings:
    return SETTINGS.model_copy(update=changes)


def padded_sleep_task(size: int) -> bytes:
    """A valid sleep task whose JSON is `size` bytes long (padding in insignificant spaces)."""
    body = json.dumps(SLEEP).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


# 413: the body limit


async def test_a_body_over_the_limit_by_content_length_is_a_413() -> None:
    async with gateway(limited(max_request_bytes=LIMIT)) as (http, publisher):
        response = await http.post("/tasks", content=padded_sleep_task(LIMIT + 1),
                                   headers={"Content-Type": "application/json"})

    assert response.status_code == 413, response.text
    assert "MAX_REQUEST_BYTES" in response.json()["detail"]
    assert publisher.published == []


async def test_a_body_at_the_limit_is_accepted() -> None:
    async with gateway(limited(max_request_bytes=LIMIT)) as (http, publisher):
        response = await http.post("/tasks", content=padded_sleep_task(LIMIT),
                                   headers={"Content-Type": "application/json"})

    assert response.status_code == 202, response.text
    assert len(publisher.published) == 1


async def test_a_chunked_body_over_the_limit_is_a_413_without_reading_it_all() -> None:
    chunk, chunks = 1024, 64  # 64 KiB offered against a 4 KiB limit
    sent = 0

    async def streamed() -> AsyncIterator[bytes]:
        nonlocal sent
        body = padded_sleep_task(chunk * chunks)
        for start in range(0, len(body), chunk):
            sent += chunk
            yield body[start:start + chunk]

    async with gateway(limited(max_request_bytes=LIMIT)) as (http, publisher):
        request = http.build_request("POST", "/tasks", content=streamed(),
                                     headers={"Content-Type": "application/json"})
        assert "content-length" not in request.headers
        response = await http.send(request)

    assert response.status_code == 413, response.text
    assert publisher.published == []
    # Reading stopped at the first chunk past the limit.
    assert sent <= LIMIT + chunk


# 422: caps per task type


def in_days(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("timeout_s", 301, "at most 300 for webhook"),
    ("max_attempts", 21, "at most 20 for webhook"),
    ("not_before", "days:31", "at most 30 days ahead for webhook"),
])
async def test_an_option_above_its_cap_is_a_422_naming_the_cap(
    option: str, value: Any, message: str
) -> None:
    if isinstance(value, str) and value.startswith("days:"):
        value = in_days(float(value.removeprefix("days:")))
    task = {"task_type": "webhook", "payload": {"url": "http://127.0.0.1:9/hook"}, option: value}
    async with gateway(SETTINGS) as (http, publisher):
        response = await http.post("/tasks", json=task)

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [
        {"loc": ["body", option], "msg": message, "type": "over_limit"}]
    assert publisher.published == []


async def test_options_at_their_caps_are_accepted() -> None:
    task = {"task_type": "webhook", "payload": {"url": "http://127.0.0.1:9/hook"},
            "timeout_s": 300, "max_attempts": 20, "not_before": in_days(29.9)}
    async with gateway(SETTINGS) as (http, publisher):
        response = await http.post("/tasks", json=task)

    assert response.status_code == 202, response.text
    assert len(publisher.published) == 1


async def test_an_operator_sets_the_caps_of_a_type() -> None:
    settings = limited(task_limits={"sleep": TaskLimitOverride(
        timeout_s=5, max_attempts=2, not_before_days=1)})
    over = {**SLEEP, "timeout_s": 6, "max_attempts": 3, "not_before": in_days(1.5)}
    async with gateway(settings) as (http, _):
        refused = await http.post("/tasks", json=over)
        accepted = await http.post("/tasks", json={**SLEEP, "timeout_s": 5, "max_attempts": 2})

    assert refused.status_code == 422, refused.text
    assert [(e["loc"], e["msg"]) for e in refused.json()["detail"]] == [
        (["body", "timeout_s"], "at most 5 for sleep"),
        (["body", "max_attempts"], "at most 2 for sleep"),
        (["body", "not_before"], "at most 1 days ahead for sleep"),
    ]
    assert accepted.status_code == 202, accepted.text


# 503: requests in progress


async def held_two(publisher: HeldPublisher) -> bool:
    return publisher.waiting == 2


async def test_past_the_concurrency_limit_a_request_is_a_503_and_health_still_answers() -> None:
    publisher = HeldPublisher()
    async with gateway(limited(gateway_max_concurrency=2), publisher) as (http, _):
        held = [asyncio.create_task(http.post("/tasks", json=SLEEP)) for _ in range(2)]
        await eventually(lambda: held_two(publisher), timeout_s=5, interval_s=0.01,
                         what="two submissions in progress")

        refused = await http.post("/tasks", json=SLEEP)
        health = await http.get("/health")

        publisher.release.set()
        finished = await asyncio.gather(*held)
        after = await http.post("/tasks", json=SLEEP)

    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert health.status_code == 200
    assert [r.status_code for r in finished] == [202, 202]
    assert after.status_code == 202
    assert len(publisher.published) == 3




# 503: a full task queue


async def test_a_full_queue_is_a_503_and_the_refused_task_is_recorded_nowhere() -> None:
    full, read_model = FullQueue(), MemoryReadModel()
    async with gateway(SETTINGS, full, read_model) as (http, _):
        response = await http.post("/tasks", json=SLEEP)

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"detail": "the task queue is full; nothing was queued"}
    [refused] = full.refused
    # No copy of it went to the projector either (tasks.<type>.recorded): nothing to correct.
    assert refused.task_id not in read_model.states
    assert full.queued_events == []
