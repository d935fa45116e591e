"""Fixtures shared by every tier, and the hook that marks each test with its tier. Unit tests use
none of the service fixtures."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contracts.registry import task_types
from infra.composition import mongo_adapters
from infra.mongodb.task_store import TaskStore
from infra.rabbitmq.broker import Broker
from infra.rabbitmq.topology import build_topology
from infra.runtime.settings.system import SystemSettings
from infra.runtime.settings.worker import DEV_WEBHOOK_ALLOWED_NETWORKS
from tests.support.keys import issue_key
from tests.support.receivers import SmtpSink, WebhookReceiver
from tests.support.services import Backends, backends

# The fault scoreboard, shared by the fault and cluster tiers.
pytest_plugins = ("tests.faults.board",)

# Every test and every process it starts runs as guest on a vhost of its own: the development
# profile, unless a test says otherwise (tests/security starts production processes).
os.environ.setdefault("TASKPROC_ENV", "development")

# Each directory under tests/ is one tier, and its name is the tier's marker (registered, with its
# meaning, in pyproject.toml): `pytest -m fast` runs exactly tests/fast.
TIERS = ("unit", "fast", "integration", "e2e", "security", "faults", "load", "cluster")
TESTS = Path(__file__).parent


def tier_of(path: Path) -> str | None:
    """The tier of the test file at `path`: its directory under tests/, if that is a tier."""
    if not path.is_relative_to(TESTS):
        return None
    parts = path.relative_to(TESTS).parts
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier; a test file outside every tier stops the run."""
    strays = set()
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            strays.add(str(item.path))
        else:
            item.add_marker(tier)
    if strays:
        raise pytest.UsageError(
            f"test files outside every tier ({', '.join(f'tests/{t}' for t in TIERS)}): "
            f"{', '.join(sorted(strays))}; move each into the tier it belongs to")


@pytest.fixture(scope="session")
def services() -> Iterator[Backends]:
    """Real RabbitMQ (a vhost of its own) and a MongoDB-protocol server (a database of its own)."""
    with backends() as found:
        yield found


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def settings(services: Backends, smtp_sink: SmtpSink) -> SystemSettings:
    return SystemSettings(
        rabbitmq_url=services.rabbitmq_url,
        mongodb_url=services.mongodb_url,
        mongodb_database=services.mongodb_database,
        smtp_port=smtp_sink.port,
        publish_timeout_s=5.0,
        worker_name="test",
        # The tests run as guest on a vhost of their own: the development profile.
        taskproc_env="development",
        # The tests' webhook receivers listen on 127.0.0.1: the development profile's allowlist.
        webhook_allowed_networks=DEV_WEBHOOK_ALLOWED_NETWORKS,
    )


@pytest.fixture(scope="session")
async def api_key(services: Backends) -> str:
    """A key of the default tenant with every scope, in the session's database: what the clients
    of the e2e and integration tiers send (it reads tasks they publish straight to RabbitMQ
    too)."""
    return await issue_key(services.mongodb_url, services.mongodb_database)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("process-logs")


@pytest.fixture
async def broker(settings: SystemSettings) -> AsyncIterator[Broker]:
    """A confirming connection with the whole topology declared."""
    link = Broker(settings.rabbitmq_url, build_topology(task_types()),
                  timeout_s=settings.publish_timeout_s, name="tests")
    await link.channel()
    yield link
    await link.close()


@pytest.fixture
async def store(settings: SystemSettings) -> AsyncIterator[TaskStore]:
    mongo = mongo_adapters(settings)
    yield mongo.tasks
    await mongo.close()
