"""Cancelling over HTTP: 202 with the status after, 404 for an unknown or another tenant's
task, 409 for a finished one; the cancellation is kept and announced before the answer."""

from __future__ import annotations

import httpx

from contracts.messages import StatusEvent
from contracts.statuses import Status
from tests.fast.conftest import TENANT, ClientFor, Fakes, Issue

SLEEP = {"task_type": "sleep", "payload": {"seconds": 0}}


async def submitted(http: httpx.AsyncClient) -> str:
    accepted = await http.post("/tasks", json=SLEEP)
    assert accepted.status_code == 202
    task_id: str = accepted.json()["task_id"]
    return task_id


async def test_a_queued_task_cancelled_shows_cancelled_at_once(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    task_id = await submitted(http)

    answer = await http.post(f"/tasks/{task_id}/cancel")
    view = await http.get(f"/tasks/{task_id}")

    assert (answer.status_code, answer.json()) == (202, {"task_id": task_id,
                                                         "status": "cancelled"})
    assert view.json()["status"] == "cancelled"
    assert view.json()["finished_at"] is not None
    assert [(r.tenant, r.task_id) for r in fakes.cancellations.requests.values()] == [
        ("fast", task_id)]
    [announced] = fakes.control.published
    assert (announced.task_id, announced.task_type) == (task_id, "sleep")


async def test_a_finished_task_answers_409_and_nothing_is_kept(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    task_id = await submitted(http)
    await fakes.read_model.apply(StatusEvent(task_id=task_id, task_type="sleep",
                                             status=Status.SUCCEEDED, attempt=1, worker="w",
                                             tenant="fast"))

    answer = await http.post(f"/tasks/{task_id}/cancel")

    assert answer.status_code == 409
    assert "succeeded" in answer.json()["detail"]
    assert fakes.cancellations.requests == {}
    assert fakes.control.published == []


async def test_cancelling_twice_answers_409_the_second_time(http: httpx.AsyncClient) -> None:
    task_id = await submitted(http)

    first = await http.post(f"/tasks/{task_id}/cancel")
    second = await http.post(f"/tasks/{task_id}/cancel")

    assert (first.status_code, second.status_code) == (202, 409)


async def test_an_unknown_task_answers_404(http: httpx.AsyncClient, fakes: Fakes) -> None:
    answer = await http.post("/tasks/no-such-task/cancel")

    assert answer.status_code == 404
    assert fakes.control.published == []


async def test_another_tenants_task_answers_404_and_stays_queued(
    http: httpx.AsyncClient, client_for: ClientFor, issue: Issue, fakes: Fakes
) -> None:
    task_id = await submitted(http)
    stranger = await client_for(await issue(tenant="other"))

    answer = await stranger.post(f"/tasks/{task_id}/cancel")

    assert answer.status_code == 404
    assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "queued"
    assert fakes.cancellations.requests == {}


async def test_cancel_needs_the_submit_scope(
    http: httpx.AsyncClient, client_for: ClientFor, issue: Issue
) -> None:
    task_id = await submitted(http)
    reader = await client_for(await issue(tenant=TENANT, scopes=("tasks:read",)))

    answer = await reader.post(f"/tasks/{task_id}/cancel")

    assert answer.status_code == 403
    assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "queued"


async def test_a_store_that_is_down_answers_503_and_cancels_nothing(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    task_id = await submitted(http)
    fakes.cancellations.down = True

    answer = await http.post(f"/tasks/{task_id}/cancel")

    assert answer.status_code == 503
    assert fakes.control.published == []
    assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "queued"


async def test_an_unconfirmed_control_message_still_cancels(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    # Kept in the store: workers learn it at their next reload.
    task_id = await submitted(http)
    fakes.control.down = True

    answer = await http.post(f"/tasks/{task_id}/cancel")

    assert (answer.status_code, answer.json()["status"]) == (202, "cancelled")
    assert [(r.tenant, r.task_id) for r in fakes.cancellations.requests.values()] == [
        ("fast", task_id)]
