"""Workflows on the real system: the steps of a chain run in order, each seeing the result of
the one before; a failing step stops the chain and `GET /workflows/{id}` shows where."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Api
from tests.support.waiting import eventually


def sleep(seconds: float, **options: Any) -> dict[str, Any]:
    return {"task_type": "sleep", "payload": {"seconds": seconds}, **options}


async def workflow_when(
    http: httpx.AsyncClient, workflow_id: str, status: str, steps: int,
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        view = await http.get(f"/workflows/{workflow_id}")
        if view.status_code == 404:
            return None
        assert view.status_code == 200, view.text
        found: dict[str, Any] = view.json()
        return found if found["status"] == status and len(found["steps"]) == steps else None

    return await eventually(probe, timeout_s=60, what=f"workflow {workflow_id} {status}")


async def test_a_three_step_chain_runs_in_order_each_step_seeing_the_previous_result(
    api: Api, http: httpx.AsyncClient
) -> None:
    first = await api.submit("sleep", {"seconds": 0.1},
                             then=[sleep(0.2, then=[sleep(0.4)])])

    done = await workflow_when(http, first, "succeeded", steps=3)

    steps = done["steps"]
    assert steps[0]["task_id"] == first
    assert len({step["task_id"] for step in steps}) == 3
    assert [step["result"] for step in steps] == [
        {"slept_s": 0.1}, {"slept_s": 0.2, "total_slept_s": pytest.approx(0.3)},
        {"slept_s": 0.4, "total_slept_s": pytest.approx(0.7)}]
    assert done["stopped_at"] == []
    assert steps[0]["created_at"] < steps[1]["created_at"] < steps[2]["created_at"]


async def test_a_failing_middle_step_stops_the_chain_and_the_view_says_where(
    api: Api, http: httpx.AsyncClient
) -> None:
    first = await api.submit("sleep", {"seconds": 0},
                             then=[sleep(5, timeout_s=0.2, max_attempts=1, then=[sleep(0)])])
    stopped = await workflow_when(http, first, "stopped", steps=2)

    middle = stopped["steps"][1]["task_id"]
    assert stopped["stopped_at"] == [middle]
    # Two steps, not three: the last step was never submitted.
    assert [(s["task_id"], s["status"]) for s in stopped["steps"]] == [
        (first, "succeeded"), (middle, "failed")]


async def test_an_invalid_follow_up_at_any_depth_is_a_422_and_nothing_is_queued(
    http: httpx.AsyncClient
) -> None:
    body = sleep(0, labels=["e2e-invalid-chain"], then=[sleep(0, then=[sleep(-1)])])

    refused = await http.post("/tasks", json=body)
    listed = await http.get("/tasks", params={"label": "e2e-invalid-chain"})

    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"][:5] == ["body", "then", 0, "then", 0]
    assert listed.json()["items"] == []
