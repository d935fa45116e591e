"""Cancel over HTTP through the real processes: a running sleep task stops at once, its message
is acked, and its status stays `cancelled`."""

from __future__ import annotations

from contracts import names
from tests.e2e.conftest import Api, EventTap, System
from tests.support.amqp import Queues
from tests.support.waiting import eventually


async def test_a_running_task_cancelled_over_http_stops_and_stays_cancelled(
    api: Api, system: System, queues: Queues, events: EventTap
) -> None:
    task_id = await api.submit("sleep", {"seconds": 120})
    await api.wait_for(task_id, "running")

    answer = await api.client.post(f"/tasks/{task_id}/cancel")

    assert (answer.status_code, answer.json()) == (202, {"task_id": task_id,
                                                         "status": "cancelled"})
    stopped = await events.wait_for(task_id, "cancelled", timeout_s=10)
    assert stopped["worker"].endswith("/sleep")
    worker = next(p for p in system.processes if p.name == "sleep-worker")
    await eventually(lambda: _logged(worker.log(), f"task {task_id} cancelled while running"),
                     what="the worker's log of the stop")
    assert await queues.depth(names.task_queue("sleep")) == 0
    view = await api.task(task_id)
    assert view is not None
    assert view["status"] == "cancelled"
    assert [step["status"] for step in view["history"]][-1] == "cancelled"
    again = await api.client.post(f"/tasks/{task_id}/cancel")
    assert again.status_code == 409


async def _logged(log: str, text: str) -> bool:
    return text in log
