"""`running` only for attempts that last, through the real processes: a task of a few
milliseconds publishes only its outcome on `task-events` and still shows when it started; a task
that lasts publishes `running` too, dated when it started.

The system here publishes `running` after 500 ms (RUNNING_EVENT_AFTER_MS), ten times the
default: a 2 ms task ends far inside it even on a busy machine, so no test hangs on which of the
worker's timers fires first.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contracts import names
from tests.e2e.conftest import Api, EventTap, System, running_system, system_env
from tests.support import processes
from tests.support.readiness import wait_for_consumers_gone
from tests.support.receivers import SmtpSink
from tests.support.services import Backends

AFTER_MS = 500
# The read model keeps times to the millisecond.
STORED = timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def system(services: Backends, smtp_sink: SmtpSink, module_log_dir: Path) -> Iterator[System]:
    """The gateway, the projector and a `sleep` worker that publishes `running` after 500 ms."""
    env = system_env(services, smtp_sink, RUNNING_EVENT_AFTER_MS=str(AFTER_MS))
    wait_for_consumers_gone(services.rabbitmq_url, {
        names.task_queue("sleep"): 0, **dict.fromkeys(processes.PROJECTOR_QUEUES, 0)})
    yield from running_system(env, module_log_dir, ["sleep"])


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def assert_started_at(view: dict[str, Any], started_at: datetime) -> None:
    """`GET /tasks/{id}` says the attempt started at `started_at`, in `started_at` and in the
    history's `running` step, between the task's creation and its end."""
    assert abs(when(view["started_at"]) - started_at) < STORED
    assert when(view["created_at"]) <= when(view["started_at"]) <= when(view["finished_at"])
    history = [(step["status"], step["attempt"]) for step in view["history"]]
    assert history == [("queued", 0), ("running", 1), ("succeeded", 1)]
    assert abs(when(view["history"][1]["at"]) - started_at) < STORED


async def test_a_task_of_a_few_ms_publishes_only_its_outcome_and_shows_when_it_started(
    api: Api, events: EventTap,
) -> None:
    task_id = await api.submit("sleep", {"seconds": 0.002})

    done = await api.wait_for(task_id)
    # A `running` would have been published before `succeeded`, on the same channel: it would
    # be in the tap ahead of it.
    succeeded = await events.wait_for(task_id, "succeeded")

    assert done["status"] == "succeeded"
    assert await events.steps(task_id) == [("succeeded", 1)]
    assert when(succeeded["started_at"]) <= when(succeeded["at"])
    assert 1 < succeeded["duration_ms"] < AFTER_MS
    assert_started_at(done, when(succeeded["started_at"]))


@pytest.mark.parametrize("seconds", [
    # Under 2 s `sleep` reports no progress: only the delay running out publishes `running`.
    pytest.param(1.5, id="published-when-the-delay-runs-out"),
    # From 2 s it reports progress at once, which publishes `running` first.
    pytest.param(2, id="published-by-its-first-progress-report"),
])
async def test_a_task_that_lasts_publishes_running_dated_when_it_started(
    api: Api, events: EventTap, seconds: float,
) -> None:
    task_id = await api.submit("sleep", {"seconds": seconds})

    running = await events.wait_for(task_id, "running")
    done = await api.wait_for(task_id)
    succeeded = await events.wait_for(task_id, "succeeded")

    assert done["status"] == "succeeded"
    assert await events.steps(task_id) == [("running", 1), ("succeeded", 1)]
    assert running["at"] == running["started_at"] == succeeded["started_at"]
    # The workers' event loop (uvloop) keeps time to the millisecond: a sleep may end within
    # one millisecond short of what it asked.
    assert succeeded["duration_ms"] > seconds * 1000 - 1
    assert_started_at(done, when(running["started_at"]))
