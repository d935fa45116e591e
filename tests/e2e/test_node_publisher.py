"""A service written in another language publishes a task straight to RabbitMQ: a Node.js
script with amqplib (tests/e2e/node_publisher/publish.mjs), as docs/messages-and-topology.md
tells other services to, and the task runs and is shown over HTTP.

Skipped only when `node` is not on PATH. With node present, a missing amqplib is installed
here (`npm ci`, as .ci/run does) and a failed install fails the test: CI must not skip it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import Api
from tests.support.services import Backends

PUBLISHER = Path(__file__).parent / "node_publisher"


@pytest.fixture(scope="module")
def publisher() -> list[str]:
    """The command that runs publish.mjs, checked before the system starts: skipped without
    node; amqplib installed if missing (`npm ci`, as .ci/run does), and a failed install fails."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: install Node.js (18 or later) to run the Node "
                    "publisher example")
    if not (PUBLISHER / "node_modules" / "amqplib" / "package.json").is_file():
        npm = shutil.which("npm")
        assert npm is not None, "node is on PATH but npm is not: cannot install amqplib"
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(PUBLISHER)],
            capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"npm ci in {PUBLISHER} failed:\n{done.stderr}"
    return [node, str(PUBLISHER / "publish.mjs")]


async def test_a_task_published_from_node_runs_and_shows_over_http(
    publisher: list[str], api: Api, services: Backends
) -> None:
    task_id = f"node-{uuid.uuid4()}"

    run = await asyncio.create_subprocess_exec(
        *publisher, services.rabbitmq_url, task_id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(run.communicate(), timeout=60)

    assert run.returncode == 0, f"publish.mjs exited {run.returncode}: {err.decode()}"
    assert out.decode().strip() == task_id
    done = await api.wait_for(task_id)
    assert done["status"] == "succeeded", done
    assert done["task_type"] == "sleep"
    assert done["result"] == {"slept_s": 0}
