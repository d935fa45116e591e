"""The fast tier: the gateway's FastAPI app in this process, on the service layer's real wiring
over in-memory ports, called through httpx's ASGI transport. No server, broker or store runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from contracts.registry import TASK_TYPES
from gateway.app import create_app
from gateway.deps import Services
from infra.broker import Broker
from infra.composition import task_service
from infra.settings import Settings
from infra.topology import build_topology
from service.replay import ReplayPorts
from tests.support.fake_dead_letters import FakeDeadLetterArchive, FakeDeadLetterQueue
from tests.support.fake_dead_letters import RecordingPublisher as LetterRecorder
from tests.support.memory import MemoryIdempotencyKeys, MemoryReadModel, RecordingPublisher

# Nothing listens on port 1: were anything to reach past the fakes, it would fail at once.
SETTINGS = Settings(rabbitmq_url="amqp://guest:guest@127.0.0.1:1/",
                    mongodb_url="mongodb://127.0.0.1:1/?directConnection=true",
                    publish_timeout_s=0.05)


@dataclass
class Fakes:
    read_model: MemoryReadModel
    keys: MemoryIdempotencyKeys
    publisher: RecordingPublisher


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(MemoryReadModel(), MemoryIdempotencyKeys(), RecordingPublisher())


@pytest.fixture
async def http(fakes: Fakes) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway app running on `fakes`."""
    async with task_service(SETTINGS, read_model=fakes.read_model, keys=fakes.keys,
                            publisher=fakes.publisher) as tasks:
        # Only readiness asks the broker link itself (and finds nothing on port 1).
        unused = Broker(SETTINGS.rabbitmq_url, build_topology(TASK_TYPES),
                        timeout_s=SETTINGS.publish_timeout_s, name="fast tier (unused)")
        replay = ReplayPorts(tasks=fakes.read_model, archive=FakeDeadLetterArchive(),
                             publisher=LetterRecorder(), queue=FakeDeadLetterQueue(),
                             replayed_by="fast", claim_patience=timedelta(seconds=1))
        app = create_app(SETTINGS, services=Services(tasks, replay, unused))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gateway") as client:
            yield client
