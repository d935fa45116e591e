"""A bounded, deterministic fuzz run of the gateway's OpenAPI document with schemathesis.

Every operation gets valid and invalid requests generated from its schema, sent to the gateway
app in this process on the fast tier's in-memory ports: once with an API key holding every
scope, once with no key. Each answer must be documented (status code, content type and body
schema), never a 5xx, and never carry a Python traceback or an internal exception name.

The app runs on its own event loop (an `asyncio.Runner` held by the module's fixture) and is
reached through httpx's ASGI transport, so the in-memory ports and the background recorder
live on the loop that serves the requests. Hypothesis is derandomized with no example database:
the same examples every run, so CI cannot flake on a lucky draw.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from contracts.registry import task_types
from gateway.app import create_app
from gateway.deps import Services
from infra.composition import task_service
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from service.api_keys import create_key
from service.auth import SCOPES, Authenticator
from service.cancel import CancelPorts
from service.rate_limit import RateLimiter
from service.replay import ReplayPorts
from tests.fakes.cancellations import MemoryCancellations, RecordingControl
from tests.fakes.dead_letters import FakeDeadLetterArchive, FakeDeadLetterQueue
from tests.fakes.dead_letters import RecordingPublisher as LetterRecorder
from tests.fakes.ports import (
    FixedQueueDepths,
    ManualClock,
    MemoryApiKeys,
    MemoryIdempotencyKeys,
    MemoryReadModel,
    RecordingPublisher,
)
from tests.fakes.schedules import MemorySchedules
from tests.fast.conftest import SETTINGS

FuzzCase = schemathesis.Case[Any]

# Per operation and run: 5 + 3 operations take about 10 s on this 2-core machine.
MAX_EXAMPLES = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
# What a leaked exception looks like: a traceback, a source line reference, or the name of an
# exception class from Python, pydantic, Starlette or this code base. (A task's `error.type` is
# an exception name by design, but no worker runs here, so no answer carries one.)
LEAK = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|"
    r"\b[A-Z][a-z]\w*(Error|Exception)\b|\b(PublishFailed|QueueFull|StoreUnavailable|"
    r"TaskNotFound|Unauthenticated|Forbidden|RateLimited|NotRetryable)\b")


@dataclass
class Gateway:
    """The app, served on `runner`'s loop, and the key of a tenant holding every scope."""

    runner: asyncio.Runner
    client: httpx.AsyncClient
    key: str

    def send(self, case: FuzzCase, *, with_key: bool) -> httpx.Response:
        kwargs = case.as_transport_kwargs(base_url="http://gateway")
        headers = {name: value for name, value in (kwargs.pop("headers", None) or {}).items()
                   if name.lower() != "authorization"}
        if with_key:
            headers["Authorization"] = f"Bearer {self.key}"
        if isinstance(kwargs.get("data"), bytes | str):
            # requests' raw `data` is httpx's `content`.
            kwargs["content"] = kwargs.pop("data")
        kwargs.pop("auth", None)
        # httpx deprecates per-request cookies; the API documents none, so they go as a header.
        if cookies := kwargs.pop("cookies", None):
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        return self.runner.run(self.client.request(headers=headers, **kwargs))


async def _open(stack: AsyncExitStack) -> tuple[httpx.AsyncClient, str]:
    api_keys, clock = MemoryApiKeys(), ManualClock()
    tasks = await stack.enter_async_context(task_service(
        SETTINGS, read_model=(read_model := MemoryReadModel()), keys=MemoryIdempotencyKeys(),
        publisher=RecordingPublisher()))
    # Nothing listens on port 1: readiness answers 503, as documented.
    unused = Broker(SETTINGS.rabbitmq_url, build_topology(task_types()),
                    timeout_s=SETTINGS.publish_timeout_s, name="fuzz (unused)")
    replay = ReplayPorts(tasks=read_model, archive=FakeDeadLetterArchive(),
                         publisher=LetterRecorder(), queue=FakeDeadLetterQueue(),
                         replayed_by="fuzz", claim_patience=timedelta(seconds=1))
    cancel = CancelPorts(MemoryCancellations(), RecordingControl(), cancelled_by="fuzz")
    app = create_app(SETTINGS, services=Services(
        tasks, replay, unused, Authenticator(api_keys, cache_s=SETTINGS.api_key_cache_s,
                                             clock=clock),
        cancel=cancel, queues=FixedQueueDepths(), schedules=MemorySchedules(),
        limiter=RateLimiter(clock=clock)))
    # A rate the fuzz run cannot reach with the clock standing still: it explores, not 429s.
    issued = await create_key(api_keys, tenant="fuzz", scopes=frozenset(SCOPES),
                              rate_per_s=1_000_000)
    client = await stack.enter_async_context(httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"))
    return client, issued.token


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    # A loop factory keeps the runner from replacing the current loop pytest-asyncio set.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        stack = AsyncExitStack()
        client, key = runner.run(_open(stack))
        try:
            yield Gateway(runner, client, key)
        finally:
            runner.run(stack.aclose())


# The document is built without IO (create_app connects nothing until its lifespan runs). Not
# `schemathesis.pytest.from_fixture`: its lazy loader sets `Item._nodeid`, gone in pytest 9.
schema = schemathesis.openapi.from_dict(create_app(SETTINGS).openapi())
FUZZ_SETTINGS = settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None,
                         deadline=None, suppress_health_check=list(HealthCheck))


def assert_no_leak(answer: httpx.Response) -> None:
    found = LEAK.search(answer.text)
    assert found is None, f"{answer.status_code} answer leaks {found.group(0)!r}: {answer.text}"


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_answer_with_a_key_is_documented_and_leaks_nothing(
    case: FuzzCase, gateway: Gateway,
) -> None:
    answer = gateway.send(case, with_key=True)

    case.validate_response(answer, checks=CHECKS)
    assert_no_leak(answer)


@schema.include(path_regex="^/(tasks|schedules)").parametrize()
@FUZZ_SETTINGS
def test_every_task_endpoint_without_a_key_answers_401(
    case: FuzzCase, gateway: Gateway,
) -> None:
    answer = gateway.send(case, with_key=False)

    if case.method.upper() != case.operation.method.upper():
        # A method the path does not have: the router answers before any route's key check.
        assert answer.status_code == 405, f"{case.method} {case.formatted_path}: {answer.text}"
    elif len(answer.request.content) > SETTINGS.max_request_bytes:
        # The size limit answers before anything reads the body or the key: 413 either way.
        assert answer.status_code == 413, f"{case.method} {case.formatted_path}: {answer.text}"
    else:
        assert answer.status_code == 401, f"{case.method} {case.formatted_path}: {answer.text}"
        assert answer.headers["WWW-Authenticate"] == "Bearer"
    case.validate_response(answer, checks=CHECKS)
    assert_no_leak(answer)
