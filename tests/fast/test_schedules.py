"""Schedules over HTTP: 201 with the view, 422 for a bad cron, time zone or payload, 404 for
an unknown or another tenant's schedule, 401/403 without the key or scope; pause, resume and
delete."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import httpx
import pytest

from tests.fast.conftest import TENANT, ClientFor, Fakes, Issue

pytestmark = pytest.mark.fast

EVERY_5_MIN = {"task_type": "sleep", "payload": {"seconds": 0}, "cron": "*/5 * * * *",
               "interval_s": None, "timezone": "Europe/Paris", "labels": ["nightly"],
               "max_attempts": 2}
VIEW_FIELDS = {"schedule_id", "task_type", "payload", "cron", "interval_s", "timezone",
               "catch_up", "labels", "paused", "next_run_at", "last_run_at", "last_task_id",
               "created_at", "max_attempts", "timeout_s"}


def _nested(levels: int) -> list[object]:
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value


async def created(http: httpx.AsyncClient, body: Mapping[str, object] = EVERY_5_MIN) -> str:
    answer = await http.post("/schedules", json=body)
    assert answer.status_code == 201, answer.text
    schedule_id: str = answer.json()["schedule_id"]
    return schedule_id


async def test_a_created_schedule_is_shown_with_its_next_run(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    answer = await http.post("/schedules", json=EVERY_5_MIN)

    assert answer.status_code == 201
    view = answer.json()
    assert set(view) == VIEW_FIELDS
    assert (view["cron"], view["timezone"], view["catch_up"], view["paused"],
            view["labels"]) == ("*/5 * * * *", "Europe/Paris", "skip", False, ["nightly"])
    next_run = datetime.fromisoformat(view["next_run_at"])
    assert next_run.minute % 5 == 0
    assert next_run.second == 0
    assert (await http.get(f"/schedules/{view['schedule_id']}")).json() == view
    listed = (await http.get("/schedules")).json()
    assert listed == {"items": [view]}
    stored = fakes.schedules.schedules[view["schedule_id"]]
    assert stored.tenant == TENANT


async def test_an_interval_schedule_runs_first_one_interval_after_creation(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post("/schedules", json={
        "task_type": "sleep", "payload": {"seconds": 0}, "interval_s": 300, "catch_up": "last"})
    view = answer.json()
    created_at = datetime.fromisoformat(view["created_at"])
    next_run = datetime.fromisoformat(view["next_run_at"])
    assert answer.status_code == 201
    assert (next_run - created_at).total_seconds() == pytest.approx(300, abs=0.01)
    assert (view["cron"], view["interval_s"], view["catch_up"]) == (None, 300, "last")


@pytest.mark.parametrize(("change", "field"), [
    ({"cron": "*/5 * * *"}, "cron"),
    ({"cron": "* * * * * *"}, "cron"),
    ({"cron": "99 * * * *"}, "cron"),
    ({"cron": "0 0 31 2 *"}, "cron"),  # valid fields, but 31 February never comes
    ({"timezone": "Mars/Olympus"}, "timezone"),
    ({"cron": None}, "interval_s"),
    ({"interval_s": 60}, "interval_s"),
    ({"cron": None, "interval_s": 0.5}, "interval_s"),
    ({"catch_up": "all"}, "catch_up"),
    ({"payload": {"seconds": -1}}, "payload"),
    ({"task_type": "nope"}, None),
    ({"labels": [f"l{i}" for i in range(10)]}, "labels"),
    ({"task_type": "webhook", "payload": {"url": "https://example.com/hook",
                                          "json": _nested(300)}}, "payload"),
])
async def test_invalid_schedules_answer_422(
    http: httpx.AsyncClient, fakes: Fakes, change: dict[str, object], field: str | None,
) -> None:
    answer = await http.post("/schedules", json={**EVERY_5_MIN, **change})

    assert answer.status_code == 422, answer.text
    if field is not None:
        assert any(field in [str(part) for part in problem["loc"]]
                   for problem in answer.json()["detail"]), answer.json()
    assert fakes.schedules.schedules == {}


async def test_another_tenants_schedule_is_not_found(
    http: httpx.AsyncClient, client_for: ClientFor, issue: Issue,
) -> None:
    schedule_id = await created(http)
    other = await client_for(await issue(tenant="other"))

    assert (await other.get(f"/schedules/{schedule_id}")).status_code == 404
    assert (await other.post(f"/schedules/{schedule_id}/pause")).status_code == 404
    assert (await other.delete(f"/schedules/{schedule_id}")).status_code == 404
    assert (await other.get("/schedules")).json() == {"items": []}
    assert (await http.get("/schedules/unknown")).status_code == 404


async def test_keys_and_scopes_are_checked(client_for: ClientFor, issue: Issue) -> None:
    anonymous = await client_for(None)
    reader = await client_for(await issue(scopes=("tasks:read",)))

    assert (await anonymous.get("/schedules")).status_code == 401
    assert (await anonymous.post("/schedules", json=EVERY_5_MIN)).status_code == 401
    assert (await reader.post("/schedules", json=EVERY_5_MIN)).status_code == 403
    assert (await reader.get("/schedules")).status_code == 200
    assert (await reader.delete("/schedules/x")).status_code == 403
    assert (await reader.post("/schedules/x/pause")).status_code == 403


async def test_pause_resume_and_delete(http: httpx.AsyncClient, fakes: Fakes) -> None:
    schedule_id = await created(http)

    paused = await http.post(f"/schedules/{schedule_id}/pause")
    assert (paused.status_code, paused.json()["paused"]) == (200, True)
    resumed = await http.post(f"/schedules/{schedule_id}/resume")
    assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
    assert datetime.fromisoformat(resumed.json()["next_run_at"]) > datetime.fromisoformat(
        resumed.json()["created_at"])

    deleted = await http.delete(f"/schedules/{schedule_id}")
    assert deleted.status_code == 204
    assert (await http.get(f"/schedules/{schedule_id}")).status_code == 404
    assert (await http.delete(f"/schedules/{schedule_id}")).status_code == 404
    assert fakes.schedules.schedules == {}
