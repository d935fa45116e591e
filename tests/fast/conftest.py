"""The fast tier: the gateway's FastAPI app in this process, on the service layer's real wiring
over in-memory ports, called through httpx's ASGI transport. No server, broker or store runs.

`http` is a client holding an API key with every scope, of tenant `TENANT`; `client_for(key)`
makes clients with other keys, `issue(...)` makes those keys (tests/security uses both)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from contracts.registry import task_types
from gateway.app import create_app
from gateway.deps import Services
from infra.composition import task_service
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.system import SystemSettings
from service.api_keys import create_key
from service.auth import SCOPES, Authenticator
from service.cancel import CancelPorts
from service.rate_limit import RateLimiter
from service.replay import ReplayPorts
from service.submit import claim_key
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

# Nothing listens on port 1: were anything to reach past the fakes, it would fail at once.
SETTINGS = SystemSettings(rabbitmq_url="amqp://guest:guest@127.0.0.1:1/",
                    mongodb_url="mongodb://127.0.0.1:1/?directConnection=true",
                    publish_timeout_s=0.05)
# The tenant of the `http` client's key.
TENANT = "fast"


def claimed(idempotency_key: str, tenant: str = TENANT) -> str:
    """Where the fake holds a tenant's Idempotency-Key (service.submit.claim_key)."""
    return claim_key(tenant, idempotency_key)


@dataclass
class Fakes:
    read_model: MemoryReadModel
    keys: MemoryIdempotencyKeys
    publisher: RecordingPublisher
    api_keys: MemoryApiKeys
    # Drives the API key cache and the rate limits.
    clock: ManualClock
    cancellations: MemoryCancellations = field(default_factory=MemoryCancellations)
    control: RecordingControl = field(default_factory=RecordingControl)
    # What `GET /tasks/stats` shows an admin key as queue depths.
    queues: FixedQueueDepths = field(default_factory=FixedQueueDepths)
    schedules: MemorySchedules = field(default_factory=MemorySchedules)


Issue = Callable[..., Awaitable[str]]
ClientFor = Callable[[str | None], Awaitable[httpx.AsyncClient]]


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(MemoryReadModel(), MemoryIdempotencyKeys(), RecordingPublisher(),
                 MemoryApiKeys(), ManualClock())


@pytest.fixture
def issue(fakes: Fakes) -> Issue:
    """`await issue(tenant=..., scopes=..., rate_per_s=...)`: a new key in the fake store."""

    async def make(*, tenant: str = TENANT, scopes: tuple[str, ...] = SCOPES,
                   rate_per_s: float | None = None) -> str:
        issued = await create_key(fakes.api_keys, tenant=tenant, scopes=frozenset(scopes),
                                  rate_per_s=rate_per_s)
        return issued.token

    return make


@pytest.fixture
async def gateway(fakes: Fakes) -> AsyncIterator[FastAPI]:
    """The gateway app running on `fakes`."""
    async with task_service(SETTINGS, read_model=fakes.read_model, keys=fakes.keys,
                            publisher=fakes.publisher) as tasks:
        # Only readiness asks the broker link itself (and finds nothing on port 1).
        unused = Broker(SETTINGS.rabbitmq_url, build_topology(task_types()),
                        timeout_s=SETTINGS.publish_timeout_s, name="fast tier (unused)")
        replay = ReplayPorts(tasks=fakes.read_model, archive=FakeDeadLetterArchive(),
                             publisher=LetterRecorder(), queue=FakeDeadLetterQueue(),
                             replayed_by="fast", claim_patience=timedelta(seconds=1))
        auth = Authenticator(fakes.api_keys, cache_s=SETTINGS.api_key_cache_s,
                             clock=fakes.clock)
        cancel = CancelPorts(fakes.cancellations, fakes.control, cancelled_by="fast")
        yield create_app(SETTINGS, services=Services(tasks, replay, unused, auth, cancel=cancel,
                                                     queues=fakes.queues,
                                                     schedules=fakes.schedules,
                                                     limiter=RateLimiter(clock=fakes.clock)))


@pytest.fixture
async def client_for(gateway: FastAPI) -> AsyncIterator[ClientFor]:
    """`await client_for(key)`: a client of the gateway sending `key` (None: no key)."""
    async with AsyncExitStack() as clients:

        async def make(key: str | None) -> httpx.AsyncClient:
            headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
            return await clients.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway), base_url="http://gateway",
                headers=headers))

        yield make


@pytest.fixture
async def http(client_for: ClientFor, issue: Issue) -> httpx.AsyncClient:
    """A client of the gateway with a key of tenant TENANT holding every scope."""
    return await client_for(await issue())
