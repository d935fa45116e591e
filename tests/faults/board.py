"""The fault scoreboard as a pytest plugin: every row the fault and cluster tiers open, printed
as one table at the end of the session. Registered by tests/conftest.py, so both tiers share it.

Set TASKPROC_SCOREBOARD=path/to/file.md to also write the table as Markdown.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _pytest.terminal import TerminalReporter
from pymongo import AsyncMongoClient

from infra.mongodb.client import mongo_client
from tests.faults.scoreboard import Row, Scoreboard
from tests.faults.system import System
from tests.faults.tracking import TaskTracker, TrackerFactory
from tests.support.keys import bearer
from tests.support.receivers import WebhookReceiver
from tests.support.services import Backends

SCOREBOARD = pytest.StashKey[Scoreboard]()
SCENARIO_TIERS = ("faults", "cluster")
TESTS = Path(__file__).resolve().parents[1]


def _is_scenario(path: Path) -> bool:
    """Whether a test file is in one of the tiers whose tests are scoreboard scenarios."""
    return path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in SCENARIO_TIERS


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SCOREBOARD] = Scoreboard()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    board = item.config.stash.get(SCOREBOARD, None)
    # Only the scenarios' tiers have rows: a failure elsewhere is no scenario.
    if board is not None and report.failed and (
            board.rows_of(item.nodeid) or _is_scenario(item.path)):
        crash = getattr(report.longrepr, "reprcrash", None)
        message = getattr(crash, "message", None) or str(report.longrepr)
        # A scenario that failed before opening its row (in a fixture) still gets one.
        rows = board.rows_of(item.nodeid) or [board.add(item.name, item.nodeid)]
        for row in rows:
            row.error = row.error or f"{report.when}: {message.splitlines()[0][:300]}"
    return report


def pytest_terminal_summary(
    terminalreporter: TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    board = config.stash.get(SCOREBOARD, None)
    if board is None or not board.rows:
        return
    terminalreporter.section("fault scoreboard")
    for line in board.table():
        terminalreporter.write_line(line)
    terminalreporter.write_line("")
    for line in board.verdicts():
        terminalreporter.write_line(line)
    target = os.environ.get("TASKPROC_SCOREBOARD")
    if target:
        board.write_markdown(Path(target))
        terminalreporter.write_line(f"scoreboard written to {target}")


@pytest.fixture(scope="session")
def scoreboard(pytestconfig: pytest.Config) -> Scoreboard:
    return pytestconfig.stash[SCOREBOARD]


@pytest.fixture
def new_row(scoreboard: Scoreboard, request: pytest.FixtureRequest) -> Callable[[str], Row]:
    """Open this scenario's row; it is on the board from now on, whatever happens next."""

    def make(scenario: str) -> Row:
        return scoreboard.add(scenario, request.node.nodeid)

    return make


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver counting deliveries per X-Task-Id; some paths answer slowly."""
    server = WebhookReceiver(delays={"/slow/": 0.4, "/slower/": 4.0}).start()
    assert isinstance(server, WebhookReceiver)
    yield server
    server.stop()


@pytest.fixture
async def tracker_for(
    receiver: WebhookReceiver, services: Backends, system: System,
) -> AsyncIterator[TrackerFactory]:
    """`tracker_for(row, gateway_url, mongodb_url=...)`: a TaskTracker reading the scenario's
    read model (its system's database, on the shared server unless told otherwise), its client
    sending the API key `system` made for that gateway. `system` is each tier's own fixture
    (tests/faults, tests/cluster)."""
    clients: list[httpx.AsyncClient] = []
    mongo: list[AsyncMongoClient[dict[str, Any]]] = []

    def make(row: Row, base_url: str, mongodb_url: str = services.mongodb_url,
             ) -> TaskTracker:
        # Idle connections go before uvicorn's 5 s keep-alive ends them: no request is ever sent
        # on a connection the server is closing.
        limits = httpx.Limits(max_connections=64, keepalive_expiry=2.0)
        client = httpx.AsyncClient(base_url=base_url, limits=limits,
                                   headers=bearer(system.api_keys[base_url]))
        clients.append(client)
        store = mongo_client(mongodb_url, timeout_s=2.0)
        mongo.append(store)
        tasks = store[system.env["MONGODB_DATABASE"]]["tasks"]
        return TaskTracker(row, client, receiver, tasks)

    yield make
    for client in clients:
        await client.aclose()
    for store in mongo:
        await store.close()
