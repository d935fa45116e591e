"""Fixtures of the fault suite (its scoreboard, shared with tests/cluster, is
tests/faults/board.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.faults.system import System
from tests.support.services import Backends, missing


@pytest.fixture(scope="session")
def local_services(services: Backends) -> Backends:
    """Fault tests drive the broker with rabbitmqctl: it must be the local one."""
    if not services.local_broker:
        missing("a local RabbitMQ that rabbitmqctl controls")
    return services


@pytest.fixture
async def system(
    local_services: Backends, log_dir: Path, request: pytest.FixtureRequest
) -> AsyncIterator[System]:
    """The scenario's processes, each log in a folder named after the test; all stopped after."""
    folder = log_dir / re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    started = System(local_services, folder)
    yield started
    await started.stop_all()
