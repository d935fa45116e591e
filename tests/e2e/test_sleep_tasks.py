"""Sleep tasks through the real processes: success, the per-attempt time limit, and reading a
task's status right after submitting it."""

from __future__ import annotations

import asyncio
from typing import Any

from contracts import names
from tests.e2e.conftest import Api, EventTap
from tests.support.amqp import Queues
from tests.support.waiting import eventually


async def test_a_sleep_task_runs_and_succeeds(api: Api) -> None:
    task_id = await api.submit("sleep", {"seconds": 0.2})

    done = await api.wait_for(task_id)

    assert done["status"] == "succeeded"
    assert done["attempt"] == 1
    assert done["result"] == {"slept_s": 0.2}
    assert done["error"] is None
    assert done["finished_at"] is not None


async def test_a_task_past_its_time_limit_is_retried_then_fails_with_timeout(
    api: Api, queues: Queues, events: EventTap
) -> None:
    task_id = await api.submit("sleep", {"seconds": 5}, timeout_s=0.5, max_attempts=2)

    done = await api.wait_for(task_id)

    assert done["status"] == "failed"
    assert done["attempt"] == 2
    assert done["error"]["type"] == "TimeoutError"
    assert await events.steps(task_id) == [
        ("running", 1), ("retrying", 1), ("running", 2), ("failed", 2)]
    retrying = await events.wait_for(task_id, "retrying")
    assert retrying["error"]["type"] == "TimeoutError"
    dead = await queues.take(names.dead_queue("sleep"), task_id)
    assert dead is not None
    assert dead.header(names.HEADER_DEAD_REASON) == "max_attempts_exhausted"
    assert dead.headers[names.HEADER_ATTEMPT] == 2


async def test_a_long_sleep_shows_its_progress_while_it_runs(api: Api, events: EventTap) -> None:
    task_id = await api.submit("sleep", {"seconds": 3})

    async def reported() -> dict[str, Any] | None:
        found = await api.task(task_id)
        return found if found is not None and found["progress"] is not None else None

    running = await eventually(reported, timeout_s=30, what=f"progress of task {task_id}")
    done = await api.wait_for(task_id)
    published = await events.progress_of(task_id)

    assert running["status"] == "running"
    assert 0 <= running["progress"]["fraction"] < 1
    assert running["progress"]["message"].startswith("slept ")
    assert done["status"] == "succeeded"
    # The last report stays once the task is done; none of them is a step of the history.
    assert done["progress"] is not None
    assert [step["status"] for step in done["history"]] == ["queued", "running", "succeeded"]
    assert await events.steps(task_id) == [("running", 1), ("succeeded", 1)]
    # One report a second: at 0, 1 and 2 s (the window allows 4 a second).
    assert 2 <= len(published) <= 3
    assert [event["fraction"] for event in published] == sorted(
        event["fraction"] for event in published)


async def test_a_read_right_after_a_submit_never_answers_404(api: Api) -> None:
    async def submit_then_read() -> int:
        task_id = await api.submit("sleep", {"seconds": 0})
        response = await api.client.get(f"/tasks/{task_id}")
        return response.status_code

    answers = await asyncio.gather(*(submit_then_read() for _ in range(50)))

    assert answers == [200] * 50
