"""The `taskproc` command as a user runs it, against the real gateway, workers and projector:
submit a task, watch it to the end (exit 0 when it succeeded, 1 otherwise), find it listed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from dataclasses import dataclass

from tests.e2e.conftest import Api, System


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


async def taskproc(system: System, api_key: str, *args: str, timeout_s: float = 60) -> Ran:
    """`taskproc ARGS` in its own process, with the key and gateway in its environment."""
    env = {**os.environ, "TASKPROC_URL": system.url, "TASKPROC_API_KEY": api_key}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


async def test_submit_then_watch_ends_0_with_a_succeeded_task_that_is_listed(
    system: System, api_key: str, api: Api
) -> None:
    label = f"cli-{uuid.uuid4().hex[:8]}"
    submitted = await taskproc(system, api_key, "submit", "sleep", "--payload",
                               '{"seconds": 2}', "--label", label)
    assert submitted.code == 0, submitted.stderr
    task_id = submitted.stdout.strip()

    watched = await taskproc(system, api_key, "watch", task_id, "--interval", "0.2")
    listed = await taskproc(system, api_key, "list", "--label", label, "--json")

    assert watched.code == 0, watched.stderr
    # Not a TTY: a plain line per change; the last one is the full bar. The handler's report
    # stays on the task after it ends, so the final view shows it whatever the polls caught.
    assert "[" + "#" * 30 + "] 100% succeeded (attempt 1)" in watched.stdout
    # (Which report: the last the throttle let through before the end.)
    assert re.search(r"^progress: \d+% slept \d of 2 s$", watched.stdout, re.MULTILINE)
    assert f"task:     {task_id}" in watched.stdout
    view = await api.task(task_id)
    assert view is not None
    assert view["status"] == "succeeded"
    assert [item["task_id"] for item in json.loads(listed.stdout)["items"]] == [task_id]


async def test_watch_of_a_cancelled_task_ends_1(system: System, api_key: str) -> None:
    submitted = await taskproc(system, api_key, "submit", "sleep", "--payload",
                               '{"seconds": 60}')
    task_id = submitted.stdout.strip()
    cancelled = await taskproc(system, api_key, "cancel", task_id)

    watched = await taskproc(system, api_key, "watch", task_id, "--json")

    assert (cancelled.code, cancelled.stdout) == (0, f"{task_id} cancelled\n")
    assert watched.code == 1
    assert json.loads(watched.stdout)["status"] == "cancelled"
